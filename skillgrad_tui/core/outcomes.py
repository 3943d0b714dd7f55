"""What an evaluation's tasks came to: passed, failed (ran and got it wrong) or errored (could not be
run or scored: a server error, a prompt over the context, an evaluator crash).

Kept apart because an errored task says nothing about the skill: counting it as a failure turns a
dead server into "accuracy 0.000", and diagnosing it turns an HTTP 500 into a text gradient.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from skillgrad_tui.core.records import Trajectory

_NUMBER = re.compile(r"\d+(\.\d+)?")


def error_key(message: str) -> str:
    """Errors that differ only in numbers (token counts, ports, seconds) are one kind of error."""
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return _NUMBER.sub("#", first)[:200]


@dataclass(frozen=True)
class ErrorGroup:
    example: str  # the first message of the group, as the backend or evaluator wrote it
    count: int


@dataclass(frozen=True)
class Outcomes:
    n: int
    passed: int
    failed: int
    errored: int
    errors: tuple[ErrorGroup, ...] = field(default=())  # most common first

    @property
    def all_errored(self) -> bool:
        return self.n > 0 and self.errored == self.n

    @property
    def top_error(self) -> str | None:
        return self.errors[0].example if self.errors else None

    def sentence(self) -> str:
        """`3 passed, 5 failed, 2 errored (most common, 2x: HTTP 500 ...)`."""
        text = f"{self.passed} passed, {self.failed} failed, {self.errored} errored"
        if self.errors:
            top = self.errors[0]
            text += f" (most common, {top.count}x: {_one_line(top.example)})"
        return text

    def to_dict(self) -> dict[str, object]:
        return {"n": self.n, "passed": self.passed, "failed": self.failed, "errored": self.errored,
                "errors": [{"example": g.example, "count": g.count} for g in self.errors]}


def group_errors(messages: Iterable[str]) -> tuple[ErrorGroup, ...]:
    """Messages grouped by error_key, most common first; a tie goes to the kind seen first."""
    groups: dict[str, list[str]] = {}
    for message in messages:
        groups.setdefault(error_key(message), []).append(message)
    ranked = sorted(groups.values(), key=lambda msgs: -len(msgs))  # sorted() is stable
    return tuple(ErrorGroup(msgs[0], len(msgs)) for msgs in ranked)


def outcomes(trajectories: Iterable[Trajectory]) -> Outcomes:
    n = passed = 0
    messages: list[str] = []
    for t in trajectories:
        n += 1
        if t.errored:
            messages.append(t.error or (t.verdict.error if t.verdict else None) or "unknown error")
        elif t.verdict is not None and t.verdict.passed:
            passed += 1
    errored = len(messages)
    return Outcomes(n=n, passed=passed, failed=n - passed - errored, errored=errored,
                    errors=group_errors(messages))


def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


__all__ = ["ErrorGroup", "Outcomes", "error_key", "group_errors", "outcomes"]
