"""Failure classes: what went wrong in a failed task, read from the evaluator's diff in code.

Before any model reads a failure, the code names its class from hard evidence (method.md, "Making
the loop work with small models"): for answers, an empty or refused reply, a reply cut off or
looping, the right value with extra words around it, a number or date in the wrong format, the
wrong number of items, the answer in another form (`12` for `12 rows`), or simply a wrong value;
for spreadsheets, no output workbook, a script that failed, cells of the wrong type, cells changed
that should have kept their input value, or wrong cell values. The class is evidence in the
diagnoser's prompt and its label is the diagnoser's label vocabulary, so labels are reusable and
momentum merges patterns on meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from skillgrad_tui.core.answer_form import answer_form, show
from skillgrad_tui.core.evaluators.base import answer_items
from skillgrad_tui.core.evaluators.wtq import DateValue, NumberValue, normalize, to_value
from skillgrad_tui.core.llm.loops import looping_tail
from skillgrad_tui.core.records import Task, Trajectory
from skillgrad_tui.core.textsim import truncate


@dataclass(frozen=True)
class FailureClass:
    key: str
    label: str  # 3-6 words: the momentum label every failure of this class shares
    hint: str  # what a skill usually has to say to prevent it (shown to the diagnoser)
    where: str  # words of the kind of section it concerns, to place a code-made gradient
    rule: str = ""  # the usual fix as one skill line (the patcher's example answer uses it)


QA_CLASSES: tuple[FailureClass, ...] = (
    FailureClass("empty", "empty or refused answer",
                 "the skill should say that an answer is always required: the best value found, never a refusal",
                 "answer format reply",
                 "Always give an answer: the best value the data supports, never a refusal or an empty reply."),
    FailureClass("case", "answer in wrong letter case",
                 "the skill should say to keep the letter case the data uses (exact-match scoring)",
                 "answer format text case",
                 "Write text in the same letter case as the data."),
    FailureClass("cut_off", "answer cut off or looping",
                 "the skill should ask for a short reply that stops after the value(s), with no repetition",
                 "answer format reply",
                 "Keep the reply short: write the value(s), then stop."),
    FailureClass("extra_words", "extra words around answer",
                 "the skill should ask for the bare value only, with no sentence, unit or explanation around it",
                 "answer format reply value",
                 "Reply with the bare value only, with no sentence, unit or explanation around it."),
    FailureClass("number_format", "number written in wrong format",
                 "the skill should say how to write numbers: plain digits, no separators, symbols or words",
                 "answer format number",
                 "Write numbers as plain digits, without thousands separators, symbols or words."),
    FailureClass("date_format", "date written in wrong format",
                 "the skill should say how to write dates, in the form the data uses",
                 "answer format date",
                 "Write dates exactly in the form the data uses."),
    FailureClass("wrong_count", "wrong number of answer items",
                 "the skill should say how many items to give: every match for a list, one value otherwise",
                 "answer format list items",
                 "Give every matching item for a list question, one per line, and a single value otherwise."),
    FailureClass("wrong_form", "answer in wrong form",
                 "the skill should show the answer's exact form (words, order, unit around the value) in its "
                 "rule and in every worked example",
                 "answer format examples",
                 "Write the answer in exactly the form the worked examples show."),
    FailureClass("wrong_value", "picked the wrong value",
                 "the skill should say how to find the right row and column before answering",
                 "read find rows column",
                 "Find the row and the column the question names before reading the value."),
)
SHEET_CLASSES: tuple[FailureClass, ...] = (
    FailureClass("no_output", "no output workbook written",
                 "the skill should say to save the whole workbook under the output name at the end",
                 "workflow save output",
                 "End the script by saving the whole workbook under the output file name."),
    FailureClass("script_error", "script failed with error",
                 "the skill should show the safe way to load, edit and save with openpyxl",
                 "workflow script openpyxl",
                 "Load the workbook with openpyxl.load_workbook, change cells through the worksheet, then save it."),
    FailureClass("wrong_types", "cell values have wrong type",
                 "the skill should say to write numbers and dates as values of their type, not as text",
                 "values types numbers",
                 "Write numbers and dates as numbers and dates, not as text."),
    FailureClass("untouched_changed", "changed cells meant to stay",
                 "the skill should say to change only the cells the instruction names",
                 "cells change only",
                 "Change only the cells the instruction names; leave every other cell as it is."),
    FailureClass("wrong_cells", "wrong values in answer cells",
                 "the skill should say how to compute each answer cell from the instruction",
                 "cells values formulas",
                 "Compute each answer cell exactly as the instruction says, then check it."),
)
_BY_KEY = {c.key: c for c in QA_CLASSES + SHEET_CLASSES}


@dataclass(frozen=True)
class Failure:
    cls: FailureClass
    evidence: str  # one line from the diff that shows it

    def to_dict(self) -> dict[str, str]:
        return {"key": self.cls.key, "label": self.cls.label, "evidence": self.evidence}


def failure_class(key: str) -> FailureClass:
    return _BY_KEY[key]


def class_by_label(label: str) -> FailureClass | None:
    """The class whose label this is (pattern labels come from the class vocabulary)."""
    return next((c for c in _BY_KEY.values() if c.label == label), None)


def vocabulary(task: Task) -> tuple[FailureClass, ...]:
    """The classes a task of this kind can fail with (the diagnoser's allowed labels)."""
    return SHEET_CLASSES if task.kind == "spreadsheet" else QA_CLASSES


# ------------------------------------------------------------------------------------ answers

_REFUSAL = re.compile(r"\b(?:i (?:don'?t|do not|cannot|can'?t) (?:know|answer|tell|find|determine)|"
                      r"not (?:enough|sufficient) (?:information|data)|cannot be determined|"
                      r"no answer|unable to|sorry|not (?:given|provided|available) in the table)\b", re.I)
_TOKEN = re.compile(r"[a-z0-9]+")
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_MONTHS = {m: i + 1 for i, m in enumerate(
    "january february march april may june july august september october november december".split())}
_MONTHS.update({m[:3]: n for m, n in list(_MONTHS.items())})
_MONTHS["sept"] = 9


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text))


def _contains(hay: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return n > 0 and any(hay[i : i + n] == needle for i in range(len(hay) - n + 1))


def _loose_number(text: str) -> float | None:
    """A number however it is written: separators, symbols, units stripped, or a number word."""
    t = normalize(text)
    if t in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[t])
    digits = re.sub(r"(?<=\d)[,\s'](?=\d{3}\b)", "", t)
    found = re.findall(r"[-+]?\d+(?:\.\d+)?", digits)
    if len(found) != 1:
        return None
    try:
        return float(found[0])
    except ValueError:
        return None


def _loose_date(text: str) -> tuple[int, int, int] | None:
    """(year, month, day), -1 where unknown, from common written forms; None when no year/month."""
    t = normalize(text)
    iso = re.fullmatch(r"(\d{4})-(\d{1,2}|xx)-(\d{1,2}|xx)", t)
    if iso:
        return int(iso[1]), -1 if iso[2] == "xx" else int(iso[2]), -1 if iso[3] == "xx" else int(iso[3])
    year = re.search(r"\b(1\d{3}|2\d{3})\b", t)
    month = next((n for w, n in _MONTHS.items() if re.search(rf"\b{w}\b", t)), -1)
    nums = re.findall(r"\b(\d{1,2})(?:st|nd|rd|th)?\b", t)
    slash = re.fullmatch(r"(\d{1,2})[/.](\d{1,2})[/.](\d{4})", t)
    if slash:  # d/m/y and m/d/y are ambiguous: prefer the reading that is a valid date
        a, b, y = int(slash[1]), int(slash[2]), int(slash[3])
        return (y, b, a) if b <= 12 < a else (y, a, b)
    if year is None and month == -1:
        return None
    day = int(nums[0]) if nums and month != -1 and 1 <= int(nums[0]) <= 31 else -1
    return (int(year[1]) if year else -1, month, day)


def _same_date(target: tuple[int, int, int], got: tuple[int, int, int]) -> bool:
    return all(t == -1 or t == g for t, g in zip(target, got)) and any(t != -1 for t in target)


def _targets(task: Task) -> list[Any]:
    canon = task.meta.get("canon") if task.evaluator == "wtq" else None
    items = list(task.expected or [])
    if canon is not None and len(canon) == len(items):
        return [to_value(r, c) for r, c in zip(items, canon)]
    return [to_value(r) for r in items]


def _final_model_turn(traj: Trajectory) -> tuple[str, str | None]:
    for turn in reversed(traj.turns):
        if turn.kind == "model":
            return turn.content, getattr(turn, "finish", None)
    return "", None


def _loops(text: str) -> bool:
    ids = [hash(w) for w in _TOKEN.findall(text.lower())]
    return looping_tail(ids, min_span=12, max_period=6, min_repeats=3) > 0


def _show(items: list[str]) -> str:
    return " | ".join(repr(truncate(i, 60)) for i in items) or "nothing"


def classify_answer(task: Task, traj: Trajectory) -> Failure:
    got = [g for g in answer_items(traj.answer) if g.strip()]
    expected = list(task.expected or [])
    shown = f"expected {_show(expected)}, got {_show(got)}"
    text, finish = _final_model_turn(traj)

    def fail(key: str, why: str) -> Failure:
        return Failure(failure_class(key), f"{shown}: {why}")

    if not got:
        why = f"the run failed: {truncate(traj.error, 100)}" if traj.error else "no answer was given"
        return fail("empty", why)
    if all(_REFUSAL.search(g) for g in got):
        return fail("empty", "the answer refuses or says it cannot tell")
    folded = {" ".join(e.split()).casefold() for e in expected}
    if any(g not in expected and " ".join(g.split()).casefold() in folded for g in got):
        return fail("case", "the right text in another letter case")
    for target in _targets(task):
        if isinstance(target, NumberValue) and not _is_year(target):
            near = [g for g in got if _only_number(g) and _loose_number(g) is not None
                    and abs(_loose_number(g) - target.amount) < 1e-6]  # type: ignore[operator]
            if near:
                return fail("number_format", f"{near[0]!r} is the right number written another way")
        ymd = target.ymd if isinstance(target, DateValue) else (
            (int(target.amount), -1, -1) if isinstance(target, NumberValue) and _is_year(target) else None)
        if ymd is not None:
            near = [g for g in got if _only_date(g) and (d := _loose_date(g)) is not None and _same_date(ymd, d)]
            if near:
                return fail("date_format", f"{near[0]!r} is the right date written another way")
    exp_tokens = [_tokens(e) for e in expected]
    got_tokens = [_tokens(g) for g in got]
    inside = [any(_contains(gt, et) and len(gt) > len(et) for gt in got_tokens) for et in exp_tokens]
    if expected and all(inside):
        return fail("extra_words", "the expected value is there, with other words around it")
    if finish in ("length", "loop") or _loops(text):
        return fail("cut_off", "the reply ran to its token limit" if finish == "length"
                    else "the reply keeps repeating itself")
    if len({normalize(g) for g in got}) != len({normalize(e) for e in expected}):
        return fail("wrong_count", f"{len(got)} item(s) given, {len(expected)} expected")
    forms = [(answer_form(g), answer_form(e)) for g, e in zip(got, expected)]
    if forms and all(ef is not None and gf is not None and gf != ef for gf, ef in forms):
        gf, ef = forms[0]
        return fail("wrong_form", f"written as {show(gf or '')!r}, expected the form {show(ef or '')!r}")
    return fail("wrong_value", "a different value")


_DATE_WORDS = frozenset(_MONTHS) | {"st", "nd", "rd", "th", "of"}


def _only_number(text: str) -> bool:
    """Digits, separators and symbols only (or one number word): a format slip, not extra words."""
    t = normalize(text)
    return t in _NUMBER_WORDS or re.search(r"[a-z]{2,}", t) is None


def _only_date(text: str) -> bool:
    return all(tok.isdigit() or tok in _DATE_WORDS for tok in _tokens(text))


def _is_year(value: NumberValue) -> bool:
    return isinstance(value.amount, int) and 1000 <= value.amount <= 2999 and len(value.raw.strip()) == 4


# ------------------------------------------------------------------------------- spreadsheets

_EXIT = re.compile(r"^exit code (-?\d+)")


@lru_cache(maxsize=32)
def _input_cells(path: str, mtime: float) -> dict[tuple[str, str], Any]:
    import warnings

    import openpyxl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wb = openpyxl.load_workbook(path, data_only=True, read_only=True)
    out: dict[tuple[str, str], Any] = {}
    try:
        for ws in wb.worksheets:
            for row in ws.iter_rows():
                for cell in row:
                    if getattr(cell, "coordinate", None) is not None and cell.value is not None:
                        out[(ws.title, cell.coordinate)] = cell.value
    finally:
        wb.close()
    return out


def _split_where(where: str) -> tuple[str, str] | None:
    sheet, sep, cell = where.rpartition("!")
    return (sheet.strip("'"), cell) if sep else None


def classify_sheet(task: Task, traj: Trajectory) -> Failure:
    from skillgrad_tui.core.evaluators.spreadsheet import cells_match

    verdict = traj.verdict
    results = [t.content for t in traj.turns if t.kind == "tool_result"]
    if traj.answer in (None, ""):
        last = _EXIT.match(results[-1]) if results else None
        if last is not None and int(last[1]) != 0:
            err = results[-1].strip().splitlines()[-1]
            return Failure(failure_class("script_error"), f"the script exited with code {last[1]}: "
                                                         f"{truncate(err, 160)}")
        why = "the script ran but saved no output workbook" if results else "no script was written"
        return Failure(failure_class("no_output"), why)
    bad = [d for d in (verdict.diff if verdict else []) if not d.ok and d.where != "(omitted)"]
    if not bad:
        why = verdict.error if verdict and verdict.error else "the output could not be compared"
        return Failure(failure_class("wrong_cells"), truncate(why, 200))
    source = task.context_files[0] if task.context_files else None
    inputs: dict[tuple[str, str], Any] = {}
    if source is not None and Path(source).is_file():
        try:
            inputs = _input_cells(str(source), Path(source).stat().st_mtime)
        except Exception:  # an unreadable input only costs this one distinction
            inputs = {}
    counts = {"untouched_changed": 0, "wrong_types": 0, "wrong_cells": 0}
    first: dict[str, str] = {}
    for d in bad:
        loc = _split_where(d.where)
        if loc is not None and loc in inputs and cells_match(inputs[loc], d.expected):
            key = "untouched_changed"
        elif d.note.startswith("type differs"):
            key = "wrong_types"
        else:
            key = "wrong_cells"
        counts[key] += 1
        first.setdefault(key, f"{d.where}: expected {d.expected!r}, got {d.got!r} ({d.note})")
    key = max(counts, key=lambda k: counts[k])  # ties: dict order, untouched first
    return Failure(failure_class(key), f"{counts[key]} of {len(bad)} wrong cell(s) like this; e.g. {first[key]}")


def classify(task: Task, traj: Trajectory) -> Failure | None:
    """The failure class of a scored trajectory; None when it passed."""
    if traj.verdict is not None and traj.verdict.passed:
        return None
    if task.kind == "spreadsheet":
        return classify_sheet(task, traj)
    return classify_answer(task, traj)


__all__ = ["Failure", "FailureClass", "QA_CLASSES", "SHEET_CLASSES", "class_by_label", "classify", "failure_class",
           "vocabulary"]
