"""Plain data shared by the engine's stages: tasks, verdicts, trajectories.

Kept free of behaviour so that suites, evaluators, the agent, the optimiser and both views (CLI
and TUI) agree on one shape, and so that every record round-trips through JSON for the run log.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skillgrad_tui.core.llm.base import Usage


@dataclass
class Task:
    """One benchmark item.

    kind: "table_qa" (answer is a list of strings), "spreadsheet" (answer is an output workbook)
    or "qa" (plain question from a user JSONL suite).
    evaluator: name of the evaluator that scores it ("wtq", "spreadsheet", "exact",
    "normalized", "numeric", "regex").
    context_files: absolute paths the agent may read (a table CSV, an input workbook).
    expected: list of answer strings (table_qa/qa) or None for spreadsheets (golden file in meta).
    meta: evaluator-specific data (answer_position, golden path, canonical answers, tolerance...).
    """

    id: str
    question: str
    kind: str
    evaluator: str
    expected: list[str] | None = None
    context_files: list[Path] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["context_files"] = [str(p) for p in self.context_files]
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Task":
        return Task(**{**d, "context_files": [Path(p) for p in d.get("context_files", [])]})


@dataclass
class DiffEntry:
    """One compared item: an answer item or a spreadsheet cell."""

    where: str  # "item 1", "Sheet1!B3"
    expected: Any
    got: Any
    ok: bool
    note: str = ""  # why it did not match, e.g. "number differs", "missing item"


@dataclass
class Verdict:
    score: float  # in [0, 1]
    passed: bool
    diff: list[DiffEntry] = field(default_factory=list)
    error: str | None = None  # the answer could not be scored (unreadable workbook, ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Verdict":
        return Verdict(d["score"], d["passed"], [DiffEntry(**e) for e in d.get("diff", [])],
                       d.get("error"))

    def summary(self, limit: int = 6) -> str:
        """A compact text of the mismatches, for prompts and panes."""
        bad = [e for e in self.diff if not e.ok]
        lines = [f"{e.where}: expected {e.expected!r}, got {e.got!r}" + (f" ({e.note})" if e.note else "")
                 for e in bad[:limit]]
        if len(bad) > limit:
            lines.append(f"... and {len(bad) - limit} more mismatches")
        if self.error:
            lines.insert(0, f"error: {self.error}")
        return "\n".join(lines) if lines else "all items match"


EVALUATOR_FAILED = "evaluator "  # how a Verdict's error starts when the evaluator itself crashed


@dataclass
class Turn:
    """One step of a trajectory: a prompt sent, a model reply, a tool call or its result."""

    kind: str  # "prompt" | "model" | "tool_call" | "tool_result" | "error"
    content: str
    name: str | None = None  # tool name for tool_call/tool_result
    usage: Usage | None = None
    finish: str | None = None  # a model turn's finish reason ("stop", "length", "loop"): cut-off evidence


@dataclass
class Trajectory:
    task_id: str
    skill_hash: str
    model_id: str
    seed: int
    turns: list[Turn] = field(default_factory=list)
    answer: Any = None  # list[str] for QA; output workbook path (str) for spreadsheets
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0
    error: str | None = None
    verdict: Verdict | None = None
    sandbox: str | None = None  # the confinement agent-written scripts ran in (sandbox.describe), if any
    # "backend" when the model could not be asked (server error, prompt over the context): the task
    # errored, which says nothing about the skill; None for an answer, or a task the model failed.
    error_kind: str | None = None
    model_calls: int = 0
    cached_calls: int = 0  # of those, answered by the response cache

    @property
    def from_cache(self) -> bool:
        """Every model call was a cache hit: the task's seconds say nothing about the model's speed."""
        return self.model_calls > 0 and self.cached_calls == self.model_calls

    @property
    def errored(self) -> bool:
        """The task could not be run or scored, as opposed to run and failed."""
        if self.error_kind is not None:
            return True
        v = self.verdict
        return v is not None and v.error is not None and v.error.startswith(EVALUATOR_FAILED)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Trajectory":
        turns = [Turn(**{**t, "usage": Usage(**t["usage"]) if t.get("usage") else None})
                 for t in d.get("turns", [])]
        return Trajectory(
            task_id=d["task_id"], skill_hash=d["skill_hash"], model_id=d["model_id"],
            seed=d["seed"], turns=turns, answer=d.get("answer"), usage=Usage(**d["usage"]),
            seconds=d.get("seconds", 0.0), error=d.get("error"),
            verdict=Verdict.from_dict(d["verdict"]) if d.get("verdict") else None,
            sandbox=d.get("sandbox"), error_kind=d.get("error_kind"), model_calls=d.get("model_calls", 0),
            cached_calls=d.get("cached_calls", 0),
        )
