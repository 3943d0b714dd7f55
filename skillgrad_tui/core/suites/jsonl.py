"""User task suites as JSON Lines: one task object per line.

    {"id": "q1", "question": "...", "answer": "42" | ["a", "b"], "evaluator": "numeric",
     "context": ["tables/t.csv"], "tolerance": 0.01, "split": "train"}

`context` paths are relative to the JSONL file's folder. Blank lines and lines starting with '#'
are skipped. Every problem is reported with the file and its 1-based line number, and the whole
file is checked before anything runs, so a typo never surfaces halfway through an optimisation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from skillgrad_tui.core.errors import SuiteError
from skillgrad_tui.core.suites.files import read_text
from skillgrad_tui.core.evaluators.simple import parse_number
from skillgrad_tui.core.records import Task

JSONL_EVALUATORS = ("exact", "normalized", "numeric", "regex")
_REQUIRED = ("id", "question", "answer", "evaluator")
_OPTIONAL = ("context", "tolerance", "split")


def _check_types(obj: dict[str, Any], path: Path, line: int) -> None:
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise SuiteError(f"missing key(s) {', '.join(missing)}", path, line)
    unknown = sorted(set(obj) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise SuiteError(f"unknown key(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join(_REQUIRED + _OPTIONAL)}", path, line)
    if not isinstance(obj["id"], str) or not obj["id"].strip():
        raise SuiteError("'id' must be a non-empty string", path, line)
    if not isinstance(obj["question"], str) or not obj["question"].strip():
        raise SuiteError("'question' must be a non-empty string", path, line)
    answer = obj["answer"]
    if not (isinstance(answer, str)
            or (isinstance(answer, list) and answer and all(isinstance(a, str) for a in answer))):
        raise SuiteError("'answer' must be a string or a non-empty list of strings", path, line)
    if obj["evaluator"] not in JSONL_EVALUATORS:
        raise SuiteError(f"unknown evaluator {obj['evaluator']!r}; use one of "
                         f"{', '.join(JSONL_EVALUATORS)}", path, line)
    context = obj.get("context", [])
    if not isinstance(context, list) or not all(isinstance(c, str) and c for c in context):
        raise SuiteError("'context' must be a list of relative file paths", path, line)
    if "tolerance" in obj:
        tol = obj["tolerance"]
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or tol < 0:
            raise SuiteError("'tolerance' must be a number >= 0", path, line)
        if obj["evaluator"] != "numeric":
            raise SuiteError("'tolerance' only applies to evaluator 'numeric'", path, line)
    if "split" in obj and (not isinstance(obj["split"], str) or not obj["split"]):
        raise SuiteError("'split' must be a non-empty string", path, line)


def _check_answer(expected: list[str], evaluator: str, path: Path, line: int) -> None:
    if evaluator == "numeric":
        for item in expected:
            if parse_number(item) is None:
                raise SuiteError(f"answer {item!r} is not a single number (evaluator numeric)", path, line)
    elif evaluator == "regex":
        if len(expected) != 1:
            raise SuiteError("evaluator regex takes exactly one pattern as the answer", path, line)
        try:
            re.compile(expected[0])
        except re.error as exc:
            raise SuiteError(f"answer is not a valid regular expression: {exc}", path, line) from exc


def _context_files(context: list[str], base: Path, path: Path, line: int) -> list[Path]:
    files: list[Path] = []
    for rel in context:
        pure = PurePosixPath(rel.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts:
            raise SuiteError(f"context path {rel!r} must be relative to {base} and stay inside it",
                             path, line)
        target = base.joinpath(*pure.parts)
        # A symlink may sit inside the suite and point anywhere (/etc/passwd, the user's home):
        # what the path resolves to must stay in the suite, or its text would reach the prompt
        # and the saved trajectory.
        resolved = target.resolve()
        if resolved != base.resolve() and base.resolve() not in resolved.parents:
            raise SuiteError(f"context path {rel!r} is a symbolic link that leaves the suite folder "
                             f"(to {resolved}); copy the file into the suite instead", path, line)
        if not target.is_file():
            raise SuiteError(f"context file not found: {rel}", path, line)
        files.append(target)
    return files


def load_jsonl(path: Path) -> list[Task]:
    """Every task in the file; SuiteError(file, line) on the first bad line."""
    path = path.resolve()
    text = read_text(path)
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    # split("\n"), not splitlines(): U+2028 and friends may sit raw inside JSON strings.
    for number, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"not valid JSON: {exc.msg} (column {exc.colno})", path, number) from exc
        if not isinstance(obj, dict):
            raise SuiteError("each line must be a JSON object", path, number)
        _check_types(obj, path, number)
        expected = [obj["answer"]] if isinstance(obj["answer"], str) else list(obj["answer"])
        _check_answer(expected, obj["evaluator"], path, number)
        context = _context_files(obj.get("context", []), path.parent, path, number)
        task_id: str = obj["id"]
        if task_id in seen:
            raise SuiteError(f"duplicate id {task_id!r} (first on line {seen[task_id]})", path, number)
        seen[task_id] = number
        meta: dict[str, Any] = {"line": number}
        if "tolerance" in obj:
            meta["tolerance"] = float(obj["tolerance"])
        if "split" in obj:
            meta["split"] = obj["split"]
        tasks.append(Task(id=task_id, question=obj["question"], kind="qa", evaluator=obj["evaluator"],
                          expected=expected, context_files=context, meta=meta))
    return tasks
