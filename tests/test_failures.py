"""Failure classes from the evaluators' diffs: each class on a real answer scored by the real
evaluator (WTQ rules), and the spreadsheet classes on real workbooks written with openpyxl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skillgrad_tui.core.evaluate import score
from skillgrad_tui.core.failures import QA_CLASSES, SHEET_CLASSES, classify, vocabulary
from skillgrad_tui.core.gradient import LABEL_MAX_WORDS, LABEL_MIN_WORDS
from skillgrad_tui.core.records import Task, Trajectory, Turn


def qa(expected: list[str], answer: list[str], *, finish: str = "stop", text: str | None = None,
       canon: list[str] | None = None, error: str | None = None) -> str | None:
    task = Task("t1", "How many?", "table_qa", "wtq", expected=expected,
                meta={"canon": canon} if canon else {})
    traj = Trajectory("t1", "h", "m", 0, answer=answer, error=error,
                      turns=[Turn("model", text if text is not None else "\n".join(answer), finish=finish)])
    traj.verdict = score(task, traj)
    found = classify(task, traj)
    return found.cls.key if found else None


@pytest.mark.parametrize("expected, answer, key", [
    (["5"], ["5"], None),  # passed: no class
    (["5"], [], "empty"),
    (["Oslo"], ["I don't know"], "empty"),
    (["5"], ["The answer is 5"], "extra_words"),
    (["Norway"], ["Norway won the most medals"], "extra_words"),
    (["12467"], ["12,467"], "number_format"),
    (["4"], ["four"], "number_format"),
    (["1998"], ["May 1998"], "date_format"),
    (["Oslo", "Bergen"], ["Oslo"], "wrong_count"),
    (["Oslo"], ["Oslo", "Bergen", "Trondheim"], "wrong_count"),
    (["Oslo"], ["Bergen"], "wrong_value"),
    (["5"], ["7"], "wrong_value"),
    (["12 rows"], ["12"], "wrong_form"),  # right value, not in the form the evaluator expects
    (["7 rows"], ["rows: 7"], "wrong_form"),
    (["26 rows"], ["9"], "wrong_form"),  # the form is wrong whatever the value
    (["26 rows"], ["9 rows"], "wrong_value"),
])
def test_answer_classes(expected: list[str], answer: list[str], key: str | None) -> None:
    assert qa(expected, answer) == key


def test_letter_case_matters_only_where_the_evaluator_compares_it() -> None:
    task = Task("t1", "What colour is snow?", "qa", "exact", expected=["white"])
    traj = Trajectory("t1", "h", "m", 0, answer=["WHITE"], turns=[Turn("model", "WHITE")])
    traj.verdict = score(task, traj)
    found = classify(task, traj)
    assert found is not None and found.cls.key == "case"
    assert qa(["Oslo"], ["OSLO"]) is None  # WTQ compares without case: it passed


def test_dates_with_canonical_forms_and_cut_off_replies() -> None:
    assert qa(["March 5, 2004"], ["5 March 2004"], canon=["2004-03-05"]) == "date_format"
    assert qa(["March 5, 2004"], ["6 March 2004"], canon=["2004-03-05"]) == "wrong_value"
    assert qa(["Oslo"], ["Bergen is the city that"], finish="length") == "cut_off"
    assert qa(["Oslo"], ["Bergen"], text="Bergen Bergen Bergen Bergen Bergen Bergen Bergen Bergen Bergen Bergen "
                                         "Bergen Bergen Bergen") == "cut_off"
    assert qa(["5"], [], error="prompt too long") == "empty"


def test_vocabulary_labels_are_valid_gradient_labels() -> None:
    for cls in QA_CLASSES + SHEET_CLASSES:
        assert LABEL_MIN_WORDS <= len(cls.label.split()) <= LABEL_MAX_WORDS, cls
        assert not any(ch.isdigit() for ch in cls.label)
    assert vocabulary(Task("x", "q", "spreadsheet", "spreadsheet")) == SHEET_CLASSES
    assert vocabulary(Task("x", "q", "qa", "exact")) == QA_CLASSES


# ------------------------------------------------------------------------------- spreadsheets


def _book(path: Path, cells: dict[str, Any]) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    for ref, value in cells.items():
        ws[ref] = value
    wb.save(path)
    return path


def sheet(tmp: Path, output: dict[str, Any] | None, *, results: list[str] | None = None) -> str:
    source = _book(tmp / "in.xlsx", {"A1": 1, "A2": 2, "B1": "x"})
    golden = _book(tmp / "golden.xlsx", {"A1": 1, "A2": 2, "B1": "x", "C1": 3, "C2": 4})
    task = Task("s1", "Put A+1 in C", "spreadsheet", "spreadsheet", context_files=[source],
                meta={"golden": str(golden), "answer_position": "A1:C2"})
    answer = str(_book(tmp / "out.xlsx", output)) if output is not None else None
    turns = [Turn("tool_result", r, name="run_python") for r in results or []]
    traj = Trajectory("s1", "h", "m", 0, answer=answer, turns=turns,
                      error=None if answer else "no output.xlsx produced")
    traj.verdict = score(task, traj)
    found = classify(task, traj)
    return found.cls.key if found else "passed"


def test_spreadsheet_classes(tmp_path: Path) -> None:
    good = {"A1": 1, "A2": 2, "B1": "x", "C1": 3, "C2": 4}
    assert sheet(tmp_path, good) == "passed"
    error = "exit code 1\nstderr:\nNameError: name 'wb' is not defined"
    assert sheet(tmp_path, None, results=[error]) == "script_error"
    assert sheet(tmp_path, None, results=["exit code 0"]) == "no_output"
    assert sheet(tmp_path, {**good, "C1": "3", "C2": "4x"}) in ("wrong_types", "wrong_cells")
    assert sheet(tmp_path, {**good, "C1": "three", "C2": "four"}) == "wrong_types"
    assert sheet(tmp_path, {**good, "C1": 30, "C2": 40}) == "wrong_cells"
    assert sheet(tmp_path, {**good, "A1": 9, "A2": 9, "C1": 3, "C2": 5}) == "untouched_changed"
