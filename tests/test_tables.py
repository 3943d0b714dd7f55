"""WTQ table CSV quirks on the real files, and the prompt text of a table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from skillgrad_tui.core.errors import SuiteError
from skillgrad_tui.core.suites.wtq import tsv_unescape
from skillgrad_tui.core.tables import format_table, read_wtq_csv

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WTQ = SHARED / "benchmarks" / "wikitablequestions"
needs_wtq = pytest.mark.skipif(not WTQ.is_dir(), reason=f"shared WTQ data not found at {WTQ}")


def _tsv_twin(csv_path: Path) -> list[list[str]]:
    text = csv_path.with_suffix(".tsv").read_text(encoding="utf-8")
    return [[tsv_unescape(c) for c in line.split("\t")] for line in text.split("\n") if line]


def _squash(rows: list[list[str]]) -> list[list[str]]:
    # The .tsv copies keep non-breaking spaces (and one double space) that the .csv flattens.
    return [[re.sub(r"\s+", " ", c) for c in r] for r in rows]


@needs_wtq
def test_escaped_quotes_and_quoted_newlines() -> None:
    path = WTQ / "csv" / "201-csv" / "0.csv"
    raw = path.read_text(encoding="utf-8")
    assert '\\"Around the World (La La La La La)\\"' in raw  # the file really uses \" escapes
    rows = read_wtq_csv(path)
    cells = [c for r in rows for c in r]
    assert '"Around the World (La La La La La)"' in cells
    assert any("\n" in c for c in cells), "a quoted line break must stay inside its cell"
    assert len(rows) < raw.count("\n"), "quoted newlines must not start new rows"
    assert len({len(r) for r in rows}) == 1


@needs_wtq
def test_escaped_backslashes() -> None:
    rows = read_wtq_csv(WTQ / "csv" / "203-csv" / "128.csv")
    by_name = {r[0]: r for r in rows}
    assert by_name["NUL"][2] == "\\0"  # written "\\0" in the file: one backslash, then 0
    assert by_name["newline"][2] == "\\n"  # a literal backslash-n, not a line break


@needs_wtq
def test_every_shared_table_matches_its_tsv_twin() -> None:
    csvs = sorted((WTQ / "csv").glob("*-csv/*.csv"))
    assert len(csvs) == 388
    for path in csvs:
        rows = read_wtq_csv(path)
        assert _squash(rows) == _squash(_tsv_twin(path)), path
        assert len({len(r) for r in rows}) == 1, f"ragged table {path}"


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="not found") as missing:
        read_wtq_csv(tmp_path / "nope.csv")
    assert missing.value.path == tmp_path / "nope.csv"
    bad = tmp_path / "bad.csv"
    bad.write_text('"a","b"\n"c","unclosed\ne\nf\n', encoding="utf-8")
    with pytest.raises(SuiteError) as err:
        read_wtq_csv(bad)
    assert err.value.path == bad and err.value.line == 2


def _parse_rendered(line: str) -> list[str]:
    """Split a rendered line on unescaped ' | ' and undo the cell escapes."""
    cells, cur, i = [], [], 0
    while i < len(line):
        if line[i] == "\\":
            cur.append({"n": "\n", "|": "|", "\\": "\\"}[line[i + 1]])
            i += 2
        elif line.startswith(" | ", i):
            cells.append("".join(cur))
            cur = []
            i += 3
        else:
            cur.append(line[i])
            i += 1
    cells.append("".join(cur))
    return cells


def test_format_table_is_faithful_and_unambiguous() -> None:
    rows = [["Name", "Notes"], ["a|b", "line1\nline2"], ["c\\d", ""], ["plain", "x | y"]]
    out = format_table(rows)
    lines = out.text.split("\n")
    assert lines[0] == "row | Name | Notes"
    assert len(lines) == 4 and not out.truncated
    assert (out.shown_rows, out.total_rows) == (3, 3)
    for i, original in enumerate(rows):
        parsed = _parse_rendered(lines[i])
        assert parsed[0] == ("row" if i == 0 else str(i))
        assert parsed[1:] == original


@needs_wtq
def test_format_table_says_when_rows_are_cut() -> None:
    rows = read_wtq_csv(WTQ / "csv" / "203-csv" / "443.csv")
    total = len(rows) - 1
    assert total > 60
    out = format_table(rows, max_rows=60)
    assert out.truncated and out.shown_rows == 60 and out.total_rows == total
    assert f"[showing rows 1-60 of {total}; {total - 60} rows omitted]" in out.text
    body = out.text.split("\n")
    assert body[1].startswith("1 | ") and body[60].startswith("60 | ")
    assert _parse_rendered(body[60])[1:] == rows[60]  # the first rows are kept, in order
    assert format_table(rows, max_rows=60) == out  # deterministic


def test_long_cells_are_cut_visibly() -> None:
    rows = [["h"], ["x" * 100], ["y\\" * 40]]
    out = format_table(rows, max_cell_chars=20)
    lines = out.text.split("\n")
    assert lines[1] == "1 | " + "x" * 19 + "…"
    kept = lines[2][len("2 | "):-1]
    assert lines[2].endswith("…") and (len(kept) - len(kept.rstrip("\\"))) % 2 == 0  # no half escape
    assert _parse_rendered(kept) == [("y\\" * 40)[: len(_parse_rendered(kept)[0])]]
    assert out.truncated and "2 cells longer than 20 characters were cut" in out.text


def test_edge_cases() -> None:
    assert format_table([]).total_rows == 0
    header_only = format_table([["a", "b"]])
    assert "no data rows" in header_only.text and header_only.shown_rows == 0
    with pytest.raises(ValueError):
        format_table([["a"]], max_rows=0)
