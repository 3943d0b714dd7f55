"""The evaluator contract: `score(task, answer) -> Verdict` with a per-item diff.

The diff is the hard evidence the diagnosers work from, so every evaluator reports one entry per
expected item (did something match it, and why not) plus one per predicted item nobody expected.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from skillgrad_tui.core.records import Task, Verdict


@runtime_checkable
class Evaluator(Protocol):
    name: str

    def score(self, task: Task, answer: Any) -> Verdict:
        """Compare an answer with the task's expectation; never raises for a bad answer."""
        ...


def answer_items(answer: Any) -> list[str]:
    """A QA answer as a list of strings: None is no items, a str is one item."""
    if answer is None:
        return []
    if isinstance(answer, str):
        return [answer]
    if isinstance(answer, (list, tuple)):
        return [a if isinstance(a, str) else str(a) for a in answer]
    return [str(answer)]


def expected_items(task: Task) -> list[str]:
    """The task's expected answer list; a QA task without one is a suite bug, not an answer bug."""
    if task.expected is None:
        raise ValueError(f"task {task.id} has no expected answer")
    return list(task.expected)
