"""The optimiser's run state: what state.json holds, so that a stopped run resumes where it was.

TypedDicts rather than dataclasses because the state is JSON on disk, written whole at every
stage's commit (runlog.write_state) and read back by `resume`: the dicts stay what they were, and
mypy now checks every key the optimiser reads or writes. `RunState` is total=False because a
stage commits any subset of it (`Optimizer.commit(**changes)`); the run's creation writes all of it.
"""

from typing import Any, NotRequired, TypedDict

from skillgrad_tui.core.payloads import ProposedEditPayload
from skillgrad_tui.core.skill import Layer


class TokenCounts(TypedDict):
    prompt: int
    completion: int


class SuiteRef(TypedDict):
    name: str
    root: str
    format: str
    source_split: str | None


class EditRecord(TypedDict):
    """A skill Edit as JSON."""

    layer: Layer
    path: str
    old: str
    new: str


class CandidateRecord(TypedDict):
    """One candidate of the step's pool, saved as a version; its scores once measured."""

    version: int
    origin: str
    proposed: list[ProposedEditPayload]
    mb: dict[str, float] | None  # task id -> minibatch score
    val: dict[str, float] | None  # task id -> validation score


class PendingStep(TypedDict):
    """The step between its update (candidates made) and its end: scores, the choice, the apply."""

    patch_id: str
    parent: int  # the version the candidates were made from
    candidates: list[CandidateRecord]
    decided: bool
    parent_mb: dict[str, float]
    proposed: list[ProposedEditPayload]  # the chosen candidate's edits
    candidate: int | None  # its version
    edits: list[EditRecord]  # the edits kept (for "ask": those the person kept)
    accepted: list[int]  # indices into `proposed`
    rejected: list[int]
    kept: bool | None
    applied: bool
    scored: bool
    by: str  # "gate" | "all" | "user"
    reason: str
    account: dict[str, Any]  # pool.COUNTS and the reasons
    train_loss: float
    all_pass: bool
    batch: list[str]
    failed: list[str]
    batch_score_sum: float
    batch_n: int
    step_tokens: list[int]  # [prompt, completion] so far
    seconds_at_start: float
    chosen_from: NotRequired[int]
    reason_key: NotRequired[str]
    val_score: NotRequired[float | None]
    gain: NotRequired[float | None]
    se: NotRequired[float | None]


class RunState(TypedDict, total=False):
    format: int  # optimize_options.STATE_FORMAT
    run_id: str
    skill_root: str
    suite: SuiteRef
    options: dict[str, Any]  # OptimizeOptions.to_dict()
    agent: dict[str, Any]  # AgentSettings as a dict
    status: str  # "running" or how it ended
    reason: str | None
    phase: str  # "seed" | "steps"
    step: int
    stage: str  # "forward" | "candidates" | "gate"
    current: int  # the version the skill folder holds
    current_val: float | None
    schedule: list[list[str]] | None  # each step's minibatch of task ids
    streak: int  # steps in a row whose minibatch all passed
    last_fail: dict[str, str]  # task id -> its last failing trajectory (relative path)
    train_stats: dict[str, list[float]]  # version -> [score sum, n]
    tokens: TokenCounts
    seconds: float
    memory: str | None  # the momentum memory file (relative path); None without momentum
    pending: PendingStep | None
    val_tasks: dict[str, dict[str, float]]  # version -> task id -> validation score
    account: dict[str, Any]
    steps_done: int
    kept_versions: list[int]


def kept_version(pend: PendingStep) -> int:
    """The version a step that kept a candidate applies (`candidate` is set whenever `kept` is)."""
    version = pend["candidate"]
    assert version is not None, "the step kept no candidate"
    return version
