"""Grade a predictions file in the official WikiTableQuestions format against a suite.

One line per example: `id<TAB>item<TAB>item...`; a line holding only the id is an empty answer.
Items are taken verbatim (the official evaluator does not unescape them). Unlike the official
script, ids of the split that have no line count as wrong, so accuracy is over the whole split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skillgrad_tui.core.errors import SuiteError
from skillgrad_tui.core.suites.files import read_text
from skillgrad_tui.core.evaluators import get_evaluator
from skillgrad_tui.core.suites import load_suite


@dataclass
class GradeReport:
    """Two figures: the official evaluator's (correct over the questions that have a prediction, ids
    not in the split warned about and skipped) and ours over the whole split (no prediction = wrong)."""

    n: int  # tasks in the split
    correct: int
    accuracy: float  # correct / n (0.0 for an empty split)
    per_task: list[dict[str, Any]] = field(default_factory=list)  # {id, passed, predicted, expected}
    missing_ids: list[str] = field(default_factory=list)  # in the split, no prediction line
    unknown_ids: list[str] = field(default_factory=list)  # predicted, not in the split

    @property
    def predicted(self) -> int:
        """Questions of the split that have a prediction: the official evaluator's denominator."""
        return self.n - len(self.missing_ids)

    @property
    def official_accuracy(self) -> float:
        return self.correct / self.predicted if self.predicted else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"official_accuracy": self.official_accuracy, "predicted": self.predicted, **asdict(self)}


def read_predictions(path: Path) -> dict[str, list[str]]:
    """id -> predicted items; SuiteError(file, line) for an empty id or a repeated id."""
    text = read_text(path, "predictions file not found")
    out: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        ex_id, *items = line.split("\t")
        ex_id = ex_id.strip()
        if not ex_id:
            raise SuiteError("line starts with an empty id (expected id<TAB>item...)", path, number)
        if ex_id in out:
            raise SuiteError(f"second prediction for {ex_id!r} (first on line {first_line[ex_id]})",
                             path, number)
        out[ex_id] = items
        first_line[ex_id] = number
    return out


def grade_predictions(suite_dir: Path, split: str | None, predictions: Path) -> GradeReport:
    """Score every task of the split with its own evaluator; missing predictions count wrong.

    `split` is passed to load_suite (the WTQ TSV stem; None when the suite has only one).
    """
    suite = load_suite(suite_dir, split)
    predicted = read_predictions(predictions)
    known = {t.id for t in suite.tasks}
    per_task: list[dict[str, Any]] = []
    missing: list[str] = []
    correct = 0
    for task in suite.tasks:
        if task.kind == "spreadsheet":
            raise SuiteError("predictions files grade question-answer suites, not spreadsheets",
                             suite.root)
        items = predicted.get(task.id)
        if items is None:
            missing.append(task.id)
            passed = False
        else:
            passed = get_evaluator(task.evaluator).score(task, items).passed
        correct += passed
        per_task.append({"id": task.id, "passed": passed, "predicted": items,
                         "expected": list(task.expected or [])})
    unknown = [i for i in predicted if i not in known]
    n = len(suite.tasks)
    return GradeReport(n=n, correct=correct, accuracy=correct / n if n else 0.0, per_task=per_task,
                       missing_ids=missing, unknown_ids=unknown)
