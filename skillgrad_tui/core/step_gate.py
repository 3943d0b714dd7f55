"""A step's "gate" stage and its end: apply the kept version to the user's folder (and git),
score it for the record, then record the outcome in the memory and move to the next step."""

from __future__ import annotations

import time

from skillgrad_tui.core.evaluate import trajectory_file
from skillgrad_tui.core.events import PatchDecided, StepAccount, StepFinished, ValidationScored, VersionSaved, Warning_
from skillgrad_tui.core.pool import add_accounts, step_sentence
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.run_core import RunCore, edit_from_dict
from skillgrad_tui.core.run_state import PendingStep, kept_version
from skillgrad_tui.core.runlog import RunError
from skillgrad_tui.core.skill_edits import Patch
from skillgrad_tui.core.skill_store import SkillChanged, apply_patch
from skillgrad_tui.core.vcs import GitError, commit_skill, in_git_work_tree


class GateStage(RunCore):
    """The stage that applies the kept candidate, and the step's end."""

    def gate_stage(self, k: int, val: list[Task]) -> None:
        """Apply, then (gates "all" and "ask") score for the record, each behind its own commit."""
        assert self.log is not None
        while True:
            pend = self.pending()
            if pend["kept"] and not pend["applied"]:
                self.apply(k)
            elif pend["kept"] and not pend["scored"]:
                self.score_candidate(k, kept_version(pend), val)
            else:
                return

    def score_candidate(self, k: int, cand: int, val: list[Task]) -> None:
        assert self.log is not None
        pend = self.pending().copy()
        score: float | None = None
        val_tasks = dict(self.state["val_tasks"])
        if val:
            skill = self.log.load_version(cand)
            scores = self.validate(skill, val, k, f"v{cand}")
            score = sum(scores.values()) / len(scores) if scores else 0.0
            val_tasks[str(cand)] = scores
            self.emit(ValidationScored(step=k, skill_hash=skill.hash, score=score, n=len(scores)))
        self.log.update_version(cand, val_score=score)
        pend.update({"scored": True, "val_score": score})
        self.commit_pending(pend, val_tasks=val_tasks)

    def apply(self, k: int) -> None:
        assert self.log is not None
        pend = self.pending().copy()
        cand = self.log.version(kept_version(pend))
        pre = self.log.version(self.state["current"])
        patch = Patch([edit_from_dict(e) for e in pend["edits"]], rationale=pend["reason"])
        try:  # the hash check and the write happen under one exclusive lock
            after = apply_patch(self.skill_root, patch, expect_hash=pre.skill_hash,
                                writer=f"run {self.log.run_dir.name}, step {k}")
            if after.hash != cand.skill_hash:
                raise RunError(f"applying step {k}'s patch gave {after.hash[:12]}, not version {cand.version} "
                               f"({cand.skill_hash[:12]})", self.skill_root)
        except SkillChanged as exc:
            if exc.found != cand.skill_hash:  # else: applied before a crash, and resumed
                raise RunError(f"the skill was changed outside this run (hash {exc.found[:12]} is neither version "
                               f"{pre.version} nor {cand.version}); restore one with `skillgrad rollback "
                               f"{self.log.run_dir} VERSION`", self.skill_root) from None
        self.commit_to_git(k, cand.version, pend)
        pend["applied"] = True
        self.commit(pending=pend)

    def commit_to_git(self, k: int, version: int, pend: PendingStep) -> None:
        """With git_commit, record the applied version as a git commit (idempotent on resume: a
        folder with nothing to commit is left alone). A refusal by git is a warning, not a crash."""
        assert self.log is not None
        if not self.options.git_commit:
            return
        if not in_git_work_tree(self.skill_root):
            self.emit(Warning_(message=f"--git-commit: {self.skill_root} is not in a git work tree; not committed",
                               step=k))
            return
        labels = sorted({pend["proposed"][i].get("pattern_label") or pend["proposed"][i].get("pattern", "?")
                         for i in pend["accepted"] if i < len(pend["proposed"])})
        message = (f"skillgrad: {self.skill_root.name} version {version} (run {self.log.run_dir.name}, step {k})\n\n"
                   f"{pend['reason']}\n\nPatterns:\n" + "".join(f"- {label}\n" for label in labels))
        try:
            commit = commit_skill(self.skill_root, message)
        except GitError as exc:
            self.emit(Warning_(message=f"version {version} was applied but not committed: {exc}", step=k))
            return
        if commit:
            self.emit(Warning_(message=f"committed version {version} to git as {commit}", step=k))

    def finish_step(self, k: int) -> None:
        """Record the outcome in the memory, move to step k + 1, emit the step's account."""
        assert self.log is not None
        st = self.state
        pend = self.pending()
        memory = self.load_memory()
        kept = bool(pend["kept"])
        chosen = pend["candidate"] if kept else None
        tried: dict[str, list[str]] = {}
        won: dict[str, list[str]] = {}
        for c in pend["candidates"]:
            for i, d in enumerate(c["proposed"]):
                summary = f"{d['layer']} {d['path']}: {' '.join(d['new'].split())[:100]}"
                in_chosen = kept and c["version"] in (chosen, pend.get("chosen_from")) and i in pend["accepted"]
                bucket = won if in_chosen else tried
                if summary not in bucket.setdefault(d["pattern"], []):
                    bucket[d["pattern"]].append(summary)
        for pid in sorted(set(tried) | set(won)):
            ok = pid in won
            try:
                memory.record_patch(pid, k, " / ".join((won if ok else tried)[pid][:3]), kept=ok)
            except KeyError:  # the no-momentum memory may not have it; nothing to record against
                pass
        current, current_val = st["current"], st["current_val"]
        for c in pend["candidates"]:
            rec = self.log.version(c["version"])
            self.emit(VersionSaved(version=rec.version, skill_hash=rec.skill_hash, step=k, val_score=rec.val_score,
                                   chars=rec.chars))
        proposed = pend["proposed"]
        if chosen is not None:
            cand = self.log.update_version(chosen, kept=True)
            if cand.version not in [c["version"] for c in pend["candidates"]]:  # the person's own mix
                self.emit(VersionSaved(version=cand.version, skill_hash=cand.skill_hash, step=k,
                                       val_score=cand.val_score, chars=cand.chars))
            current, current_val = cand.version, cand.val_score
        if pend["candidates"]:
            self.emit(PatchDecided(step=k, patch_id=pend["patch_id"], accepted=pend["accepted"] if kept else [],
                                   rejected=pend["rejected"] if kept else list(range(len(proposed))),
                                   by=pend["by"], reason=pend["reason"]))
        stats = {key: list(v) for key, v in st["train_stats"].items()}
        s = stats.setdefault(str(pend["parent"]), [0.0, 0])
        s[0] += pend["batch_score_sum"]
        s[1] += pend["batch_n"]
        self.log.update_version(pend["parent"], train_score=s[0] / s[1] if s[1] else None)
        last_fail = dict(st["last_fail"])
        for tid in pend["failed"]:
            last_fail[tid] = self.rel(trajectory_file(self.log.traj_dir(k, "train"), tid))
        mem_rel = f"memory/step-{k}-final.json"
        self.save_memory(memory, mem_rel)
        skill_hash = self.log.version(current).skill_hash
        account = pend["account"]
        summary = f"kept version {chosen} ({pend['reason']})" if kept else pend["reason"]
        summary = summary or step_sentence(account, None)
        self.emit(StepAccount(step=k, account=account, summary=summary))
        validated = [sum(c["val"].values()) / len(c["val"]) for c in pend["candidates"] if c["val"]]
        val_score = pend.get("val_score") if kept else (max(validated) if validated else None)
        step_prompt, step_completion = pend["step_tokens"]
        self.emit(StepFinished(step=k, train_loss=pend["train_loss"], val_score=val_score,
                               kept=kept, skill_hash=skill_hash, prompt_tokens=step_prompt,
                               completion_tokens=step_completion,
                               seconds=st["seconds"] + (time.monotonic() - self.stage_start)
                               - pend["seconds_at_start"], summary=summary))
        streak = st["streak"] + 1 if pend["all_pass"] else 0
        self.commit(step=k + 1, stage="forward", pending=None, current=current, current_val=current_val,
                    streak=streak, last_fail=last_fail, train_stats=stats, memory=mem_rel,
                    account=add_accounts(st["account"], account), steps_done=st["steps_done"] + 1,
                    kept_versions=st["kept_versions"] + ([chosen] if chosen is not None else []))
