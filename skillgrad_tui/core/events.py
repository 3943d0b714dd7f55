"""Typed events: every stage of a run emits one; the run log, the CLI and the TUI consume them.

Each event is a frozen dataclass with a `kind` tag. `to_dict`/`from_dict` round-trip through the
JSONL run log, so a run can be replayed into the TUI or resumed from where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, ClassVar

from skillgrad_tui.core.payloads import GradientPayload, PatternSummary, PreservationPayload, ProposedEditPayload

_REGISTRY: dict[str, type["Event"]] = {}


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    ts: float = field(default_factory=time.time, kw_only=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.kind] = cls

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Event":
        cls = _REGISTRY.get(d.get("kind", ""))
        if cls is None:
            raise ValueError(f"unknown event kind {d.get('kind')!r}")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    run_id: str
    skill: str
    suite: str
    skill_hash: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepStarted(Event):
    kind: ClassVar[str] = "step_started"
    step: int
    task_ids: list[str]
    skill_hash: str


@dataclass(frozen=True)
class TaskStarted(Event):
    kind: ClassVar[str] = "task_started"
    step: int
    task_id: str
    phase: str  # "train" | "val" | "eval" | "test"


@dataclass(frozen=True)
class TaskFinished(Event):
    kind: ClassVar[str] = "task_finished"
    step: int
    task_id: str
    phase: str
    skill_hash: str
    passed: bool
    score: float
    answer: Any
    expected: Any
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    error: str | None = None
    trajectory: str | None = None  # path of the saved trajectory JSON
    errored: bool = False  # could not be run or scored (server error, ...): apart from failed


@dataclass(frozen=True)
class GradientComputed(Event):
    kind: ClassVar[str] = "gradient_computed"
    step: int
    gradients: list[GradientPayload]
    contrastive: list[PreservationPayload] = field(default_factory=list)
    invalid_outputs: int = 0


@dataclass(frozen=True)
class MemoryUpdated(Event):
    kind: ClassVar[str] = "memory_updated"
    step: int
    patterns: list[PatternSummary]  # ranked, highest weight first
    overlay: str = ""  # the overlay Markdown for this step


@dataclass(frozen=True)
class PatchProposed(Event):
    kind: ClassVar[str] = "patch_proposed"
    step: int
    patch_id: str
    edits: list[ProposedEditPayload]  # each with accepted_by_checks
    rejected: list[dict[str, Any]] = field(default_factory=list)  # the model's raw answers that failed, + reason
    rationale: str = ""
    gradients: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CandidateProposed(Event):
    """One candidate skill of a step's pool, saved as a version: its lineage and its edits."""

    kind: ClassVar[str] = "candidate_proposed"
    step: int
    version: int
    parent: int
    origin: str  # how the patcher made it ("each pattern's simplest edit", "alternative 2 for P1", ...)
    edits: list[ProposedEditPayload]
    chars: int = 0


@dataclass(frozen=True)
class CandidateScored(Event):
    kind: ClassVar[str] = "candidate_scored"
    step: int
    version: int
    phase: str  # "minibatch" | "val"
    score: float
    parent_score: float | None = None  # the parent's (minibatch) or current skill's (val) score
    n: int = 0
    improved: bool | None = None


@dataclass(frozen=True)
class CandidateDecided(Event):
    kind: ClassVar[str] = "candidate_decided"
    step: int
    version: int
    kept: bool
    reason: str  # a short key, counted in the step's account
    sentence: str = ""  # the decision with its estimate and standard error
    gain: float | None = None
    se: float | None = None
    n: int = 0


@dataclass(frozen=True)
class StepAccount(Event):
    """What a step did: proposed, applied, rejected by reason, scored, kept; one sentence why."""

    kind: ClassVar[str] = "step_account"
    step: int
    account: dict[str, Any]
    summary: str


@dataclass(frozen=True)
class PatchDecided(Event):
    kind: ClassVar[str] = "patch_decided"
    step: int
    patch_id: str
    accepted: list[int]  # indices into the proposed edits
    rejected: list[int]
    by: str  # "gate" | "user" | "all"
    reason: str = ""


@dataclass(frozen=True)
class ValidationScored(Event):
    kind: ClassVar[str] = "validation_scored"
    step: int
    skill_hash: str
    score: float
    n: int


@dataclass(frozen=True)
class VersionSaved(Event):
    kind: ClassVar[str] = "version_saved"
    version: int
    skill_hash: str
    step: int
    val_score: float | None = None
    train_score: float | None = None
    chars: int = 0


@dataclass(frozen=True)
class StepFinished(Event):
    kind: ClassVar[str] = "step_finished"
    step: int
    train_loss: float
    val_score: float | None
    kept: bool
    skill_hash: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    summary: str = ""  # the step's account in one sentence


@dataclass(frozen=True)
class Progress(Event):
    kind: ClassVar[str] = "progress"
    done: int
    total: int
    phase: str = ""
    tokens: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Warning_(Event):
    kind: ClassVar[str] = "warning"
    message: str
    step: int | None = None


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    reason: str  # "steps" | "early_stop" | "budget" | "cancelled" | "error"
    best_version: int | None = None
    best_score: float | None = None
    summary: str = ""  # what the run changed, or why nothing, in one sentence
    account: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[Event], None]


def null_sink(_: Event) -> None:
    """For callers that do not watch progress."""
