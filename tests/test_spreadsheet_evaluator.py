"""SpreadsheetBench loader and evaluator: the 60 shared tasks plus crafted workbooks."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from skillgrad_tui.core.errors import SuiteError
from skillgrad_tui.core.evaluators.spreadsheet import (
    SpreadsheetEvaluator,
    cells_match,
    expand_range,
    normalize,
    parse_answer_position,
)
from skillgrad_tui.core.recalc import find_soffice
from skillgrad_tui.core.records import Task, Verdict
from skillgrad_tui.core.suites.spreadsheetbench import load_spreadsheetbench

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BENCH = SHARED / "benchmarks" / "spreadsheetbench"
BUNDLED = REPO / "skills" / "suites" / "xlsx"

needs_bench = pytest.mark.skipif(not (BENCH / "dataset.json").is_file(),
                                 reason=f"shared SpreadsheetBench subset not found at {BENCH}")
needs_soffice = pytest.mark.skipif(
    find_soffice() is None,
    reason="LibreOffice not installed (apt-get install -y --no-install-recommends libreoffice-calc)")


def _shared_ids() -> list[str]:
    if not (BENCH / "dataset.json").is_file():
        return []
    return [str(r["id"]) for r in json.loads((BENCH / "dataset.json").read_text("utf-8"))]


@pytest.fixture(scope="module")
def shared_tasks() -> dict[str, Task]:
    return {t.id: t for t in load_spreadsheetbench(BENCH)}


# ---- loader ---------------------------------------------------------------------------------

@needs_bench
def test_loads_the_shared_subset(shared_tasks: dict[str, Task]) -> None:
    tasks = list(shared_tasks.values())
    assert len(tasks) == 60
    kinds = [t.meta["instruction_type"] for t in tasks]
    assert kinds.count("Cell-Level Manipulation") == 41
    assert kinds.count("Sheet-Level Manipulation") == 19
    records = json.loads((BENCH / "dataset.json").read_text("utf-8"))
    assert [t.id for t in tasks] == [str(r["id"]) for r in records]  # order kept, ids as str
    for task, rec in zip(tasks, records):
        assert task.kind == "spreadsheet" and task.evaluator == "spreadsheet"
        assert task.expected is None
        assert task.question == rec["instruction"]
        [init] = task.context_files
        assert init.is_absolute() and init.name == f"1_{task.id}_init.xlsx" and init.is_file()
        golden = Path(task.meta["golden"])
        assert golden.is_absolute() and golden.name == f"1_{task.id}_golden.xlsx"
        assert task.meta["answer_position"] == rec["answer_position"]
        assert task.meta["answer_sheet"] == rec.get("answer_sheet")
        assert task.meta["data_position"] == rec.get("data_position")
    # a Task survives the run log's JSON round trip
    t = tasks[0]
    assert Task.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_bundled_suite_loads_and_matches_its_checksums() -> None:
    tasks = load_spreadsheetbench(BUNDLED)
    assert len(tasks) == 8
    kinds = {t.meta["instruction_type"] for t in tasks}
    assert kinds == {"Cell-Level Manipulation", "Sheet-Level Manipulation"}
    for line in (BUNDLED / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((BUNDLED / name).read_bytes()).hexdigest() == digest, name
    assert (BUNDLED / "LICENSE").is_file() and (BUNDLED / "ATTRIBUTION.md").is_file()
    evaluator = SpreadsheetEvaluator()
    for task in tasks:  # the documented property holds for the excerpt too
        assert evaluator.score(task, task.meta["golden"]).passed, task.id
        assert not evaluator.score(task, task.context_files[0]).passed, task.id


def _suite(tmp_path: Path, records: list[dict[str, Any]], files: bool = True) -> Path:
    for rec in records:
        folder = tmp_path / "spreadsheet" / str(rec.get("id"))
        folder.mkdir(parents=True, exist_ok=True)
        if files:
            for kind in ("init", "golden"):
                wb = openpyxl.Workbook()
                wb.active["A1"] = kind
                wb.save(folder / f"1_{rec['id']}_{kind}.xlsx")
    (tmp_path / "dataset.json").write_text(json.dumps(records, indent=2), "utf-8")
    return tmp_path


def _rec(task_id: Any, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "instruction": "do it", "spreadsheet_path": f"spreadsheet/{task_id}",
            "instruction_type": "Cell-Level Manipulation", "answer_position": "A1", **extra}


def _line_of_record(path: Path, index: int) -> int:
    # indent=2 puts each record's "{" alone on a line: the index-th one is where it starts
    lines = path.read_text("utf-8").splitlines()
    starts = [i + 1 for i, line in enumerate(lines) if line == "  {"]
    return starts[index]


def test_loader_builds_tasks_from_a_minimal_suite(tmp_path: Path) -> None:
    root = _suite(tmp_path, [_rec(7), _rec("x-1", answer_sheet="S", data_position="A1:B2")])
    a, b = load_spreadsheetbench(root)
    assert a.id == "7" and a.meta["answer_sheet"] is None and a.meta["data_position"] is None
    assert b.meta["answer_sheet"] == "S" and b.meta["data_position"] == "A1:B2"
    assert b.context_files == [(root / "spreadsheet/x-1/1_x-1_init.xlsx").resolve()]


def test_loader_names_the_line_of_a_bad_record(tmp_path: Path) -> None:
    bad = _rec(3)
    del bad["instruction"]
    root = _suite(tmp_path, [_rec(1), _rec(2), bad])
    with pytest.raises(SuiteError) as err:
        load_spreadsheetbench(root)
    line = _line_of_record(root / "dataset.json", 2)
    assert err.value.path == root.resolve() / "dataset.json" and err.value.line == line
    assert f"dataset.json:{line}" in str(err.value) and "'instruction'" in str(err.value)


def test_loader_reports_a_missing_golden_file(tmp_path: Path) -> None:
    root = _suite(tmp_path, [_rec(1), _rec(2)])
    (root / "spreadsheet/2/1_2_golden.xlsx").unlink()
    with pytest.raises(SuiteError) as err:
        load_spreadsheetbench(root)
    assert err.value.line == _line_of_record(root / "dataset.json", 1)
    assert "golden" in str(err.value) and "1_2_golden.xlsx" in str(err.value)


@pytest.mark.parametrize("text, needle", [
    ('{"id": 1}', "expected a JSON list"),
    ('[\n  {"id": 1,\n   "instruction": }\n]', "invalid JSON"),
    ("[]", "lists no tasks"),
    ('[\n  "just a string"\n]', "expected an object"),
])
def test_loader_rejects_malformed_dataset_json(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "dataset.json").write_text(text, "utf-8")
    with pytest.raises(SuiteError, match=needle):
        load_spreadsheetbench(tmp_path)


def test_loader_rejects_duplicates_and_missing_suite(tmp_path: Path) -> None:
    root = _suite(tmp_path / "dup", [_rec(1), _rec(1)])
    with pytest.raises(SuiteError, match="duplicate id"):
        load_spreadsheetbench(root)
    with pytest.raises(SuiteError, match="no dataset.json"):
        load_spreadsheetbench(tmp_path / "nowhere")
    escape = _suite(tmp_path / "esc", [_rec(1, spreadsheet_path="../dup/spreadsheet/1")],
                    files=False)
    with pytest.raises(SuiteError, match="leaves the suite folder"):
        load_spreadsheetbench(escape)


# ---- the 60 shared tasks ----------------------------------------------------------------------

@needs_bench
@pytest.mark.parametrize("task_id", _shared_ids())
def test_golden_passes_and_input_fails(shared_tasks: dict[str, Task], task_id: str) -> None:
    task = shared_tasks[task_id]
    evaluator = SpreadsheetEvaluator()
    same = evaluator.score(task, task.meta["golden"])
    assert same.passed and same.score == 1.0 and same.error is None, same.summary()
    assert same.diff and all(e.ok for e in same.diff)
    before = evaluator.score(task, str(task.context_files[0]))
    assert not before.passed and before.score == 0.0
    assert before.error is None  # a wrong answer, not an unreadable one
    assert any(not e.ok and e.note for e in before.diff)


# ---- the rules, on crafted values -------------------------------------------------------------

def test_normalisation_follows_the_official_rules() -> None:
    assert normalize(3.14159) == 3.14 and normalize(2) == 2.0 and normalize(True) == 1.0
    assert normalize("  7.456 ") == 7.46 and normalize("7 kg") == "7 kg"
    assert normalize(dt.datetime(2024, 1, 15, 11, 0)) == 45306.0
    assert normalize(dt.datetime(2024, 1, 15, 13, 0)) == 45307.0  # rounded to whole days
    assert normalize(dt.time(9, 5, 30)) == "09:05"
    assert cells_match(None, "") and cells_match("", None) and cells_match(None, None)
    assert cells_match(1, "1") and cells_match("1.004", 1)  # numeric text counts as a number
    assert not cells_match(1, "1 kg") and not cells_match("a", "A")
    assert not cells_match(0, None) and not cells_match(None, 0)
    assert cells_match(dt.date(2024, 1, 1), dt.date(2024, 1, 1))  # other types: plain equality


def test_answer_position_parsing() -> None:
    assert expand_range("B2:C3") == ["B2", "C2", "B3", "C3"]
    assert expand_range("$A$1") == ["A1"] and expand_range("c2:b2") == ["B2", "C2"]
    assert parse_answer_position("'My Sheet'!A1,B2:B3", "First") == [
        ("My Sheet", ["A1"]), ("First", ["B2", "B3"])]
    # upstream's quote stripping covers the verified data's odd quoting
    assert parse_answer_position("'Sheet1'!'A2:A3", "X") == [("Sheet1", ["A2", "A3"])]
    assert parse_answer_position("Lookup'!B2", "X") == [("Lookup", ["B2"])]
    for bad in ("A:A", "BD2:308", "A1:B2:C3", ""):
        with pytest.raises(ValueError):
            parse_answer_position(bad, "S")


def _save(path: Path, sheets: dict[str, dict[str, Any]]) -> Path:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, cells in sheets.items():
        ws = wb.create_sheet(name)
        for ref, value in cells.items():
            ws[ref] = value
    wb.save(path)
    return path


def _task(tmp_path: Path, golden: dict[str, dict[str, Any]], position: str, **meta: Any) -> Task:
    gpath = _save(tmp_path / "golden.xlsx", golden)
    return Task(id="t", question="q", kind="spreadsheet", evaluator="spreadsheet",
                meta={"golden": str(gpath), "answer_position": position, **meta})


def _score(tmp_path: Path, golden: dict[str, Any], got: dict[str, Any], position: str = "A1:A3",
           **meta: Any) -> Verdict:
    task = _task(tmp_path, {"Data": golden}, position, **meta)
    out = _save(tmp_path / "out.xlsx", {"Data": got})
    return SpreadsheetEvaluator().score(task, out)


def test_numbers_round_to_two_decimals(tmp_path: Path) -> None:
    assert _score(tmp_path, {"A1": 3.141, "A2": 10}, {"A1": 3.144, "A2": 10.001}).passed
    v = _score(tmp_path, {"A1": 3.14, "A2": 10}, {"A1": 3.15, "A2": 10})
    assert not v.passed and v.score == 0.0
    [bad] = [e for e in v.diff if not e.ok]
    assert bad.where == "Data!A1" and bad.expected == 3.14 and bad.got == 3.15
    assert "number differs" in bad.note


def test_dates_compare_as_serial_days(tmp_path: Path) -> None:
    day = dt.datetime(2024, 1, 15)
    assert _score(tmp_path, {"A1": day}, {"A1": 45306}).passed
    assert _score(tmp_path, {"A1": 45306}, {"A1": day}).passed
    late = _score(tmp_path, {"A1": day}, {"A1": dt.datetime(2024, 1, 15, 18, 0)})
    assert not late.passed and "date differs" in late.diff[0].note
    text = _score(tmp_path, {"A1": day}, {"A1": "2024-01-15"})
    assert not text.passed and "type differs: expected date, got text" in text.diff[0].note
    json.dumps(text.to_dict())  # datetimes in the diff stay JSON-friendly for the run log


def test_times_compare_as_hours_and_minutes(tmp_path: Path) -> None:
    assert _score(tmp_path, {"A1": dt.time(9, 30)}, {"A1": dt.time(9, 30, 45)}).passed
    assert _score(tmp_path, {"A1": dt.time(9, 30)}, {"A1": "09:30"}).passed
    assert not _score(tmp_path, {"A1": dt.time(9, 30)}, {"A1": dt.time(9, 31)}).passed


def test_types_must_match_after_normalisation(tmp_path: Path) -> None:
    assert _score(tmp_path, {"A1": 1, "A2": "x"}, {"A1": "1", "A2": "x"}).passed
    v = _score(tmp_path, {"A1": 1, "A2": "abc"}, {"A1": "1 kg", "A2": "ABC "})
    notes = {e.where: e.note for e in v.diff if not e.ok}
    assert notes == {"Data!A1": "type differs: expected number, got text",
                     "Data!A2": "text differs only in case or surrounding spaces"}
    empty = _score(tmp_path, {"A1": 5}, {})
    assert not empty.passed and empty.diff[0].note == "cell is empty"
    extra = _score(tmp_path, {}, {"A3": 0})
    assert not extra.passed and [e.note for e in extra.diff if not e.ok] == ["expected an empty cell"]


def test_range_without_sheet_uses_the_golden_first_sheet(tmp_path: Path) -> None:
    golden = {"First": {"A1": 1}, "Second": {"A1": 2}}
    task = _task(tmp_path, golden, "A1", answer_sheet="Second")  # upstream ignores answer_sheet
    ok = _save(tmp_path / "ok.xlsx", {"First": {"A1": 1}, "Second": {"A1": 99}})
    assert SpreadsheetEvaluator().score(task, ok).passed
    # order of sheets in the output does not matter: sheets are looked up by name
    moved = _save(tmp_path / "moved.xlsx", {"Second": {"A1": 2}, "First": {"A1": 1}})
    assert SpreadsheetEvaluator().score(task, moved).passed


def test_quoted_sheet_and_multiple_ranges(tmp_path: Path) -> None:
    golden = {"My Data": {"B2": "a", "C5": 3}, "Other": {"A1": 1}}
    task = _task(tmp_path, golden, "'My Data'!B2:B3,'My Data'!C5,Other!A1")
    out = _save(tmp_path / "out.xlsx", {"Other": {"A1": 1}, "My Data": {"B2": "a", "C5": 2}})
    v = SpreadsheetEvaluator().score(task, out)
    assert not v.passed and [e.where for e in v.diff] == ["'My Data'!C5", "'My Data'!B2",
                                                         "'My Data'!B3", "Other!A1"]


def test_unscorable_answers_give_error_verdicts(tmp_path: Path) -> None:
    task = _task(tmp_path, {"Data": {"A1": 1}}, "A1")
    ev = SpreadsheetEvaluator()
    for answer in (None, "", tmp_path / "missing.xlsx"):
        v = ev.score(task, answer)
        assert v.error and not v.passed and v.score == 0.0
    junk = tmp_path / "junk.xlsx"
    junk.write_bytes(b"not a zip file")
    assert "cannot read output workbook" in (ev.score(task, junk).error or "")
    wrong_sheet = _save(tmp_path / "ws.xlsx", {"data": {"A1": 1}})
    v = ev.score(task, wrong_sheet)
    assert v.error and "no sheet 'Data'" in v.error and "case-sensitive" in v.error
    bad_pos = _task(tmp_path, {"Data": {"A1": 1}}, "A:A")
    assert "cannot parse answer_position" in (ev.score(bad_pos, wrong_sheet).error or "")


def test_diff_is_capped_with_mismatches_first(tmp_path: Path) -> None:
    golden = {f"A{r}": r for r in range(1, 301)}
    got = {f"A{r}": (r if r <= 50 else -r) for r in range(1, 301)}  # 250 mismatches
    task = _task(tmp_path, {"Data": golden}, "A1:A300")
    out = _save(tmp_path / "out.xlsx", {"Data": got})
    v = SpreadsheetEvaluator(max_diff_entries=200).score(task, out)
    assert len(v.diff) == 201 and all(not e.ok for e in v.diff[:200])
    last = v.diff[-1]
    assert last.where == "(omitted)" and not last.ok
    assert last.note == "100 more cells not listed (50 mismatches)"


@needs_soffice
def test_formula_only_output_is_recalculated(tmp_path: Path) -> None:
    task = _task(tmp_path, {"Data": {"A1": 2, "A2": 3, "B1": 5, "B2": "2-x"}}, "B1:B2")
    out = _save(tmp_path / "out.xlsx", {"Data": {"A1": 2, "A2": 3, "B1": "=A1+A2",
                                                 "B2": '=A1&"-x"'}})
    before = (out.read_bytes(), os.stat(out).st_mtime_ns)
    v = SpreadsheetEvaluator().score(task, out)
    assert v.passed, v.summary()
    assert (out.read_bytes(), os.stat(out).st_mtime_ns) == before  # scored a copy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["golden.xlsx", "out.xlsx"]  # no lock files
    # without recalculation the same output fails, and the diff says why
    off = SpreadsheetEvaluator(recalc=False).score(task, out)
    assert not off.passed
    assert "formula =A1+A2 has no cached value" in off.diff[0].note


# ---- end to end: a script in the sandbox writes the answer, the evaluator scores it -----------

_SOLVE_54242 = """
import openpyxl
wb = openpyxl.load_workbook("1_54242_init.xlsx")
ws = wb.active
for row in range(6, 14):
    text = str(ws.cell(row, 2).value).lower()
    ws.cell(row, 5).value = {cell}
wb.save("output.xlsx")
"""


@pytest.mark.parametrize("cell, needs_lo", [
    ('"Revenue" if "deposit" in text else "Expenses"', False),
    ('f\'=IF(ISNUMBER(SEARCH("deposit",B{row})),"Revenue","Expenses")\'', True),
])
def test_sandboxed_script_answer_is_scored(cell: str, needs_lo: bool) -> None:
    from skillgrad_tui.core.sandbox import run_python

    if needs_lo and find_soffice() is None:
        pytest.skip("LibreOffice not installed: formula answers cannot be recalculated")
    [task] = [t for t in load_spreadsheetbench(BUNDLED) if t.id == "54242"]
    with run_python(_SOLVE_54242.format(cell=cell), task.context_files, timeout_s=60) as run:
        assert run.returncode == 0, run.stderr
        [output] = [p for p in run.outputs if p.name == "output.xlsx"]
        verdict = SpreadsheetEvaluator().score(task, output)
        assert verdict.passed, verdict.summary()
        assert len(verdict.diff) == 8
