"""The optimisation loop (method.md): forward, gradient, momentum, a pool of candidates, gate;
epochs, early stop, budgets, resume.

The loop is a small state machine whose state lives in the run directory's state.json. Every
stage ends with a durable commit, and the next stage reads back what was committed (the momentum
memory included) instead of trusting in-memory leftovers, so an uninterrupted run and a run killed
with SIGKILL and resumed take exactly the same path: same seeds, same inputs, same skill versions.

Ordering that makes the user's skill safe: every candidate version is written into the run
directory (and scored from there) before anything touches the user's folder; the decision is
committed to state.json before the patch is applied (atomically, by skill.apply_patch); on resume
the folder's hash must equal the version before or after that patch, or the run refuses to go on.

Where each part lives: the options and result in optimize_options.py, the person's review in
review.py, the state every stage shares in run_core.py, creation, resume and the seed evaluation
in run_setup.py, and one module per stage (step_forward.py, step_candidates.py, step_gate.py).

Stages of step k:
- "forward": the parent (the current version, or one drawn from the Pareto frontier) runs the
  minibatch; failures are classified and diagnosed; momentum; the patcher proposes a pool of
  candidates, each saved as a version -> commit.
- "candidates": each candidate is scored on the minibatch (one commit each); with the
  validation gate, those that improve it are scored on validation (one commit each); then the
  decision: the noise-aware paired gate (gate.py) for "validation", the best minibatch candidate
  for "all", the person's review for "ask" -> commit.
- "gate": apply (behind its own commit); for "all"/"ask" the kept version is scored on validation
  for the record -> commit.
- the step commit: memory, the step's account (proposed, applied, rejected by reason, scored,
  kept, one sentence), and step k + 1.
"""

from __future__ import annotations

import time
from pathlib import Path

from skillgrad_tui.core.agent import AgentSettings
from skillgrad_tui.core.errors import Cancelled, EvaluationErrored, ModelCrashed, SkillgradError
from skillgrad_tui.core.events import EventSink, RunFinished, Warning_, null_sink
from skillgrad_tui.core.llm.base import Backend, CancelToken
from skillgrad_tui.core.optimize_options import OptimizeOptions, RunResult, best_version, derive_seed, plan_schedule
from skillgrad_tui.core.pool import new_account, run_sentence
from skillgrad_tui.core.review import DecidedEdits, ReviewDecision, ReviewFn, ReviewItem, ReviewRequest, decided_edits
from skillgrad_tui.core.run_core import BudgetSpent
from skillgrad_tui.core.run_setup import RunSetup
from skillgrad_tui.core.skill_load import load_skill
from skillgrad_tui.core.skill_lock import SkillLock
from skillgrad_tui.core.step_candidates import CandidatesStage
from skillgrad_tui.core.step_forward import ForwardStage
from skillgrad_tui.core.step_gate import GateStage
from skillgrad_tui.core.suites import Suite

__all__ = ["DecidedEdits", "OptimizeOptions", "ReviewDecision", "ReviewFn", "ReviewItem", "ReviewRequest", "RunResult",
           "best_version", "decided_edits", "derive_seed", "optimize", "plan_schedule"]

FINISHED_REASONS = ("steps", "early_stop", "no_failures")  # a run that ended by itself, not resumable


class _Run(RunSetup, ForwardStage, CandidatesStage, GateStage):
    """A run: the stages, each in the module named for it, and the loop that drives them."""

    def loop(self) -> str:
        train, val = self.splits()
        if self.state["phase"] == "seed":
            self.check_budget()
            self.seed_phase(train, val)
        while True:
            st = self.state
            k = st["step"]
            if st["stage"] == "forward":
                if st["streak"] >= self.options.early_stop:
                    return "early_stop"
                if k > len(self.schedule()):
                    return "steps" if st["schedule"] else "no_failures"
                self.check_budget()
                self.forward_stage(k, train, val)
            if self.state["stage"] == "candidates":
                self.candidates_stage(k, val)
            self.check_budget()
            self.gate_stage(k, val)
            self.finish_step(k)

    def result(self, reason: str) -> RunResult:
        assert self.log is not None
        versions = self.log.versions()
        best = best_version(versions)
        try:
            final = load_skill(self.skill_root).hash
        except SkillgradError:
            final = ""
        st = self.state
        account = st.get("account") or new_account()
        kept = list(st.get("kept_versions", []))
        changed = bool(versions) and final != versions[0].skill_hash
        summary = run_sentence(account, int(st.get("steps_done", 0)), kept)
        if not changed and kept:
            summary += "; the kept changes cancel out: the skill is back to where it started"
        return RunResult(self.log.run_dir, reason, versions, best.version if best else None, final,
                         best.val_score if best else None, st["tokens"]["prompt"] + self.live_prompt,
                         st["tokens"]["completion"] + self.live_completion,
                         st["seconds"] + (time.monotonic() - self.stage_start), account=account, summary=summary,
                         changed=changed)

    def run(self) -> RunResult:
        if self.options.resume is None:
            load_skill(self.skill_root)  # a skill that does not load gets no lock file beside it
        run_id = self.options.resume.name if self.options.resume is not None else None
        lock = self.lock = SkillLock(self.skill_root, run_id=run_id).acquire()  # one writer per skill, whole run
        try:
            if self.options.resume is not None:
                self.resume(self.options.resume)
                if self.state["status"] != "running":
                    return self.result(self.state["reason"] or self.state["status"])
            else:
                self.start()
            if lock.taken_over is not None:
                self.emit(Warning_(message=f"took over the skill's lock from {lock.taken_over.describe()}, "
                                           "which died holding it"))
            note = ""
            try:
                reason = self.loop()
            except (Cancelled, BudgetSpent):
                reason = "budget" if self.budget_hit else "cancelled"
                if reason == "budget":
                    note = self.budget_note()
                    self.emit(Warning_(message=note))
            except BaseException as exc:
                try:
                    if not isinstance(exc, KeyboardInterrupt):
                        self.emit(Warning_(message=f"run stopped by an error: {exc}"))
                    self.emit(RunFinished(reason="error"))
                except Exception:  # the log itself may be what failed; the original error matters
                    pass
                if isinstance(exc, EvaluationErrored) and self.log is not None:
                    raise EvaluationErrored(f"{exc.message}; fix the model or server, then resume with "
                                            f"`skillgrad optimize --resume {self.log.run_dir}`") from exc
                if isinstance(exc, ModelCrashed) and self.log is not None:
                    raise ModelCrashed(f"{exc.message}; the run stopped and can be resumed with "
                                       f"`skillgrad optimize --resume {self.log.run_dir}`", exc.returncode) from exc
                raise
            if reason in FINISHED_REASONS:
                self.commit(status="finished", reason=reason)
            else:
                # Stopped early: the work of the unfinished stage stays uncommitted and is redone
                # (its finished tasks reused) when the run is resumed.
                self.state["reason"] = reason
            res = self.result(reason)
            res.note = note
            self.emit(RunFinished(reason=reason, best_version=res.best_version, best_score=res.best_score,
                                  summary=res.summary, account=res.account))
            return res
        finally:
            if self.log is not None:
                self.log.close()
            lock.release()


def optimize(skill_root: Path, suite: Suite, task_backend: Backend, opt_backend: Backend,
             options: OptimizeOptions, *, agent_settings: AgentSettings | None = None,
             sink: EventSink = null_sink, cancel: CancelToken | None = None,
             review: ReviewFn | None = None) -> RunResult:
    """Optimise the skill at `skill_root` on `suite` (or continue `options.resume`)."""
    return _Run(skill_root, suite, task_backend, opt_backend, options, agent_settings, sink, cancel,
                review).run()
