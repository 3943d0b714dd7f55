"""A step's "candidates" stage: each candidate scored on the minibatch, the improvers on
validation, then the decision (the paired gate, the best on the minibatch, or the person's review)."""

from __future__ import annotations

from collections import Counter

from skillgrad_tui.core.events import CandidateDecided, CandidateScored, ValidationScored, Warning_
from skillgrad_tui.core.format_repair import REPAIR_ORIGIN
from skillgrad_tui.core.gate import GateDecision, paired_gate
from skillgrad_tui.core.patcher import ProposedEdit
from skillgrad_tui.core.pool import (MINIBATCH_NOT_IMPROVED, NOT_CHOSEN, NOT_REBASABLE, PERSON_REJECTED, rebase_edits,
                                     step_sentence)
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.review import ReviewItem, ReviewRequest, decided_edits
from skillgrad_tui.core.run_core import RunCore, edit_to_dict, mean_score
from skillgrad_tui.core.run_state import CandidateRecord, PendingStep
from skillgrad_tui.core.skill_edits import Edit, apply_edits_in_memory
from skillgrad_tui.core.skill_format import SKILL_MD, Skill

SCORE_EPS = 1e-9
REPAIR_KEPT = "format_repair"  # gate key: a format repair kept on a tie


class CandidatesStage(RunCore):
    """The stage that scores a step's candidates and decides which (if any) is kept."""

    def candidates_stage(self, k: int, val: list[Task]) -> None:
        """Score each candidate on the minibatch, the improvers on validation, then decide; each
        score is its own commit, so a run killed while scoring resumes at the next candidate."""
        while not self.pending()["decided"]:
            self.check_budget()
            cands = self.pending()["candidates"]
            i = next((i for i, c in enumerate(cands) if c["mb"] is None), None)
            if i is not None:
                self.score_minibatch(k, i)
                continue
            i = next((i for i, c in enumerate(cands) if c["val"] is None and self.wants_validation(c)), None)
            if i is not None:
                self.score_validation(k, i, val)
                continue
            self.decide_candidates(k)

    def minibatch_gain(self, c: CandidateRecord) -> float:
        parent, mb = self.pending()["parent_mb"], c["mb"]
        assert mb is not None, "the candidate has no minibatch scores yet"
        return sum(mb.values()) - sum(parent.get(t, 0.0) for t in mb)

    def wants_validation(self, c: CandidateRecord) -> bool:
        """GEPA's acceptance: only a candidate that improves the minibatch is scored on validation
        (or, on a tie, one shorter than the current skill: the tie rule may keep it)."""
        assert self.log is not None
        if self.options.gate != "validation":
            return False
        if not self.options.minibatch_gate or c["origin"] == REPAIR_ORIGIN:
            return True
        gain = self.minibatch_gain(c)
        shorter = self.log.version(c["version"]).chars < self.log.version(self.state["current"]).chars
        return gain > SCORE_EPS or (abs(gain) <= SCORE_EPS and shorter)

    def score_minibatch(self, k: int, i: int) -> None:
        assert self.log is not None
        pend = self.pending().copy()
        c = pend["candidates"][i].copy()
        by_id = {t.id: t for t in self.suite.tasks}
        skill = self.log.load_version(c["version"])
        res = self.run_eval(skill, [by_id[t] for t in pend["batch"]], "minibatch", k, f"step-{k}-v{c['version']}")
        c["mb"] = {t.task_id: (t.verdict.score if t.verdict else 0.0) for t in res.trajectories}
        mean = mean_score(res.trajectories)
        parent = sum(pend["parent_mb"].values()) / len(pend["parent_mb"]) if pend["parent_mb"] else 0.0
        self.emit(CandidateScored(step=k, version=c["version"], phase="minibatch", score=mean, parent_score=parent,
                                  n=res.n, improved=self.minibatch_gain(c) > SCORE_EPS))
        self.log.update_version(c["version"], minibatch=mean)
        pend["candidates"] = [c if j == i else x for j, x in enumerate(pend["candidates"])]
        self.commit_pending(pend)

    def score_validation(self, k: int, i: int, val: list[Task]) -> None:
        assert self.log is not None
        pend = self.pending().copy()
        c = pend["candidates"][i].copy()
        skill = self.log.load_version(c["version"])
        scores = c["val"] = self.validate(skill, val, k, f"v{c['version']}")
        mean = sum(scores.values()) / len(scores) if scores else 0.0
        self.emit(ValidationScored(step=k, skill_hash=skill.hash, score=mean, n=len(scores)))
        self.emit(CandidateScored(step=k, version=c["version"], phase="val", score=mean,
                                  parent_score=self.state["current_val"], n=len(scores)))
        self.log.update_version(c["version"], val_score=mean)
        pend["candidates"] = [c if j == i else x for j, x in enumerate(pend["candidates"])]
        self.commit_pending(pend, val_tasks={**self.state["val_tasks"], str(c["version"]): scores})

    def decide_candidates(self, k: int) -> None:
        """Which candidate (if any) replaces the current skill, and why each other one does not."""
        assert self.log is not None
        st, o = self.state, self.options
        pend = self.pending().copy()
        cands = pend["candidates"]
        account = dict(pend["account"])
        rejected: Counter[str] = Counter(account.get("rejected", {}))
        current = self.log.version(st["current"])
        verdicts: dict[int, tuple[bool, str, str, GateDecision | None]] = {}
        for c in cands:
            v = c["version"]
            if o.gate != "validation":
                verdicts[v] = (True, "", "", None)
            elif c["val"] is None:
                mb = c["mb"]
                assert mb is not None  # every candidate is scored on the minibatch before the decision
                verdicts[v] = (False, MINIBATCH_NOT_IMPROVED, f"minibatch {sum(mb.values()):g} of {len(mb)} "
                               f"vs the parent's {sum(pend['parent_mb'].values()):g}: not improved, not validated",
                               None)
            else:
                gated = paired_gate(st["val_tasks"].get(str(st["current"]), {}), c["val"], k=o.gate_k,
                                    candidate_chars=self.log.version(v).chars, current_chars=current.chars,
                                    repeats=self.val_repeats())
                verdicts[v] = (gated.kept, gated.key, gated.sentence(), gated)
                if c["origin"] == REPAIR_ORIGIN and not gated.kept and gated.gain >= -SCORE_EPS:
                    # a repair of the format is wanted for itself: it only has to do no harm
                    verdicts[v] = (True, REPAIR_KEPT, f"{gated.sentence()}; a format repair that costs nothing: kept",
                                   gated)
        keepable = [c for c in cands if verdicts[c["version"]][0]]
        chosen: CandidateRecord | None = None
        if keepable and o.gate == "validation":
            def rank(c: CandidateRecord) -> tuple[float, int, int]:
                d = verdicts[c["version"]][3]
                assert self.log is not None
                return (-(d.gain if d else 0.0), self.log.version(c["version"]).chars, cands.index(c))
            chosen = min(keepable, key=rank)
        elif keepable:  # "all" and "ask": the best on the minibatch, candidate 0 on ties
            chosen = max(keepable, key=lambda c: (self.minibatch_gain(c), -cands.index(c)))
        pend.update({"proposed": chosen["proposed"] if chosen else [], "candidate": None, "kept": False, "edits": [],
                     "accepted": [], "rejected": [], "scored": False})
        if chosen is not None:
            self.take_candidate(k, pend, chosen, verdicts[chosen["version"]])
        for c in cands:
            v = c["version"]
            kept, key, sentence, d = verdicts[v]
            if chosen is not None and v == chosen["version"] and pend["kept"]:
                continue
            if chosen is not None and v == chosen["version"]:
                key, sentence = pend["reason_key"], pend["reason"]
            elif kept:
                key, sentence = NOT_CHOSEN, f"{sentence + '; ' if sentence else ''}another candidate was better"
            rejected[key] += 1
            self.log.update_version(v, decision=sentence)
            self.emit(CandidateDecided(step=k, version=v, kept=False, reason=key, sentence=sentence,
                                       gain=d.gain if d else None, se=d.se if d else None, n=d.n if d else 0))
        scored = [c for c in cands if c["mb"] is not None]
        account.update(scored_minibatch=len(scored),
                       improved_minibatch=sum(1 for c in scored if self.minibatch_gain(c) > SCORE_EPS),
                       validated=sum(1 for c in cands if c["val"] is not None),
                       accepted=int(bool(pend["kept"])), rejected=dict(rejected.most_common()))
        if not pend["kept"]:
            pend["reason"] = step_sentence(account, None)
        pend.update({"account": account, "decided": True})
        self.commit_pending(pend, stage="gate")

    def take_candidate(self, k: int, pend: PendingStep, chosen: CandidateRecord,
                       verdict: tuple[bool, str, str, GateDecision | None]) -> None:
        """Fill the pending record with the chosen candidate: for "ask", the edits the person keeps."""
        assert self.log is not None
        o = self.options
        _, key, sentence, d = verdict
        pend["chosen_from"] = chosen["version"]
        items = [ProposedEdit.from_dict(x) for x in chosen["proposed"]]
        version = chosen["version"]
        current = self.user_skill(self.state["current"])
        edits = [pe.edit for pe in items]
        if o.gate == "ask":
            parent = self.log.load_version(pend["parent"])
            reviewed, edits, used = self.review_edits(k, parent, pend["parent"], items)
            pend["accepted"], pend["rejected"] = used, [i for i in range(len(items)) if i not in used]
            if reviewed is None:
                pend.update({"reason_key": PERSON_REJECTED, "reason": "the person rejected every edit"})
                return
            version = reviewed
            key, sentence = "", "accepted by the person"
        else:
            pend["accepted"] = list(range(len(items)))
            if o.gate == "all":
                key, sentence = "", "gate 'all' keeps the best candidate on the minibatch"
        try:
            if pend["parent"] != self.state["current"]:  # made from another frontier version
                target = {p: b.decode("utf-8") for p, b in self.log.version_files(version).items()
                          if p in current.files or p == SKILL_MD
                          or (p.split("/", 1)[0] in ("references", "scripts") and "/" in p)}
                edits = rebase_edits(current, target)
        except ValueError as exc:
            pend.update({"reason_key": NOT_REBASABLE, "reason": f"{NOT_REBASABLE}: {exc}"})
            return
        if not edits:
            pend.update({"reason_key": NOT_REBASABLE, "reason": "the candidate is the current skill"})
            return
        mean = sum(chosen["val"].values()) / len(chosen["val"]) if chosen["val"] else None
        pend.update({"candidate": version, "edits": [edit_to_dict(e) for e in edits], "kept": True, "reason": sentence,
                     "reason_key": key, "scored": chosen["val"] is not None, "val_score": mean,
                     "gain": d.gain if d else None, "se": d.se if d else None})
        self.log.update_version(version, decision=sentence)
        self.emit(CandidateDecided(step=k, version=version, kept=True, reason=key or "kept", sentence=sentence,
                                   gain=d.gain if d else None, se=d.se if d else None, n=d.n if d else 0))

    def review_edits(self, k: int, parent: Skill, parent_version: int,
                     items: list[ProposedEdit]) -> tuple[int | None, list[Edit], list[int]]:
        """Ask the person: the version made of the edits they keep (None if none), the edits, and
        their indices."""
        assert self.log is not None and self.review is not None
        request = ReviewRequest(k, parent, [ReviewItem(i, pe.edit, pe.pattern_label, list(pe.gradients),
                                                       list(pe.tasks), pe.rationale) for i, pe in enumerate(items)])
        decided = decided_edits(request, self.review(request))
        for i, why in decided.dropped:  # e.g. it relied on an edit the person rejected
            self.emit(Warning_(message=f"edit {i} dropped: {why}", step=k))
        edits, used = decided.edits, decided.used
        if not edits:
            return None, [], used
        files = dict(self.log.version_files(parent_version))
        for rel, text in apply_edits_in_memory(parent, edits).items():
            files[rel] = text.encode("utf-8")
        rec = self.log.save_version(files, parent.root.name, step=k, parent=parent_version, origin="reviewed")
        return rec.version, edits, used
