"""WikiTableQuestions in its official layout: `data/<split>.tsv`, `csv/<n>-csv/<m>.csv`, and
optionally `tagged/data/<split>.tagged` with the CoreNLP canonical targets.

The same loader reads the 500-question subset in ../shared and a full upstream checkout (where
data/ holds training.tsv, pristine-unseen-tables.tsv, random-split-*-{train,dev}.tsv, ...).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from skillgrad_tui.core.errors import SuiteError
from skillgrad_tui.core.suites.files import read_text
from skillgrad_tui.core.records import Task

_REQUIRED = ("id", "utterance", "context", "targetValue")
_TAGGED_REQUIRED = ("id", "targetValue", "targetCanon", "targetCanonType")
_ESCAPE = re.compile(r"\\(.)", re.S)
_UNESCAPES = {"n": "\n", "p": "|", "\\": "\\"}


def tsv_unescape(field: str) -> str:
    """Undo the TSV escapes `\\n`, `\\p` and `\\\\`, scanning left to right.

    A single left-to-right pass reads `\\\\n` as a backslash then `n`, which the official
    chained str.replace calls get wrong; no question in the data depends on the difference.
    """
    return _ESCAPE.sub(lambda m: _UNESCAPES.get(m.group(1), m.group(0)), field)


def tsv_unescape_list(field: str) -> list[str]:
    """A '|'-joined list: split on the raw bars first, since an escaped bar is `\\p`."""
    return [tsv_unescape(item) for item in field.split("|")]


def is_wtq_root(path: Path) -> bool:
    return (path / "csv").is_dir() and bool(wtq_splits(path))


def wtq_splits(root: Path) -> list[str]:
    """The split names available under root: the stems of data/*.tsv, sorted."""
    data = root / "data"
    return sorted(p.stem for p in data.glob("*.tsv") if p.is_file()) if data.is_dir() else []


def _read_tsv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row by column name) for every data line; SuiteError on any bad line."""
    text = read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise SuiteError("empty file: expected a header line", path, 1)
    header = lines[0].rstrip("\r").split("\t")
    missing = [c for c in required if c not in header]
    if missing:
        raise SuiteError(f"header lacks column(s) {', '.join(missing)}", path, 1)
    rows: list[tuple[int, dict[str, str]]] = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.rstrip("\r").split("\t")
        if len(fields) != len(header):
            raise SuiteError(f"expected {len(header)} tab-separated columns, found {len(fields)}",
                             path, number)
        rows.append((number, dict(zip(header, fields))))
    return rows


def _table_path(root: Path, context: str, tsv: Path, line: int) -> Path:
    rel = PurePosixPath(context)
    if not context or rel.is_absolute() or ".." in rel.parts:
        raise SuiteError(f"table path {context!r} must be relative to the suite folder", tsv, line)
    return root.joinpath(*rel.parts)


def _read_tagged(path: Path) -> dict[str, tuple[int, dict[str, str]]]:
    return {row["id"]: (line, row) for line, row in _read_tsv(path, _TAGGED_REQUIRED)}


def load_wtq(root: Path, split: str | None) -> tuple[list[Task], str]:
    """The tasks of one split (TSV stem) and the split name; SuiteError names file and line."""
    root = root.resolve()
    available = wtq_splits(root)
    if split is None:
        if len(available) != 1:
            raise SuiteError(f"{len(available)} splits here, choose one with --split: "
                             f"{', '.join(available)}", root / "data")
        split = available[0]
    elif split not in available:
        raise SuiteError(f"no split {split!r}; available: {', '.join(available) or 'none'}",
                         root / "data")
    tsv = root / "data" / f"{split}.tsv"
    tagged_path = root / "tagged" / "data" / f"{split}.tagged"
    tagged = _read_tagged(tagged_path) if tagged_path.is_file() else {}

    tasks: list[Task] = []
    seen: set[str] = set()
    exists: dict[Path, bool] = {}  # many questions share a table
    for line, row in _read_tsv(tsv, _REQUIRED):
        ex_id = row["id"]
        if not ex_id:
            raise SuiteError("empty id", tsv, line)
        if ex_id in seen:
            raise SuiteError(f"duplicate id {ex_id!r}", tsv, line)
        seen.add(ex_id)
        table = _table_path(root, row["context"], tsv, line)
        if table not in exists:
            exists[table] = table.is_file()
        if not exists[table]:
            raise SuiteError(f"table file not found: {row['context']}", tsv, line)
        expected = tsv_unescape_list(row["targetValue"])
        meta: dict[str, object] = {"table": row["context"], "split": split}
        if ex_id in tagged:
            tline, trow = tagged[ex_id]
            if trow["targetValue"] != row["targetValue"]:
                raise SuiteError(f"targetValue of {ex_id} differs from {tsv.name}", tagged_path, tline)
            canon = tsv_unescape_list(trow["targetCanon"])
            if len(canon) != len(expected):
                raise SuiteError(f"{len(canon)} canonical values for {len(expected)} targets",
                                 tagged_path, tline)
            meta["canon"] = canon
            meta["canon_type"] = trow["targetCanonType"]
        tasks.append(Task(id=ex_id, question=tsv_unescape(row["utterance"]), kind="table_qa",
                          evaluator="wtq", expected=expected, context_files=[table], meta=meta))
    return tasks, split
