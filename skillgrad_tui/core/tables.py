"""Reading WikiTableQuestions tables and turning any table into prompt text.

The WTQ CSV dialect is not RFC 4180: every field is quoted, a quote inside a field is written
`\\"` and a backslash `\\\\`, and line breaks inside quoted fields are real newlines. The stdlib
reader handles it with escapechar='\\\\' and doublequote=False.

`format_table` renders rows as pipe-separated text with a row-number column. Cell contents are
escaped (`|`, newlines, backslashes) so that a model reading the text can always tell where a
cell ends, and every cut (rows or long cells) is stated in the text itself: a model that does
not know rows are missing will confidently count the wrong number of them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from skillgrad_tui.core.errors import SuiteError


def read_wtq_csv(path: str | Path) -> list[list[str]]:
    """All rows of a WTQ table CSV, header first; raises SuiteError naming the file."""
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8", newline="") as f:
            reader = csv.reader(f, escapechar="\\", doublequote=False, strict=True)
            rows: list[list[str]] = []
            while True:
                # An unclosed quote is only noticed at the end of the file: report the line where
                # the broken row starts, which is where the user has to look.
                start = reader.line_num + 1
                try:
                    rows.append(next(reader))
                except StopIteration:
                    return rows
                except csv.Error as exc:
                    raise SuiteError(f"bad CSV row: {exc}", path, start) from exc
    except FileNotFoundError as exc:
        raise SuiteError("table file not found", path) from exc
    except UnicodeDecodeError as exc:
        raise SuiteError(f"table is not UTF-8: {exc.reason} at byte {exc.start}", path) from exc


@dataclass(frozen=True)
class TableText:
    text: str
    shown_rows: int  # data rows rendered (header not counted)
    total_rows: int  # data rows in the table (header not counted)
    truncated: bool  # True when rows were omitted or any cell was shortened


def _escape_cell(cell: str) -> str:
    # Backslash first, so that the escapes added afterwards stay unambiguous.
    return (cell.replace("\\", "\\\\").replace("|", "\\|")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def _fit(cell: str, limit: int) -> tuple[str, bool]:
    """Escaped cell text cut to `limit` characters (ending in an ellipsis) when longer."""
    text = _escape_cell(cell)
    if len(text) <= limit:
        return text, False
    cut = text[: limit - 1]
    # Never end on half an escape sequence (a lone backslash would escape the ellipsis).
    trailing = len(cut) - len(cut.rstrip("\\"))
    if trailing % 2:
        cut = cut[:-1]
    return cut + "…", True


def format_table(rows: list[list[str]], max_rows: int = 60, max_cell_chars: int = 60) -> TableText:
    """Header + up to `max_rows` data rows as `row | a | b` lines; deterministic."""
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    if max_cell_chars < 4:
        raise ValueError("max_cell_chars must be at least 4")
    if not rows:
        return TableText("[empty table: no header and no rows]", 0, 0, False)
    header, body = rows[0], rows[1:]
    shown = body[:max_rows]
    shortened = 0
    lines: list[str] = []

    def render(label: str, cells: list[str]) -> str:
        nonlocal shortened
        parts = [label]
        for cell in cells:
            text, cut = _fit(cell, max_cell_chars)
            shortened += cut
            parts.append(text)
        return " | ".join(parts)

    lines.append(render("row", header))
    for i, row in enumerate(shown, start=1):
        lines.append(render(str(i), row))
    notes: list[str] = []
    omitted = len(body) - len(shown)
    if not body:
        notes.append("[the table has a header but no data rows]")
    elif omitted:
        notes.append(f"[showing rows 1-{len(shown)} of {len(body)}; {omitted} rows omitted]")
    if shortened:
        notes.append(f"[{shortened} cells longer than {max_cell_chars} characters were cut, marked …]")
    text = "\n".join(lines + notes)
    return TableText(text, len(shown), len(body), bool(omitted or shortened))
