"""Evaluators by name. The spreadsheet one is imported only when asked for (it needs openpyxl)."""

from __future__ import annotations

from collections.abc import Callable

from skillgrad_tui.core.evaluators.base import Evaluator, answer_items
from skillgrad_tui.core.evaluators.simple import (ExactEvaluator, NormalizedEvaluator,
                                                  NumericEvaluator, RegexEvaluator)
from skillgrad_tui.core.evaluators.wtq import WTQEvaluator


def _spreadsheet() -> Evaluator:
    from skillgrad_tui.core.evaluators.spreadsheet import SpreadsheetEvaluator

    return SpreadsheetEvaluator()


_FACTORIES: dict[str, Callable[[], Evaluator]] = {
    "wtq": WTQEvaluator,
    "spreadsheet": _spreadsheet,
    "exact": ExactEvaluator,
    "normalized": NormalizedEvaluator,
    "numeric": NumericEvaluator,
    "regex": RegexEvaluator,
}

EVALUATOR_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def get_evaluator(name: str) -> Evaluator:
    """A fresh evaluator for `name`; ValueError listing the known names otherwise."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown evaluator {name!r}; known: {', '.join(EVALUATOR_NAMES)}")
    return factory()


__all__ = ["EVALUATOR_NAMES", "Evaluator", "answer_items", "get_evaluator"]
