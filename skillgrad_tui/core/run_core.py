"""The state a run carries through its stages: events, budgets, the durable commit of state.json,
the momentum memory, and the evaluations every stage uses."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Unpack

from skillgrad_tui.core.agent import Agent, AgentSettings
from skillgrad_tui.core.errors import Cancelled, EvaluationErrored, SkillgradError
from skillgrad_tui.core.evaluate import EvalResult, evaluate
from skillgrad_tui.core.events import Event, EventSink, TaskFinished
from skillgrad_tui.core.llm.base import Backend, CancelToken, Completion, CompletionRequest, WrappedBackend
from skillgrad_tui.core.momentum import MomentumMemory
from skillgrad_tui.core.optimize_options import OptimizeOptions, derive_seed
from skillgrad_tui.core.pool import pareto_frontier, pick_parent
from skillgrad_tui.core.records import Task, Trajectory
from skillgrad_tui.core.review import ReviewFn
from skillgrad_tui.core.run_state import EditRecord, PendingStep, RunState
from skillgrad_tui.core.runlog import RunError, RunLog
from skillgrad_tui.core.skill_edits import Edit
from skillgrad_tui.core.skill_format import Skill
from skillgrad_tui.core.skill_load import load_skill
from skillgrad_tui.core.skill_lock import SkillLock
from skillgrad_tui.core.suites import Suite


class BudgetSpent(Exception):
    pass


class RunCancel(CancelToken):
    """Set by the caller's token (the user, its parent) or by the loop itself (a budget ran out)."""

    def __init__(self, user: CancelToken | None) -> None:
        super().__init__(parent=user)

    def trip(self) -> None:
        """Stop the run as if cancelled, without touching the caller's token."""
        self.cancel()


class Metered(WrappedBackend):
    """The optimiser roles' backend: counts their tokens and lets cancel/budget stop them."""

    def __init__(self, inner: Backend, run: "RunCore") -> None:
        super().__init__(inner)
        self.run = run

    def complete(self, request: CompletionRequest, cancel: CancelToken | None = None) -> Completion:
        self.run.check_budget()
        self.run.token.raise_if_cancelled()
        completion = self.inner.complete(request, cancel or self.run.token)
        self.run.add_role_usage(completion.usage.prompt_tokens, completion.usage.completion_tokens)
        if completion.finish_reason == "cancelled":
            raise Cancelled()
        return completion

    def close(self) -> None:  # the caller owns the backend
        pass


def edit_from_dict(d: EditRecord) -> Edit:
    return Edit(d["layer"], d["path"], d["old"], d["new"])


def edit_to_dict(e: Edit) -> EditRecord:
    return {"layer": e.layer, "path": e.path, "old": e.old, "new": e.new}


def mean_score(trajs: list[Trajectory]) -> float:
    return sum(t.verdict.score if t.verdict else 0.0 for t in trajs) / len(trajs) if trajs else 0.0


def passed(t: Trajectory) -> bool:
    return bool(t.verdict and t.verdict.passed)


class RunCore:
    """What every stage shares: the run's state, its log and budgets, and the evaluations."""

    def __init__(self, skill_root: Path, suite: Suite, task_backend: Backend, opt_backend: Backend,
                 options: OptimizeOptions, agent_settings: AgentSettings | None, sink: EventSink,
                 cancel: CancelToken | None, review: ReviewFn | None) -> None:
        self.skill_root = Path(skill_root).resolve()
        self.suite = suite
        self.sink = sink
        self.review = review
        self.token = RunCancel(cancel)
        self.budget_hit = False
        self.task_backend = task_backend
        self.opt = Metered(opt_backend, self)
        self.options = options
        self.agent_settings = agent_settings or AgentSettings()
        self.log: RunLog | None = None
        self.state: RunState = {}
        # Tokens and seconds of the stage in progress, on top of what state.json has committed.
        self.live_prompt = 0
        self.live_completion = 0
        self.stage_start = time.monotonic()
        self.before_session: tuple[int, float] = (0, 0.0)  # tokens and seconds of earlier sessions
        self.lock: SkillLock | None = None

    def emit(self, event: Event) -> None:
        assert self.log is not None
        self.log.emit(event)  # durable first: what a view shows is always in the log
        self.sink(event)

    def task_sink(self, event: Event) -> None:
        self.emit(event)
        if isinstance(event, TaskFinished):
            self.live_prompt += event.prompt_tokens
            self.live_completion += event.completion_tokens
            self.check_budget(raise_now=False)  # evaluate stops before the next task

    def add_role_usage(self, prompt: int, completion: int) -> None:
        self.live_prompt += prompt
        self.live_completion += completion

    def spent(self) -> tuple[int, float]:
        tokens = self.state["tokens"]["prompt"] + self.state["tokens"]["completion"]
        seconds = self.state["seconds"] + (time.monotonic() - self.stage_start)
        return tokens + self.live_prompt + self.live_completion, seconds

    def check_budget(self, raise_now: bool = True) -> None:
        tokens, seconds = self.spent()
        over = ((self.options.token_budget is not None and tokens >= self.options.token_budget)
                or (self.options.time_budget_s is not None and seconds >= self.options.time_budget_s))
        if over:
            self.budget_hit = True
            self.token.trip()
            if raise_now:
                raise BudgetSpent()

    def budget_note(self) -> str:
        """Which budget stopped the run, counted how: budgets cover the whole run, earlier
        sessions of a resumed run included."""
        tokens, seconds = self.spent()
        t0, s0 = self.before_session
        o = self.options
        if o.time_budget_s is not None and seconds >= o.time_budget_s:
            return (f"stopped by the time budget: {o.time_budget_s:g} s for the whole run, {seconds:.1f} s used "
                    f"({s0:.1f} s of it before this session); resume with a larger --time-budget")
        return (f"stopped by the token budget: {o.token_budget} tokens for the whole run, {tokens} used "
                f"({t0} of them before this session); resume with a larger --token-budget")

    def commit(self, **changes: Unpack[RunState]) -> None:
        """Make a stage durable: the new state and the stage's tokens, in one write.

        The stage's tokens are those of its tasks (reused trajectories included, so a redone
        stage counts the same) plus its optimiser calls: a function of the inputs, not of crashes.
        """
        assert self.log is not None
        st = self.state
        st["tokens"] = {"prompt": st["tokens"]["prompt"] + self.live_prompt,
                        "completion": st["tokens"]["completion"] + self.live_completion}
        st["seconds"] = st["seconds"] + (time.monotonic() - self.stage_start)
        st.update(changes)
        self.log.write_state(st)
        self.live_prompt = self.live_completion = 0
        self.stage_start = time.monotonic()

    def pending(self) -> PendingStep:
        """The step in progress: there is one from its candidates until the step's end."""
        pend = self.state["pending"]
        assert pend is not None, "no step in progress"
        return pend

    def schedule(self) -> list[list[str]]:
        """Each step's minibatch: planned by the seed phase, before any step."""
        schedule = self.state["schedule"]
        assert schedule is not None, "no schedule before the seed phase"
        return schedule

    def load_memory(self) -> MomentumMemory:
        rel = self.state.get("memory")
        if rel is None:  # --no-momentum: a memory that resets itself at every update
            return MomentumMemory(decay=self.options.momentum_decay) if self.options.momentum \
                else MomentumMemory.step_only()
        assert self.log is not None
        try:
            return MomentumMemory.from_dict(self.log.read_json(rel))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunError(f"cannot read the momentum memory snapshot: {exc}", self.log.run_dir / rel) from None

    def save_memory(self, memory: MomentumMemory, rel: str) -> None:
        assert self.log is not None
        self.log.write_json(rel, memory.to_dict())  # the snapshot resume reads
        memory.save(self.log.run_dir)  # memory.json + memory.md: the latest, for people and the TUI

    def version_with(self, skill_hash: str) -> Skill | None:
        """The stored version with this content (the one a trajectory ran with), if the run has it."""
        assert self.log is not None
        rec = next((r for r in self.log.versions() if r.skill_hash == skill_hash), None)
        if rec is None:
            return None
        try:
            return self.log.load_version(rec.version)
        except SkillgradError:  # a damaged store only costs the ordering of the choices
            return None

    def user_skill(self, expect: int) -> Skill:
        """The user's skill, refused unless it is the version the run expects it to be."""
        assert self.log is not None
        skill = load_skill(self.skill_root)
        want = self.log.version(expect).skill_hash
        if skill.hash != want:
            raise RunError(f"the skill was changed outside this run (hash {skill.hash[:12]}, the run expects "
                           f"version {expect}, {want[:12]}); restore it with `skillgrad rollback "
                           f"{self.log.run_dir} {expect}` or start a new run", self.skill_root)
        return skill

    def run_eval(self, skill: Skill, tasks: list[Task], phase: str, step: int, folder: str | int, *,
                 seed: int | None = None, subdir: str | None = None) -> EvalResult:
        assert self.log is not None
        traj_dir = self.log.traj_dir(folder, subdir or phase)
        done = self.log.load_trajectories(traj_dir, skill.hash)
        done = {k: v for k, v in done.items() if k in {t.id for t in tasks}}
        agent = Agent(self.task_backend, self.agent_settings)
        res = evaluate(agent, skill, tasks, seed=self.options.seed if seed is None else seed, phase=phase,
                       step=step, sink=self.task_sink, cancel=self.token, traj_dir=traj_dir, done=done)
        counts = res.outcomes
        if counts.all_errored:
            for path in traj_dir.glob("*.json"):  # a resumed run asks again rather than reuse errors
                path.unlink(missing_ok=True)
            raise EvaluationErrored(f"every task of the {phase} evaluation errored ({counts.errored}/{counts.n}); "
                                    f"most common: {counts.top_error}")
        return res

    def rel(self, path: Path) -> str:
        assert self.log is not None
        return path.relative_to(self.log.run_dir).as_posix()

    def val_repeats(self) -> int:
        """Validation runs per task: 1 for a greedy task model (the same answer every time)."""
        if self.options.val_repeats > 0:
            return self.options.val_repeats
        return 1 if self.agent_settings.temperature <= 0 else 3

    def choose_parent(self, k: int) -> int:
        """The version this step improves: the current one, or one drawn from the Pareto frontier."""
        st = self.state
        if self.options.parent_selection != "pareto":
            return int(st["current"])
        frontier = pareto_frontier({int(v): s for v, s in st["val_tasks"].items()})
        return pick_parent(frontier, derive_seed(self.options.seed, "parent", k)) if frontier else int(st["current"])

    def validate(self, skill: Skill, val: list[Task], step: int, folder: str) -> dict[str, float]:
        """Per-task validation scores, the mean over the repeats (seeds seed, seed + 1, ...)."""
        sums: dict[str, float] = {}
        repeats = self.val_repeats()
        for r in range(repeats):
            res = self.run_eval(skill, val, "val", step, folder, seed=self.options.seed + r,
                                subdir="val" if r == 0 else f"val-r{r}")
            for t in res.trajectories:
                sums[t.task_id] = sums.get(t.task_id, 0.0) + (t.verdict.score if t.verdict else 0.0)
        return {tid: s / repeats for tid, s in sums.items()}

    def commit_pending(self, pend: PendingStep, **changes: Unpack[RunState]) -> None:
        """Commit the step's pending record, with the tokens of the stage just done added to the step's."""
        pend["step_tokens"] = [pend["step_tokens"][0] + self.live_prompt, pend["step_tokens"][1] + self.live_completion]
        changes["pending"] = pend
        self.commit(**changes)
