"""Grading official-format prediction files, and the simple evaluators for user suites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skillgrad_tui.core.errors import SuiteError
from skillgrad_tui.core.evaluators.simple import (ExactEvaluator, NormalizedEvaluator,
                                                  NumericEvaluator, RegexEvaluator, parse_number)
from skillgrad_tui.core.grading import grade_predictions, read_predictions
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.suites import load_suite

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WTQ = SHARED / "benchmarks" / "wikitablequestions"
TEST_SPLIT = "pristine-unseen-tables"
needs_wtq = pytest.mark.skipif(not WTQ.is_dir(), reason=f"shared WTQ data not found at {WTQ}")


def _twenty_question_suite(root: Path) -> Path:
    """The first 20 official test questions in the official layout (tables linked, not copied)."""
    (root / "data").mkdir(parents=True)
    (root / "tagged" / "data").mkdir(parents=True)
    (root / "csv").symlink_to(WTQ / "csv", target_is_directory=True)
    for rel in (f"data/{TEST_SPLIT}.tsv", f"tagged/data/{TEST_SPLIT}.tagged"):
        lines = (WTQ / rel).read_text(encoding="utf-8").split("\n")
        (root / rel).write_text("\n".join(lines[:21]) + "\n", encoding="utf-8")
    return root


def _write_predictions(path: Path, rows: list[tuple[str, list[str]]]) -> Path:
    path.write_text("".join("\t".join([i, *items]) + "\n" for i, items in rows), encoding="utf-8")
    return path


def _half_right(suite_root: Path) -> list[tuple[str, list[str]]]:
    """Even questions answered with the gold items, odd ones with the gold plus a stray item."""
    rows = []
    for i, task in enumerate(load_suite(suite_root, TEST_SPLIT).tasks[:20]):
        gold = list(task.expected or [])
        rows.append((task.id, gold if i % 2 == 0 else gold + ["certainly not this"]))
    return rows


@needs_wtq
def test_half_right_gives_exactly_half(tmp_path: Path) -> None:
    root = _twenty_question_suite(tmp_path / "suite")
    preds = _write_predictions(tmp_path / "preds.tsv", _half_right(root))
    report = grade_predictions(root, TEST_SPLIT, preds)
    assert (report.n, report.correct, report.accuracy) == (20, 10, 0.5)
    assert [r["passed"] for r in report.per_task] == [i % 2 == 0 for i in range(20)]
    assert report.missing_ids == [] and report.unknown_ids == []
    assert report.per_task[1]["expected"] == ["100,000"]
    assert json.loads(json.dumps(report.to_dict()))["accuracy"] == 0.5


@needs_wtq
def test_missing_ids_count_as_wrong(tmp_path: Path) -> None:
    root = _twenty_question_suite(tmp_path / "suite")
    rows = _half_right(root)
    kept = [r for r in rows if r[0] not in ("nu-0", "nu-2", "nu-4")]  # three right answers dropped
    kept.append(("nu-999", ["stray"]))
    report = grade_predictions(root, TEST_SPLIT, _write_predictions(tmp_path / "p.tsv", kept))
    assert (report.n, report.correct) == (20, 7) and report.accuracy == pytest.approx(0.35)
    assert report.missing_ids == ["nu-0", "nu-2", "nu-4"] and report.unknown_ids == ["nu-999"]
    assert report.per_task[0] == {"id": "nu-0", "passed": False, "predicted": None,
                                  "expected": ["Italy"]}


@needs_wtq
def test_grading_the_whole_shared_test_split(tmp_path: Path) -> None:
    rows = _half_right(WTQ)
    preds = _write_predictions(tmp_path / "p.tsv", rows + [("nu-20", [])])  # id only: empty answer
    report = grade_predictions(WTQ, TEST_SPLIT, preds)
    assert (report.n, report.correct) == (300, 10)
    assert report.accuracy == pytest.approx(10 / 300)
    assert len(report.missing_ids) == 279 and "nu-20" not in report.missing_ids
    assert report.per_task[20]["predicted"] == [] and not report.per_task[20]["passed"]


@needs_wtq
def test_equivalent_forms_are_graded_by_the_official_rules(tmp_path: Path) -> None:
    preds = _write_predictions(tmp_path / "p.tsv", [
        ("nu-0", ["italy."]), ("nu-1", ["100000"]), ("nu-3", ["1995-01-26"]),
        ("nu-10", ["2006", "2005", "2004"]), ("nu-97", ["2011-10-xx"]),
    ])
    report = grade_predictions(WTQ, TEST_SPLIT, preds)
    assert report.correct == 5


def test_bad_prediction_lines(tmp_path: Path) -> None:
    dup = tmp_path / "dup.tsv"
    dup.write_text("a\tx\n\nb\ty\na\tz\n", encoding="utf-8")
    with pytest.raises(SuiteError, match="second prediction") as err:
        read_predictions(dup)
    assert err.value.path == dup and err.value.line == 4
    empty_id = tmp_path / "empty.tsv"
    empty_id.write_text("a\tx\n\tlost\n", encoding="utf-8")
    with pytest.raises(SuiteError, match="empty id") as err:
        read_predictions(empty_id)
    assert err.value.line == 2
    with pytest.raises(SuiteError, match="not found"):
        read_predictions(tmp_path / "nope.tsv")
    assert read_predictions(_write_predictions(tmp_path / "ok.tsv", [("a", []), ("b", ["1", "2"])])) == \
        {"a": [], "b": ["1", "2"]}


def test_grading_a_jsonl_suite(tmp_path: Path) -> None:
    lines = [
        {"id": "n1", "question": "?", "answer": "1,234.5", "evaluator": "numeric"},
        {"id": "n2", "question": "?", "answer": ["3", "4"], "evaluator": "numeric", "tolerance": 0.1},
        {"id": "e1", "question": "?", "answer": "Paris", "evaluator": "exact"},
        {"id": "r1", "question": "?", "answer": "19\\d\\d", "evaluator": "regex"},
        {"id": "m1", "question": "?", "answer": "U.S.A.", "evaluator": "normalized"},
    ]
    (tmp_path / "tasks.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    preds = _write_predictions(tmp_path / "p.tsv", [
        ("n1", ["1234.5"]), ("n2", ["4.05", "2.95"]), ("e1", ["paris"]), ("r1", ["1987"]),
        ("m1", ["usa"]),
    ])
    report = grade_predictions(tmp_path, None, preds)
    assert {r["id"]: r["passed"] for r in report.per_task} == \
        {"n1": True, "n2": True, "e1": False, "r1": True, "m1": True}


# --- simple evaluators -------------------------------------------------------------------------


def _task(evaluator: str, expected: list[str], **meta: object) -> Task:
    return Task("t", "?", "qa", evaluator, expected=expected, meta=dict(meta))


def test_exact() -> None:
    ev = ExactEvaluator()
    assert ev.score(_task("exact", ["a", "b"]), ["b", "a"]).passed
    assert ev.score(_task("exact", ["a"]), ["a", "a"]).passed  # sets
    v = ev.score(_task("exact", ["a", "b"]), ["a", "c"])
    assert not v.passed and [(d.where, d.ok) for d in v.diff] == \
        [("item 1", True), ("item 2", False), ("extra item 1", False)]
    assert not ev.score(_task("exact", ["Paris"]), "paris").passed


def test_normalized() -> None:
    ev = NormalizedEvaluator()
    assert ev.score(_task("normalized", ["New  York, NY"]), ["new york ny"]).passed
    assert ev.score(_task("normalized", ["1,000"]), ["1000"]).passed
    assert not ev.score(_task("normalized", ["3.5"]), ["35"]).passed
    assert not ev.score(_task("normalized", ["Paris"]), ["Paris", "Rome"]).passed


def test_numeric() -> None:
    ev = NumericEvaluator()
    assert parse_number("1,234.5") == 1234.5 and parse_number("$12") == 12.0
    assert parse_number("-3e2") == -300.0 and parse_number("1 to 2") is None
    assert parse_number("none") is None
    assert ev.score(_task("numeric", ["0.3"]), ["0.30000000001"]).passed  # default 1e-6
    assert not ev.score(_task("numeric", ["0.3"]), ["0.31"]).passed
    assert ev.score(_task("numeric", ["100"], tolerance=0.05), ["104"]).passed  # relative
    assert not ev.score(_task("numeric", ["100"], tolerance=0.01), ["104"]).passed
    # Pairing is one to one: two predictions near the same target do not cover a second target.
    v = ev.score(_task("numeric", ["1", "5"], tolerance=0.5), ["1.1", "0.9"])
    assert not v.passed and v.diff[1].note.startswith("number differs")
    assert ev.score(_task("numeric", ["1", "1.2"], tolerance=0.25), ["1.2", "1"]).passed
    bad = ev.score(_task("numeric", ["1"]), ["one"])
    assert not bad.passed and any(d.note == "not a number" for d in bad.diff)


def test_regex() -> None:
    ev = RegexEvaluator()
    assert ev.score(_task("regex", [r"(?i)yes"]), ["YES "]).passed
    assert not ev.score(_task("regex", [r"\d+"]), ["12 apples"]).passed  # fullmatch
    assert ev.score(_task("regex", [r"a\nb"]), ["a", "b"]).passed  # items joined by newlines
    assert ev.score(_task("regex", ["("]), ["x"]).error is not None
