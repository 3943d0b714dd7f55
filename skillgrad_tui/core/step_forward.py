"""A step's "forward" stage: the minibatch, gradients, momentum, and the pool of candidates
(the patcher's, a format repair, an answer-form rewrite), each saved as a version."""

from __future__ import annotations

from collections import Counter

from skillgrad_tui.core.agent import Agent
from skillgrad_tui.core.answer_form import FORM_ORIGIN, FORM_PATTERN, form_edits, induce, worked_example
from skillgrad_tui.core.evaluate import load_trajectory
from skillgrad_tui.core.evaluators.base import answer_items
from skillgrad_tui.core.events import (CandidateProposed, GradientComputed, MemoryUpdated, PatchProposed, Progress,
                                       StepStarted, Warning_)
from skillgrad_tui.core.failures import classify, failure_class
from skillgrad_tui.core.format_repair import REPAIR_ORIGIN, repair_edits
from skillgrad_tui.core.gradient import ContrastiveDiagnoser, FailureDiagnoser, PreservationSignal, TextGradient
from skillgrad_tui.core.optimize_options import derive_seed
from skillgrad_tui.core.patcher import Patcher, Proposal, ProposedEdit
from skillgrad_tui.core.pool import new_account
from skillgrad_tui.core.records import Task, Trajectory
from skillgrad_tui.core.run_core import RunCore, mean_score, passed
from skillgrad_tui.core.run_state import CandidateRecord, PendingStep
from skillgrad_tui.core.skill_edits import Edit, apply_edits_in_memory
from skillgrad_tui.core.skill_format import SKILL_MD, Skill
from skillgrad_tui.core.textsim import numbers_in

EXAMPLE_ROWS = 3  # table rows a code-made worked example shows (the rest are counted, as the agent sees them)


class ForwardStage(RunCore):
    """The stage that makes a step's candidates."""

    def forward_stage(self, k: int, train: list[Task], val: list[Task]) -> None:
        """Minibatch, gradients, momentum, a pool of candidates saved as versions."""
        assert self.log is not None
        st, o = self.state, self.options
        by_id = {t.id: t for t in self.suite.tasks}
        batch = [by_id[i] for i in self.schedule()[k - 1]]
        parent = self.choose_parent(k)
        skill = self.user_skill(st["current"])
        if parent != st["current"]:
            skill = self.log.load_version(parent)
        self.emit(StepStarted(step=k, task_ids=[t.id for t in batch], skill_hash=skill.hash))
        self.emit(Progress(done=k - 1, total=len(self.schedule()), phase="steps"))
        res = self.run_eval(skill, batch, "train", k, k)
        self.check_budget()
        account = new_account()

        # 2) gradients: failures, then preservation signals for tasks that passed after failing before
        diag = FailureDiagnoser(self.opt, seed=derive_seed(o.seed, "diagnose", k))
        contra = ContrastiveDiagnoser(self.opt, seed=derive_seed(o.seed, "contrast", k))
        gradients: list[TextGradient] = []
        signals: list[PreservationSignal] = []
        classes: Counter[str] = Counter()
        for traj in res.trajectories:  # the step's failure classes: the labels its gradients may take
            found = None if traj.errored else classify(by_id[traj.task_id], traj)
            if found is not None:
                classes[found.cls.key] += 1
        errored = [t for t in res.trajectories if t.errored]
        failed_with: dict[str, Skill | None] = {}  # skill hash -> the stored version tasks failed with
        for traj in res.trajectories:
            task = by_id[traj.task_id]
            if traj.errored:
                continue  # an HTTP 500 or an evaluator crash says nothing about the skill
            if not passed(traj):
                g = diag.diagnose(skill, task, traj, k, allowed=list(classes))
                if g is not None:
                    gradients.append(g)
            elif o.contrastive and traj.task_id in st["last_fail"]:
                before = load_trajectory(self.log.run_dir / st["last_fail"][traj.task_id])
                if before is not None:
                    if before.skill_hash not in failed_with:  # most share one version: read it once
                        failed_with[before.skill_hash] = self.version_with(before.skill_hash)
                    s = contra.compare(skill, task, traj, before, k, failed_with[before.skill_hash])
                    if s is not None:
                        signals.append(s)
        failed = [t for t in res.trajectories if not passed(t) and not t.errored]
        if errored:
            self.emit(Warning_(message=f"{len(errored)} of {len(res.trajectories)} task(s) errored and were not "
                                       f"diagnosed; most common: {res.outcomes.top_error}", step=k))
        invalid = diag.invalid_outputs + contra.invalid_outputs
        self.emit(GradientComputed(step=k, gradients=[g.to_dict() for g in gradients],
                                   contrastive=[s.to_dict() for s in signals], invalid_outputs=invalid))
        for role in (diag, contra):
            if role.backend_errors:
                self.emit(Warning_(message=f"{role.backend_errors} model call(s) failed: {role.last_error}", step=k))
        account.update(failed_tasks=len(failed), errored_tasks=len(errored), gradients=len(gradients),
                       gradients_from_code=diag.from_code,
                       failure_classes=dict(classes.most_common()))

        # 3) momentum
        memory = self.load_memory()
        overlay = memory.update(gradients, k, signals)
        self.log.write_text("overlay.md", overlay.to_markdown())
        self.log.write_text(f"overlays/step-{k}.md", overlay.to_markdown())
        self.emit(MemoryUpdated(step=k, patterns=[p.summary_dict() for p in memory.ranked()],
                                overlay=overlay.to_markdown()))

        # 4) update: a pool of candidates for the patterns this batch shows evidence for
        proposal = Proposal()
        if gradients:
            touched = [p for p in memory.patterns if k in p.iterations]
            patcher = Patcher(self.opt, seed=derive_seed(o.seed, "patch", k), l2_max_chars=o.l2_max_chars)
            proposal = patcher.propose(skill, touched, list(memory.preserved), train + val, k,
                                       candidates=o.candidates)
            patch = proposal.to_patch()
            self.emit(PatchProposed(
                step=k, patch_id=f"step-{k}", edits=[{**pe.to_dict(), "accepted_by_checks": True}
                                                     for pe in proposal.edits],
                rejected=[{**raw, "reason": why} for raw, why in proposal.rejected], rationale=patch.rationale,
                gradients=patch.gradients, tasks=patch.tasks))
        self.propose_format_repair(k, skill, proposal, list(memory.preserved), train + val)
        self.propose_answer_form(k, skill, proposal, list(memory.preserved), train + val,
                                 [(by_id[t.task_id], t) for t in failed])
        account.update(proposed=proposal.proposed, applied=proposal.applied, passed_checks=proposal.passed,
                       rejected=dict(proposal.reasons().most_common()))
        parent_files = self.log.version_files(parent)
        candidates: list[CandidateRecord] = []
        for edits, origin in zip(proposal.candidates, proposal.origins):
            files = dict(parent_files)
            for rel, text in apply_edits_in_memory(skill, [pe.edit for pe in edits]).items():
                files[rel] = text.encode("utf-8")
            rec = self.log.save_version(files, skill.root.name, step=k, parent=parent, origin=origin)
            self.emit(CandidateProposed(step=k, version=rec.version, parent=parent, origin=origin,
                                        edits=[pe.to_dict() for pe in edits], chars=rec.chars))
            candidates.append({"version": rec.version, "origin": origin, "proposed": [pe.to_dict() for pe in edits],
                               "mb": None, "val": None})
        account["candidates"] = len(candidates)
        pending: PendingStep  # state.json's "pending" until the step ends
        pending = {"patch_id": f"step-{k}", "parent": parent, "candidates": candidates, "decided": False,
                   "parent_mb": {t.task_id: (t.verdict.score if t.verdict else 0.0) for t in res.trajectories},
                   "proposed": [], "candidate": None, "edits": [], "accepted": [], "rejected": [], "kept": None,
                   "applied": False, "scored": False, "by": {"validation": "gate", "all": "all", "ask": "user"}[o.gate],
                   "reason": "", "account": account,
                   "train_loss": 1.0 - mean_score(res.trajectories), "all_pass": not failed,
                   "batch": [t.task_id for t in res.trajectories], "failed": [t.task_id for t in failed],
                   "batch_score_sum": mean_score(res.trajectories) * res.n, "batch_n": res.n,
                   "step_tokens": [self.live_prompt, self.live_completion], "seconds_at_start": st["seconds"]}
        mem_rel = f"memory/step-{k}-update.json"
        self.save_memory(memory, mem_rel)
        self.commit(stage="candidates", pending=pending, memory=mem_rel)

    def propose_format_repair(self, k: int, skill: Skill, proposal: Proposal,
                              preserved: list[PreservationSignal], tasks: list[Task]) -> None:
        """A skill that breaks a limit of the format (too long a description, a name that is not
        its folder's) gets the repair as its first candidate, checked like any proposed edit."""
        edits = repair_edits(skill)
        if not edits:
            return
        proposed = [ProposedEdit(e, "format", "format limit", "; ".join(p.message for p in skill.format_violations()),
                                 [], []) for e in edits]
        proposal.proposed += len(edits)
        patcher = Patcher(self.opt, seed=derive_seed(self.options.seed, "repair", k),
                          l2_max_chars=self.options.l2_max_chars)
        why = patcher.check(skill, edits, [], preserved, tasks)
        if why is not None:
            proposal.reject(proposed[0].to_dict(), why[0], why[1])
            self.emit(Warning_(message=f"format repair rejected by the checks: {why[1]}", step=k))
            return
        proposal.applied += len(edits)
        proposal.passed += len(edits)
        proposal.candidates.insert(0, proposed)
        proposal.origins.insert(0, REPAIR_ORIGIN)

    def propose_answer_form(self, k: int, skill: Skill, proposal: Proposal, preserved: list[PreservationSignal],
                            tasks: list[Task], failed: list[tuple[Task, Trajectory]]) -> None:
        """When the step's failures show answers in another form than the evaluator expects, the
        skill's examples rewritten into that form (and a rule) are a candidate of their own, made in
        code from the diffs, then checked and gated like any proposed edit."""
        shift = induce((t.id, [g for g in answer_items(tr.answer) if g.strip()], list(t.expected or []))
                       for t, tr in failed if t.kind != "spreadsheet")
        if shift is None:
            return
        avoid = {n for t in tasks for e in t.expected or [] for n in numbers_in(e)}
        patcher = Patcher(self.opt, seed=derive_seed(self.options.seed, "form", k),
                          l2_max_chars=self.options.l2_max_chars)
        label = failure_class("wrong_form").label

        def offer(edits: list[Edit], why: str) -> None:  # a candidate that passed the checks
            proposal.proposed += len(edits)
            proposal.applied += len(edits)
            proposal.passed += len(edits)
            proposal.candidates.insert(0, [ProposedEdit(e, FORM_PATTERN, label, why, [], list(shift.tasks))
                                           for e in edits])
            proposal.origins.insert(0, FORM_ORIGIN)

        # First choice: the rule with a worked example from one failure of the shift, the shortest.
        # The example shows that task's own values on purpose (the check takes them as given); all
        # else the candidate adds is checked against every training task. Validation tasks never
        # appear in an example, so a gain on validation is not the example's answer copied.
        agent = Agent(self.task_backend, self.agent_settings)
        shifted = set(shift.tasks)
        examples = sorted(((worked_example(agent.context_text(task, rows=EXAMPLE_ROWS), task.question,
                                           task.expected[0]), task)
                           for task, _ in failed if task.id in shifted and task.expected),
                          key=lambda et: (len(et[0]), et[1].id))  # the shortest example costs the least prompt
        for example, task in examples:
            edits = form_edits(skill, shift, avoid, example)
            if not edits or example not in apply_edits_in_memory(skill, edits)[SKILL_MD]:
                break  # the skill shows the form already, or has no place for an example
            if patcher.check(skill, edits, [], preserved, tasks, shown=example) is None:
                offer(edits, f"{shift.why()}; worked example from training task {task.id}")
                return
        edits = form_edits(skill, shift, avoid)
        if not edits:
            return
        why = patcher.check(skill, edits, [], preserved, tasks)
        if why is None:
            offer(edits, shift.why())
            return
        proposal.proposed += len(edits)
        proposal.applied += len(edits)
        proposal.reject(ProposedEdit(edits[0], FORM_PATTERN, label, shift.why(), [], list(shift.tasks)).to_dict(),
                        why[0], why[1])
