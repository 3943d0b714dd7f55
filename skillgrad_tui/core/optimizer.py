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

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Unpack, cast

from skillgrad_tui.core.agent import Agent, AgentSettings
from skillgrad_tui.core.answer_form import FORM_ORIGIN, FORM_PATTERN, form_edits, induce, worked_example
from skillgrad_tui.core.errors import Cancelled, EvaluationErrored, ModelCrashed, SkillgradError
from skillgrad_tui.core.evaluate import EvalResult, evaluate, load_trajectory, trajectory_file
from skillgrad_tui.core.evaluators.base import answer_items
from skillgrad_tui.core.events import (CandidateDecided, CandidateProposed, CandidateScored, Event, EventSink,
                                       GradientComputed, MemoryUpdated, PatchDecided, PatchProposed, Progress,
                                       RunFinished, RunStarted, StepAccount, StepFinished, StepStarted, TaskFinished,
                                       ValidationScored, VersionSaved, Warning_, null_sink)
from skillgrad_tui.core.failures import classify, failure_class
from skillgrad_tui.core.format_repair import REPAIR_ORIGIN, repair_edits
from skillgrad_tui.core.gate import DEFAULT_K, GATES, GateDecision, paired_gate
from skillgrad_tui.core.gradient import ContrastiveDiagnoser, FailureDiagnoser, PreservationSignal, TextGradient
from skillgrad_tui.core.llm.base import Backend, CancelToken, Completion, CompletionRequest, WrappedBackend
from skillgrad_tui.core.momentum import MomentumMemory
from skillgrad_tui.core.patcher import Patcher, Proposal, ProposedEdit
from skillgrad_tui.core.pool import (MINIBATCH_NOT_IMPROVED, NOT_CHOSEN, NOT_REBASABLE, PERSON_REJECTED, add_accounts,
                                     new_account, pareto_frontier, pick_parent, rebase_edits, run_sentence,
                                     step_sentence)
from skillgrad_tui.core.records import Task, Trajectory
from skillgrad_tui.core.run_state import CandidateRecord, EditRecord, PendingStep, RunState, kept_version
from skillgrad_tui.core.runlog import RunError, RunLog, VersionRecord, default_runs_root, unique_run_dir
from skillgrad_tui.core.skill import (SKILL_MD, Edit, Patch, Skill, SkillChanged, apply_edits_in_memory, apply_patch,
                                     load_skill, recover, snapshot)
from skillgrad_tui.core.skill import warning_summary
from skillgrad_tui.core.skill_lock import SkillLock
from skillgrad_tui.core.vcs import GitError, commit_skill, in_git_work_tree
from skillgrad_tui.core.suites import Suite
from skillgrad_tui.core.suites.splits import select_split, split_tasks
from skillgrad_tui.core.textsim import numbers_in

PARENT_SELECTIONS = ("current", "pareto")
STATE_FORMAT = 2  # 2: candidate pools, per-task validation scores, accounts
SCORE_EPS = 1e-9
EXAMPLE_ROWS = 3  # table rows a code-made worked example shows (the rest are counted, as the agent sees them)
REPAIR_KEPT = "format_repair"  # gate key: a format repair kept on a tie
FINISHED_REASONS = ("steps", "early_stop", "no_failures")  # a run that ended by itself, not resumable


@dataclass
class OptimizeOptions:
    train_split: str = "train"
    val_split: str = "val"  # names for select_split on split_tasks(suite.tasks, seed)
    steps: int | None = None
    epochs: int | None = None  # default: 1 epoch over the train pool, capped by steps
    batch_size: int = 4
    seed: int = 0
    gate: str = "validation"  # "validation" | "all" | "ask"
    momentum: bool = True
    contrastive: bool = True
    failures_only: bool = True  # train on the seed skill's failures (paper) vs plain minibatches
    token_budget: int | None = None
    time_budget_s: float | None = None
    early_stop: int = 4  # stop after this many consecutive all-pass batches
    momentum_decay: float = 0.8
    l2_max_chars: int = 6000
    candidates: int = 3  # candidate skills proposed per step (the pool)
    gate_k: float = DEFAULT_K  # keep a candidate only when its paired validation gain exceeds k standard errors
    val_repeats: int = 0  # validation runs per task; 0 = 1 for a greedy task model, 3 when it samples
    parent_selection: str = "current"  # "current" | "pareto": the version each step improves
    minibatch_gate: bool = True  # only candidates that improve the minibatch are scored on validation
    run_dir: Path | None = None  # default <skill parent>/.skillgrad/runs/<run-id>
    resume: Path | None = None  # an existing run dir to continue
    git_commit: bool = False  # commit each applied version when the skill is in a git work tree

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("run_dir", "resume"):
            d[key] = str(d[key]) if d[key] is not None else None
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "OptimizeOptions":
        names = {f.name for f in fields(OptimizeOptions)}
        opts = OptimizeOptions(**{k: v for k, v in d.items() if k in names})
        opts.run_dir = Path(opts.run_dir) if opts.run_dir else None
        opts.resume = Path(opts.resume) if opts.resume else None
        return opts


@dataclass
class ReviewItem:
    """One proposed edit, for the human gate."""

    index: int
    edit: Edit
    pattern_label: str
    gradients: list[str]
    tasks: list[str]
    rationale: str


@dataclass
class ReviewRequest:
    step: int
    skill: Skill
    items: list[ReviewItem]


@dataclass
class ReviewDecision:
    accepted: list[int]
    rejected: list[int]
    replaced: dict[int, str] = field(default_factory=dict)  # index -> user-edited new text


ReviewFn = Callable[[ReviewRequest], ReviewDecision]  # called from the worker thread; may block


@dataclass
class DecidedEdits:
    """What a review decision amounts to: the edits to apply, in index order, and what was dropped."""

    edits: list[Edit]
    used: list[int]  # indices of the applied edits
    dropped: list[tuple[int, str]]  # (index, why): accepted edits that no longer apply on the others


def decided_edits(request: ReviewRequest, decision: ReviewDecision) -> DecidedEdits:
    """The one reading of a person's decision (the optimiser applies it, the app predicts the
    hash it leads to): accepted edits in index order, each with the person's replacement text; an
    edit that no longer applies on top of those before it (it relied on a rejected one) is dropped."""
    items = {item.index: item for item in request.items}
    accepted = sorted({int(i) for i in decision.accepted if int(i) in items})
    replaced = {int(i): text for i, text in decision.replaced.items()}  # keys may come from JSON
    out = DecidedEdits([], [], [])
    for i in accepted:
        e = items[i].edit
        if i in replaced:
            e = Edit(e.layer, e.path, e.old, replaced[i])
        try:
            apply_edits_in_memory(request.skill, out.edits + [e])
        except SkillgradError as exc:
            out.dropped.append((i, str(exc)))
            continue
        out.edits.append(e)
        out.used.append(i)
    return out


@dataclass
class RunResult:
    run_dir: Path
    reason: str
    versions: list[VersionRecord]
    best_version: int | None
    final_skill_hash: str
    best_score: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    note: str = ""  # why a budget stopped the run, in words
    account: dict[str, Any] = field(default_factory=dict)  # the run's totals (pool.COUNTS, reasons)
    summary: str = ""  # what changed, or why nothing did, in one sentence
    changed: bool = False  # the skill on disk differs from the one the run started from

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "reason": self.reason, "note": self.note, "changed": self.changed,
                "summary": self.summary, "account": self.account,
                "versions": [v.to_dict() for v in self.versions], "best_version": self.best_version,
                "best_score": self.best_score, "final_skill_hash": self.final_skill_hash,
                "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
                "seconds": round(self.seconds, 3)}


def derive_seed(seed: int, *parts: object) -> int:
    """A seed for one use (batch order, a role in a step) that depends only on the run's seed."""
    digest = hashlib.sha256(json.dumps([seed, *parts], default=str).encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % (2**31 - 1)


def best_version(versions: list[VersionRecord]) -> VersionRecord | None:
    """The kept version with the highest validation score; ties go to the shorter skill, then the
    earlier version. Candidates the gate did not keep are not "best", whatever their mean: the
    gate judged their gain to be noise (or worse)."""
    scored = [v for v in versions if v.val_score is not None and v.kept]
    return min(scored, key=lambda v: (-(v.val_score or 0.0), v.chars, v.version)) if scored else None


def plan_schedule(pool: list[str], options: OptimizeOptions) -> list[list[str]]:
    """Minibatches of task ids: each epoch a seeded order of the pool, cut into batches."""
    if not pool:
        return []
    epochs = options.epochs or 1
    out: list[list[str]] = []
    for epoch in range(epochs):
        order = sorted(pool, key=lambda tid: (derive_seed(options.seed, "order", epoch, tid), tid))
        out += [order[i:i + options.batch_size] for i in range(0, len(order), options.batch_size)]
    return out[: options.steps] if options.steps is not None else out


class _BudgetSpent(Exception):
    pass


class _RunCancel(CancelToken):
    """Set by the caller's token (the user) or by the loop itself (a budget ran out)."""

    def __init__(self, user: CancelToken | None) -> None:
        super().__init__()
        self.user = user

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or (self.user is not None and self.user.cancelled)

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled()

    def trip(self) -> None:
        """Stop the run as if cancelled, without touching the caller's token."""
        self._event.set()


class _Metered(WrappedBackend):
    """The optimiser roles' backend: counts their tokens and lets cancel/budget stop them."""

    def __init__(self, inner: Backend, run: "_Run") -> None:
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


def _edit_from_dict(d: EditRecord) -> Edit:
    return Edit(d["layer"], d["path"], d["old"], d["new"])


def _edit_to_dict(e: Edit) -> EditRecord:
    return {"layer": e.layer, "path": e.path, "old": e.old, "new": e.new}


def _mean_score(trajs: list[Trajectory]) -> float:
    return sum(t.verdict.score if t.verdict else 0.0 for t in trajs) / len(trajs) if trajs else 0.0


def _passed(t: Trajectory) -> bool:
    return bool(t.verdict and t.verdict.passed)


class _Run:
    def __init__(self, skill_root: Path, suite: Suite, task_backend: Backend, opt_backend: Backend,
                 options: OptimizeOptions, agent_settings: AgentSettings | None, sink: EventSink,
                 cancel: CancelToken | None, review: ReviewFn | None) -> None:
        self.skill_root = Path(skill_root).resolve()
        self.suite = suite
        self.sink = sink
        self.review = review
        self.token = _RunCancel(cancel)
        self.budget_hit = False
        self.task_backend = task_backend
        self.opt = _Metered(opt_backend, self)
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

    # -- events and budgets ------------------------------------------------------------------------

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
                raise _BudgetSpent()

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

    # -- state -------------------------------------------------------------------------------------

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

    # -- setup -------------------------------------------------------------------------------------

    def splits(self) -> tuple[list[Task], list[Task]]:
        splits = split_tasks(self.suite.tasks, self.options.seed)
        try:
            train = select_split(splits, self.options.train_split)
            val = select_split(splits, self.options.val_split)
        except ValueError as exc:
            raise SkillgradError(str(exc), self.suite.root) from None
        return train, val

    def check_options(self, train: list[Task], val: list[Task]) -> None:
        o = self.options
        if o.gate not in GATES:
            raise SkillgradError(f"unknown gate {o.gate!r}; use one of {', '.join(GATES)}")
        if o.gate == "ask" and self.review is None:
            raise SkillgradError("the 'ask' gate needs a person to review each edit: use the TUI, "
                                 "or --gate validation / --gate all headless")
        if o.batch_size < 1 or (o.steps is not None and o.steps < 1) or (o.epochs is not None and o.epochs < 1):
            raise SkillgradError("batch size, steps and epochs must be at least 1")
        if o.candidates < 1 or o.val_repeats < 0 or not o.gate_k >= 0:
            raise SkillgradError("candidates must be at least 1, gate k at least 0 and validation repeats at least 0")
        if o.parent_selection not in PARENT_SELECTIONS:
            raise SkillgradError(f"unknown parent selection {o.parent_selection!r}; use one of "
                                 f"{', '.join(PARENT_SELECTIONS)}")
        if not train:
            raise SkillgradError(f"the suite has no tasks in the {o.train_split!r} split", self.suite.root)
        if o.gate == "validation" and not val:
            raise SkillgradError(f"the validation gate needs tasks in the {o.val_split!r} split, and the suite "
                                 "has none (use a bigger suite, or --gate all)", self.suite.root)

    def start(self) -> None:
        o = self.options
        train, val = self.splits()
        self.check_options(train, val)
        skill = load_skill(self.skill_root)
        run_dir = o.run_dir
        if run_dir is None:
            run_dir = unique_run_dir(default_runs_root(self.skill_root), skill.hash)
        self.log = RunLog(run_dir, create=True)
        if self.lock is not None:
            self.lock.set_run_id(self.log.run_dir.name)
        self.state = {
            "format": STATE_FORMAT, "run_id": self.log.run_dir.name, "skill_root": str(self.skill_root),
            "suite": {"name": self.suite.name, "root": str(self.suite.root), "format": self.suite.format,
                      "source_split": self.suite.source_split},
            "options": o.to_dict(), "agent": asdict(self.agent_settings),
            "status": "running", "reason": None, "phase": "seed", "step": 1, "stage": "forward",
            "current": 0, "current_val": None, "schedule": None, "streak": 0, "last_fail": {},
            "train_stats": {}, "tokens": {"prompt": 0, "completion": 0}, "seconds": 0.0,
            "memory": None, "pending": None, "val_tasks": {}, "account": new_account(), "steps_done": 0,
            "kept_versions": [],
        }
        self.log.write_state(self.state)  # the commit point of the run's creation: resumable from here
        self.save_seed_version(skill)
        self.emit(RunStarted(run_id=self.log.run_dir.name, skill=str(self.skill_root), suite=self.suite.name,
                             skill_hash=skill.hash, settings=self.settings(train, val, resumed=False)))
        if (summary := warning_summary(skill.problems)):
            self.emit(Warning_(message=summary))

    def save_seed_version(self, skill: Skill) -> None:
        """Version 0, the skill as the run found it (idempotent: a resumed run may redo it)."""
        assert self.log is not None
        if not self.log.versions():
            self.log.save_version(snapshot(skill), skill.root.name, step=0, parent=None, kept=True)

    def resume(self, run_dir: Path) -> None:
        self.log = RunLog(run_dir)
        state = self.log.read_state()
        if state is None:
            raise RunError("cannot resume: no state.json (the run was stopped while being created); "
                           "start a new run", run_dir)
        if state.get("format") != STATE_FORMAT:
            raise RunError(f"cannot resume: state.json has format {state.get('format')!r}, "
                           f"this version reads {STATE_FORMAT}", run_dir)
        self.state = cast(RunState, state)  # state.json in this STATE_FORMAT
        saved = OptimizeOptions.from_dict(state["options"])
        # Everything that shapes the run comes from the run; budgets are the new session's.
        saved.token_budget, saved.time_budget_s = self.options.token_budget, self.options.time_budget_s
        saved.git_commit = saved.git_commit or self.options.git_commit
        saved.resume, saved.run_dir = Path(run_dir), self.log.run_dir
        self.options = saved
        self.agent_settings = AgentSettings(**state["agent"])
        self.before_session = (state["tokens"]["prompt"] + state["tokens"]["completion"], state["seconds"])
        if Path(state["skill_root"]) != self.skill_root:
            self.emit(Warning_(message=f"the run optimised {state['skill_root']}; continuing on {self.skill_root}"))
        recovered = recover(self.skill_root)  # finish our own patch write if the kill interrupted it
        if recovered:
            self.emit(Warning_(message=f"recovery: {recovered}"))
        if state["status"] != "running":
            return
        train, val = self.splits()
        self.check_options(train, val)
        known = {t.id for t in self.suite.tasks}
        missing = sorted({i for batch in state.get("schedule") or [] for i in batch} - known)
        if missing:
            raise RunError(f"the suite given is not the run's suite: task {missing[0]!r} is missing "
                           f"(the run used {state['suite']['root']})", self.suite.root)
        skill = load_skill(self.skill_root)
        self.save_seed_version(skill)
        self.emit(RunStarted(run_id=self.log.run_dir.name, skill=str(self.skill_root), suite=self.suite.name,
                             skill_hash=skill.hash, settings=self.settings(train, val, resumed=True)))
        where = "seed evaluation" if state["phase"] == "seed" else f"step {state['step']} ({state['stage']})"
        self.emit(Warning_(message=f"resuming at {where}"))

    def settings(self, train: list[Task], val: list[Task], *, resumed: bool) -> dict[str, Any]:
        o = self.options
        schedule = self.state.get("schedule")
        if schedule is not None:
            planned = len(schedule)
        else:  # an estimate until the seed evaluation says how many tasks fail
            per_epoch = math.ceil(len(train) / o.batch_size)
            planned = per_epoch * (o.epochs or 1)
            planned = min(planned, o.steps) if o.steps is not None else planned
        return {**o.to_dict(), "agent": asdict(self.agent_settings), "planned_steps": planned,
                "sandbox": self.sandbox_mode(),
                "n_train": len(train), "n_val": len(val), "suite_path": str(self.suite.root),
                "suite_format": self.suite.format, "suite_split": self.suite.source_split,
                "task_model": self.task_backend.model_id, "optimizer_model": self.opt.model_id,
                "run_dir": str(self.log.run_dir) if self.log else None, "resumed": resumed}

    def sandbox_mode(self) -> str | None:
        """How agent-written scripts will be confined (None when this run's tasks run none)."""
        from skillgrad_tui.core.sandbox import choose_mode, describe

        if self.agent_settings.mode != "tools" and not any(t.kind == "spreadsheet" for t in self.suite.tasks):
            return None
        return describe(choose_mode())

    # -- helpers -----------------------------------------------------------------------------------

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

    # -- the seed evaluation -----------------------------------------------------------------------

    def seed_phase(self, train: list[Task], val: list[Task]) -> None:
        assert self.log is not None
        st = self.state
        skill = self.user_skill(st["current"])
        last_fail = dict(st["last_fail"])
        stats = dict(st["train_stats"])
        if self.options.failures_only:
            res = self.run_eval(skill, train, "train", 0, "seed")
            pool = [t.task_id for t in res.trajectories if not _passed(t)]
            for t in res.trajectories:
                if not _passed(t):
                    last_fail[t.task_id] = self.rel(trajectory_file(self.log.traj_dir("seed", "train"), t.task_id))
            stats[str(st["current"])] = [_mean_score(res.trajectories) * res.n, res.n]
            if not pool and skill.format_violations():  # still a defect to repair: one plain step for it
                pool = [t.task_id for t in res.trajectories]
            elif not pool:
                self.emit(Warning_(message="the seed skill passes every training task: nothing to train on"))
        else:
            pool = [t.id for t in train]
        val_score = None
        val_tasks = dict(st["val_tasks"])
        if val:
            scores = self.validate(skill, val, 0, "seed")
            val_score = sum(scores.values()) / len(scores)
            val_tasks[str(st["current"])] = scores
            self.emit(ValidationScored(step=0, skill_hash=skill.hash, score=val_score, n=len(scores)))
        rec = self.log.update_version(st["current"], val_score=val_score,
                                      train_score=(stats[str(st["current"])][0] / stats[str(st["current"])][1])
                                      if str(st["current"]) in stats else None)
        self.emit(VersionSaved(version=rec.version, skill_hash=rec.skill_hash, step=0, val_score=val_score,
                               train_score=rec.train_score, chars=rec.chars))
        self.commit(phase="steps", schedule=plan_schedule(pool, self.options), current_val=val_score,
                    last_fail=last_fail, train_stats=stats, val_tasks=val_tasks)

    # -- one step ----------------------------------------------------------------------------------

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
        for traj in res.trajectories:
            task = by_id[traj.task_id]
            if traj.errored:
                continue  # an HTTP 500 or an evaluator crash says nothing about the skill
            if not _passed(traj):
                g = diag.diagnose(skill, task, traj, k, allowed=list(classes))
                if g is not None:
                    gradients.append(g)
            elif o.contrastive and traj.task_id in st["last_fail"]:
                before = load_trajectory(self.log.run_dir / st["last_fail"][traj.task_id])
                if before is not None:
                    s = contra.compare(skill, task, traj, before, k)
                    if s is not None:
                        signals.append(s)
        failed = [t for t in res.trajectories if not _passed(t) and not t.errored]
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
                   "train_loss": 1.0 - _mean_score(res.trajectories), "all_pass": not failed,
                   "batch": [t.task_id for t in res.trajectories], "failed": [t.task_id for t in failed],
                   "batch_score_sum": _mean_score(res.trajectories) * res.n, "batch_n": res.n,
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

    def commit_pending(self, pend: PendingStep, **changes: Unpack[RunState]) -> None:
        """Commit the step's pending record, with the tokens of the stage just done added to the step's."""
        pend["step_tokens"] = [pend["step_tokens"][0] + self.live_prompt, pend["step_tokens"][1] + self.live_completion]
        changes["pending"] = pend
        self.commit(**changes)

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
        mean = _mean_score(res.trajectories)
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
        pend.update({"candidate": version, "edits": [_edit_to_dict(e) for e in edits], "kept": True, "reason": sentence,
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
        patch = Patch([_edit_from_dict(e) for e in pend["edits"]], rationale=pend["reason"])
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

    # -- the whole run -----------------------------------------------------------------------------

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
            except (Cancelled, _BudgetSpent):
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
