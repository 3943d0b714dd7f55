"""SpreadsheetBench scoring: every cell in `answer_position` must match the golden workbook.

The rules follow the official evaluator (SpreadsheetBench evaluation/evaluation.py):
- both workbooks are read with openpyxl `load_workbook(data_only=True)` (cached values);
- `answer_position` is a comma-separated list of ranges, each optionally `Sheet!A1:B2`; single
  quotes around the sheet name and the range are stripped; a range without a sheet refers to the
  golden workbook's FIRST sheet (upstream ignores `answer_sheet` here, so we do too);
- each value is normalised: int/float (bools included, as Python counts them as ints) and
  strings that parse as floats become round(float, 2); datetimes become Excel serial days
  rounded to 0 decimals; times become str(time) minus its last 3 characters, i.e. "HH:MM"
  (seconds dropped) when there are no microseconds; other values stay as they are;
- None and "" are equal; otherwise the normalised types must be equal and the values too;
- the task passes only if every cell matches (score 1.0, else 0.0: upstream has no partial
  credit, and the diff shows how close an answer came).

Where upstream would crash or pass vacuously on a malformed range ("A:A", "BD2:308"), we report
an error verdict instead; "$" anchors, lower-case columns and spaces around ranges are accepted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tempfile
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillgrad_tui.core.recalc import RecalcError, find_soffice, needs_recalc, recalculate
from skillgrad_tui.core.records import DiffEntry, Task, Verdict

if TYPE_CHECKING:  # openpyxl itself is imported where a workbook is read (it costs ~0.3 s)
    from openpyxl.workbook.workbook import Workbook

MAX_DIFF_ENTRIES = 200
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)
_CELL_RE = re.compile(r"^\$?([A-Za-z]{1,3})\$?([0-9]+)$")


# ---- normalisation (the official rules) ---------------------------------------------------

def _serial_day(value: dt.datetime) -> float:
    # Whole days plus seconds, microseconds ignored, as upstream computes it.
    delta = value.replace(tzinfo=None) - _EXCEL_EPOCH
    return delta.days + delta.seconds / 86400.0


def normalize(value: Any) -> Any:
    """One cell value as the official evaluator compares it."""
    if isinstance(value, (int, float)):
        return round(float(value), 2)
    if isinstance(value, dt.time):
        return str(value)[:-3]
    if isinstance(value, dt.datetime):
        return round(_serial_day(value), 0)
    if isinstance(value, str):
        try:
            return round(float(value), 2)
        except ValueError:
            return value
    return value


def cells_match(expected: Any, got: Any) -> bool:
    """The official comparison of two raw cell values."""
    a, b = normalize(expected), normalize(got)
    if (a is None or a == "") and (b is None or b == ""):
        return True
    if type(a) is not type(b):
        return False
    return bool(a == b)


# ---- answer_position ----------------------------------------------------------------------

def _column_number(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + (ord(ch) - 64)
    return n


def _column_letters(n: int) -> str:
    out = ""
    while n > 0:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


def _parse_cell(ref: str) -> tuple[int, int]:
    m = _CELL_RE.match(ref.strip())
    if not m or int(m.group(2)) < 1:
        raise ValueError(f"not a cell reference: {ref!r}")
    return _column_number(m.group(1)), int(m.group(2))


def _expand(cell_range: str) -> list[tuple[str, int, int]]:
    """(reference, row, column) of every cell in a range, row by row."""
    parts = cell_range.split(":")
    if len(parts) > 2:
        raise ValueError(f"not a cell range: {cell_range!r}")
    (c1, r1) = _parse_cell(parts[0])
    (c2, r2) = _parse_cell(parts[-1])
    letters = {c: _column_letters(c) for c in range(min(c1, c2), max(c1, c2) + 1)}
    return [(f"{letters[c]}{r}", r, c) for r in range(min(r1, r2), max(r1, r2) + 1)
            for c in letters]


def expand_range(cell_range: str) -> list[str]:
    """'B2:C3' -> ['B2', 'C2', 'B3', 'C3'] (row by row); 'B2' -> ['B2']."""
    return [ref for ref, _, _ in _expand(cell_range)]


def _parse_position(position: str, default_sheet: str
                    ) -> list[tuple[str, list[tuple[str, int, int]]]]:
    out: list[tuple[str, list[tuple[str, int, int]]]] = []
    for piece in position.split(","):
        piece = piece.strip()
        if "!" in piece:
            sheet, _, cell_range = piece.rpartition("!")
            sheet = sheet.strip().strip("'")
        else:
            sheet, cell_range = default_sheet, piece
        cell_range = cell_range.strip().strip("'")
        out.append((sheet, _expand(cell_range)))
    return out


def parse_answer_position(position: str, default_sheet: str) -> list[tuple[str, list[str]]]:
    """(sheet, cells) per comma-separated range, with upstream's quote stripping."""
    return [(sheet, [ref for ref, _, _ in cells])
            for sheet, cells in _parse_position(position, default_sheet)]


# ---- diff presentation --------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """A JSON-friendly copy of a cell value for the run log."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _kind(raw: Any, norm: Any) -> str:
    if norm is None or norm == "":
        return "empty"
    if isinstance(raw, dt.datetime):
        return "date"
    if isinstance(raw, dt.time):
        return "time"
    if isinstance(norm, float):
        return "numeric text" if isinstance(raw, str) else "number"
    if isinstance(norm, str):
        return "text"
    return type(raw).__name__


def _why(expected: Any, got: Any) -> str:
    a, b = normalize(expected), normalize(got)
    ka, kb = _kind(expected, a), _kind(got, b)
    if kb == "empty":
        return "cell is empty"
    if ka == "empty":
        return "expected an empty cell"
    if type(a) is not type(b):
        return f"type differs: expected {ka}, got {kb}"
    if ka == "date" and kb == "date":
        return f"date differs (serial day {a:g} vs {b:g})"
    if isinstance(a, float):
        return f"number differs ({a!r} vs {b!r} after rounding to 2 decimals)"
    if isinstance(a, str) and isinstance(b, str):
        if a.strip().casefold() == b.strip().casefold():
            return "text differs only in case or surrounding spaces"
        return "text differs"
    return "value differs"


def _where(sheet: str, cell: str) -> str:
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", sheet) is not None
    return f"{sheet}!{cell}" if plain else f"'{sheet}'!{cell}"


# (sheet, cell, expected, got, ok) for one compared cell; DiffEntries are built only for the
# cells that make it into the capped diff, which matters for ranges of 100k cells.
_Cell = tuple[str, str, Any, Any, bool]


def _entry(cell: _Cell, note: str | None = None) -> DiffEntry:
    sheet, ref, exp, got, ok = cell
    return DiffEntry(where=_where(sheet, ref), expected=_plain(exp), got=_plain(got), ok=ok,
                     note=note if note is not None else ("" if ok else _why(exp, got)))


def _capped(cells: list[_Cell], limit: int, notes: dict[tuple[str, str], str]) -> list[DiffEntry]:
    """Mismatches first, then matches, at most `limit`, plus one entry counting the rest."""
    bad = [c for c in cells if not c[4]]
    good = [c for c in cells if c[4]]
    kept = [_entry(c, notes.get((c[0], c[1]))) for c in (bad + good)[:limit]]
    omitted = len(cells) - len(kept)
    if omitted:
        omitted_bad = max(0, len(bad) - limit)
        kept.append(DiffEntry(where="(omitted)", expected=None, got=None, ok=omitted_bad == 0,
                              note=f"{omitted} more cells not listed ({omitted_bad} mismatches)"))
    return kept


# ---- the evaluator ------------------------------------------------------------------------

def _load(path: Path, data_only: bool) -> Workbook:
    import openpyxl  # deferred: importing openpyxl costs ~0.3 s and QA-only runs never need it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unsupported-extension chatter from real-world files
        return openpyxl.load_workbook(path, data_only=data_only)


def _error(message: str, diff: list[DiffEntry] | None = None) -> Verdict:
    return Verdict(score=0.0, passed=False, diff=diff or [], error=message)


class _BadPosition(ValueError):
    pass


@dataclass(frozen=True)
class _Golden:
    """The golden values of one task's answer cells: all that scoring needs from that file."""

    sheetnames: tuple[str, ...]
    ranges: tuple[tuple[str, tuple[tuple[str, int, int], ...]], ...]  # (ref, row, column)
    values: dict[tuple[str, str], Any]


def _golden(path: Path, position: str) -> _Golden:
    # Cached by content: the optimiser scores the same tasks at every step, and a large golden
    # workbook takes seconds to load but only milliseconds to hash.
    digest = hashlib.blake2b(path.read_bytes(), digest_size=20).hexdigest()
    return _golden_cached(digest, str(path), position)


@lru_cache(maxsize=64)
def _golden_cached(digest: str, path: str, position: str) -> _Golden:
    wb = _load(Path(path), data_only=True)
    try:
        ranges = _parse_position(position, wb.sheetnames[0])
    except ValueError as exc:
        raise _BadPosition(str(exc)) from None
    values: dict[tuple[str, str], Any] = {}
    for sheet, cells in ranges:
        if sheet in wb.sheetnames:
            ws = wb[sheet]
            for ref, row, col in cells:
                values[(sheet, ref)] = ws.cell(row, col).value
    return _Golden(tuple(wb.sheetnames), tuple((s, tuple(c)) for s, c in ranges), values)


class SpreadsheetEvaluator:
    """Scores an output workbook (the answer is its path) against task.meta["golden"]."""

    name = "spreadsheet"

    def __init__(self, max_diff_entries: int = MAX_DIFF_ENTRIES, recalc_timeout_s: float = 120,
                 recalc: bool = True) -> None:
        self.max_diff_entries = max_diff_entries
        self.recalc_timeout_s = recalc_timeout_s
        self.recalc = recalc

    def score(self, task: Task, answer: Any) -> Verdict:
        if answer is None or (isinstance(answer, str) and not answer.strip()):
            return _error("no output workbook was produced")
        if not isinstance(answer, (str, Path)):
            return _error(f"answer must be the path of the output workbook, got {type(answer).__name__}")
        output = Path(answer)
        if not output.is_file():
            return _error(f"output workbook {output} does not exist")
        golden_path = task.meta.get("golden")
        position = task.meta.get("answer_position")
        if not golden_path or not isinstance(position, str) or not position.strip():
            return _error(f"task {task.id} has no golden workbook or answer_position in its meta")
        try:
            golden = _golden(Path(golden_path), position)
        except _BadPosition as exc:
            return _error(f"task {task.id}: cannot parse answer_position {position!r}: {exc}")
        except Exception as exc:  # openpyxl raises many types for broken files
            return _error(f"cannot read golden workbook {golden_path}: {exc}")
        try:
            got_wb = _load(output, data_only=True)
        except Exception as exc:
            return _error(f"cannot read output workbook {output}: {exc}")

        compared, problems = _compare(golden, got_wb)
        notes: dict[tuple[str, str], str] = {}
        # Formula cells that openpyxl wrote have no cached value and read as None. Upstream's
        # harness passes every output through LibreOffice; we do so only when an empty cell is
        # among the mismatches, since LibreOffice costs seconds and, keeping cached values as
        # they are (see recalc.py), can change nothing but those empty formula cells.
        if not problems and any(not ok and got is None for _, _, _, got, ok in compared):
            compared, problems, notes = self._after_recalc(output, golden, compared, problems)

        diff = _capped(compared, self.max_diff_entries, notes)
        if problems:
            return _error("; ".join(problems), diff)
        passed = all(ok for *_, ok in compared)
        return Verdict(score=1.0 if passed else 0.0, passed=passed, diff=diff)

    def _after_recalc(self, output: Path, golden: _Golden, compared: list[_Cell],
                      problems: list[str]
                      ) -> tuple[list[_Cell], list[str], dict[tuple[str, str], str]]:
        """Scores again after LibreOffice computed the missing formula values; where it cannot,
        notes on the empty formula cells say why they are empty."""
        try:
            if not needs_recalc(output):
                return compared, problems, {}
        except RecalcError:
            return compared, problems, {}  # openpyxl read it; leave the verdict as it is
        soffice = find_soffice() if self.recalc else None
        if not self.recalc:
            why = "recalculation is turned off"
        elif soffice is None:
            why = "LibreOffice is not available to compute it"
        else:
            with tempfile.TemporaryDirectory(prefix="skillgrad-eval-") as tmp:
                try:
                    fixed = recalculate(output, Path(tmp), self.recalc_timeout_s, soffice=soffice)
                    return (*_compare(golden, _load(fixed, data_only=True)), {})
                except RecalcError as exc:
                    why = f"recalculation failed: {exc.message}"
                except Exception as exc:  # LibreOffice wrote something openpyxl cannot read
                    why = f"recalculation produced an unreadable workbook: {exc}"
        try:
            formulas = _load(output, data_only=False)
        except Exception:
            return compared, problems, {}
        notes: dict[tuple[str, str], str] = {}
        for sheet, cell, _exp, got, ok in compared:
            if not ok and got is None:
                formula = formulas[sheet][cell].value
                if isinstance(formula, str) and formula.startswith("="):
                    notes[(sheet, cell)] = (f"formula {formula} has no cached value and {why}; "
                                            "write the value")
        return compared, problems, notes


def _compare(golden: _Golden, got_wb: Workbook) -> tuple[list[_Cell], list[str]]:
    """Every compared cell, and the sheets that could not be compared."""
    compared: list[_Cell] = []
    problems: list[str] = []
    for sheet, cells in golden.ranges:
        if sheet not in golden.sheetnames:
            problems.append(f"golden workbook has no sheet {sheet!r}")
            continue
        if sheet not in got_wb.sheetnames:
            near = [s for s in got_wb.sheetnames if s.casefold() == sheet.casefold()]
            hint = f" (did you mean {near[0]!r}? names are case-sensitive)" if near else ""
            problems.append(f"output workbook has no sheet {sheet!r}{hint}; "
                            f"it has {got_wb.sheetnames}")
            continue
        ws_got = got_wb[sheet]
        for ref, row, col in cells:
            exp, got = golden.values[(sheet, ref)], ws_got.cell(row, col).value
            compared.append((sheet, ref, exp, got, cells_match(exp, got)))
    return compared, problems
