"""SpreadsheetBench suites in the official layout.

    root/dataset.json                          list of task records
    root/spreadsheet/<id>/1_<id>_init.xlsx     input workbook (test case 1)
    root/spreadsheet/<id>/1_<id>_golden.xlsx   reference answer workbook

Records keep upstream's field names (id, instruction, spreadsheet_path, instruction_type,
answer_position, and optionally answer_sheet, data_position). Errors name dataset.json and the
line on which the offending record starts, so a user can jump straight to it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from skillgrad_tui.core.errors import SuiteError
from skillgrad_tui.core.records import Task

# Test case 1 file names, newest release first. The Verified release uses init/golden; the
# 912-task release used input/answer; a few Verified tasks ship bare initial/golden files.
_INIT_NAMES = ("1_{id}_init.xlsx", "1_{id}_input.xlsx", "initial.xlsx")
_GOLDEN_NAMES = ("1_{id}_golden.xlsx", "1_{id}_answer.xlsx", "golden.xlsx")


def _records_with_lines(text: str, path: Path) -> list[tuple[int, Any]]:
    """Decode a top-level JSON array, keeping the 1-based line on which each element starts."""
    decoder = json.JSONDecoder()
    ws = " \t\r\n"

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    pos = 0
    if text.startswith("\ufeff"):
        pos = 1
    while pos < len(text) and text[pos] in ws:
        pos += 1
    if pos >= len(text) or text[pos] != "[":
        raise SuiteError("expected a JSON list of task records", path, line_of(pos))
    pos += 1
    out: list[tuple[int, Any]] = []
    while True:
        while pos < len(text) and text[pos] in ws:
            pos += 1
        if pos < len(text) and text[pos] == "]" and not out:
            pos += 1
            break
        start = pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"invalid JSON: {exc.msg}", path, exc.lineno) from None
        out.append((line_of(start), value))
        while pos < len(text) and text[pos] in ws:
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        if pos < len(text) and text[pos] == "]":
            pos += 1
            break
        raise SuiteError("expected ',' or ']' after a task record", path, line_of(pos))
    while pos < len(text) and text[pos] in ws:
        pos += 1
    if pos != len(text):
        raise SuiteError("unexpected text after the list of task records", path, line_of(pos))
    return out


def _optional_str(rec: dict[str, Any], key: str, where: str, path: Path, line: int) -> str | None:
    value = rec.get(key)
    if value is None or isinstance(value, str):
        return value
    raise SuiteError(f"{where}: '{key}' must be a string, got {type(value).__name__}", path, line)


def _pick(folder: Path, names: tuple[str, ...], task_id: str) -> Path | None:
    for name in names:
        candidate = folder / name.format(id=task_id)
        if candidate.is_file():
            return candidate
    return None


def load_spreadsheetbench(root: Path) -> list[Task]:
    """Tasks of a SpreadsheetBench-layout folder, in dataset order (test case 1 of each)."""
    root = Path(root).resolve()
    dataset = root / "dataset.json"
    if not dataset.is_file():
        raise SuiteError("SpreadsheetBench suite has no dataset.json", dataset)
    try:
        text = dataset.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"cannot read: {exc}", dataset) from exc

    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for index, (line, rec) in enumerate(_records_with_lines(text, dataset)):
        where = f"record {index}"
        if not isinstance(rec, dict):
            raise SuiteError(f"{where}: expected an object, got {type(rec).__name__}", dataset, line)
        raw_id = rec.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id).strip() == "":
            raise SuiteError(f"{where}: missing or invalid 'id'", dataset, line)
        task_id = str(raw_id)
        where = f"record {index} (id {task_id})"
        if task_id in seen:
            raise SuiteError(f"{where}: duplicate id, first seen on line {seen[task_id]}", dataset, line)
        seen[task_id] = line
        for key in ("instruction", "instruction_type", "answer_position"):
            value = rec.get(key)
            if not isinstance(value, str) or not value.strip():
                raise SuiteError(f"{where}: missing or empty '{key}'", dataset, line)
        answer_sheet = _optional_str(rec, "answer_sheet", where, dataset, line)
        data_position = _optional_str(rec, "data_position", where, dataset, line)
        rel = _optional_str(rec, "spreadsheet_path", where, dataset, line) or f"spreadsheet/{task_id}"
        # Judge the path as written, so a suite whose spreadsheet/ is a symlink still loads.
        norm = os.path.normpath(rel)
        if os.path.isabs(norm) or norm == ".." or norm.startswith(".." + os.sep):
            raise SuiteError(f"{where}: spreadsheet_path {rel!r} leaves the suite folder", dataset, line)
        folder = root / norm
        if not folder.is_dir():
            raise SuiteError(f"{where}: folder {folder} does not exist", dataset, line)
        init = _pick(folder, _INIT_NAMES, task_id)
        golden = _pick(folder, _GOLDEN_NAMES, task_id)
        for label, found, names in (("input", init, _INIT_NAMES), ("golden", golden, _GOLDEN_NAMES)):
            if found is None:
                tried = ", ".join(n.format(id=task_id) for n in names)
                raise SuiteError(f"{where}: no {label} workbook in {folder} (tried {tried})",
                                 dataset, line)
        assert init is not None and golden is not None
        tasks.append(Task(
            id=task_id,
            question=rec["instruction"],
            kind="spreadsheet",
            evaluator="spreadsheet",
            expected=None,
            context_files=[init],
            meta={
                "golden": str(golden),
                "answer_position": rec["answer_position"],
                "answer_sheet": answer_sheet,
                "instruction_type": rec["instruction_type"],
                "data_position": data_position,
            },
        ))
    if not tasks:
        raise SuiteError("dataset.json lists no tasks", dataset, 1)
    return tasks
