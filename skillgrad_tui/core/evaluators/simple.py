"""Evaluators for user suites: exact, normalized, numeric and regex answers.

Answers are lists of strings compared as sets: duplicates collapse, order does not matter, and
the answer passes when the predicted set equals the expected set under the evaluator's notion
of equality. Each returns one DiffEntry per expected item plus one per unexpected prediction.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from skillgrad_tui.core.evaluators.base import answer_items, expected_items
from skillgrad_tui.core.records import DiffEntry, Task, Verdict


def _set_verdict(expected: list[str], got: list[str], key: Callable[[str], str]) -> Verdict:
    """Set equality under `key`; the diff names each expected item and each extra prediction."""
    got_by_key: dict[str, str] = {}
    for g in got:
        got_by_key.setdefault(key(g), g)
    exp_keys: dict[str, str] = {}
    for e in expected:
        exp_keys.setdefault(key(e), e)
    diff: list[DiffEntry] = []
    for i, (k, e) in enumerate(exp_keys.items(), start=1):
        if k in got_by_key:
            diff.append(DiffEntry(f"item {i}", e, got_by_key[k], True))
        else:
            note = "no predicted item" if not got else "no predicted item matches"
            diff.append(DiffEntry(f"item {i}", e, None, False, note))
    extras = [g for k, g in got_by_key.items() if k not in exp_keys]
    for j, g in enumerate(extras, start=1):
        diff.append(DiffEntry(f"extra item {j}", None, g, False, "matches no expected item"))
    passed = all(d.ok for d in diff)
    return Verdict(1.0 if passed else 0.0, passed, diff)


class ExactEvaluator:
    name = "exact"

    def score(self, task: Task, answer: Any) -> Verdict:
        return _set_verdict(expected_items(task), answer_items(answer), lambda s: s)


def normalize_text(text: str) -> str:
    """Case-, whitespace- and punctuation-insensitive form.

    Punctuation is dropped, except a '.' between digits (a decimal point), so "U.S.A." equals
    "usa" and "1,000" equals "1000" but "3.5" does not become "35".
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    out: list[str] = []
    for i, c in enumerate(text):
        if unicodedata.category(c).startswith("P"):
            decimal = (c == "." and 0 < i < len(text) - 1
                       and text[i - 1].isdigit() and text[i + 1].isdigit())
            if not decimal:
                continue
        out.append(c)
    return " ".join("".join(out).split())


class NormalizedEvaluator:
    name = "normalized"

    def score(self, task: Task, answer: Any) -> Verdict:
        return _set_verdict(expected_items(task), answer_items(answer), normalize_text)


_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][+-]?\d+)?")


def parse_number(text: str) -> float | None:
    """The one number in `text` ("1,234.5", "$12", "12 %", "-3e2"); None when none or several."""
    found = [m.group(0) for m in _NUMBER.finditer(text) if any(ch.isdigit() for ch in m.group(0))]
    if len(found) != 1:
        return None
    try:
        value = float(found[0].replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _bipartite(expected: list[float], got: list[float], close: Callable[[float, float], bool]) -> list[int | None]:
    """For each expected number, the index of a distinct matching prediction (Kuhn's algorithm)."""
    owner: list[int | None] = [None] * len(got)

    def assign(i: int, seen: set[int]) -> bool:
        for j, g in enumerate(got):
            if j not in seen and close(expected[i], g):
                seen.add(j)
                current = owner[j]
                if current is None or assign(current, seen):
                    owner[j] = i
                    return True
        return False

    for i in range(len(expected)):
        assign(i, set())
    match: list[int | None] = [None] * len(expected)
    for j, owner_of_j in enumerate(owner):
        if owner_of_j is not None:
            match[owner_of_j] = j
    return match


class NumericEvaluator:
    """Numbers within a tolerance (task.meta["tolerance"], relative and absolute; default 1e-6).

    Lists must have the same length and pair up one to one; duplicates are kept, since with a
    tolerance "the same number twice" is ambiguous.
    """

    name = "numeric"

    def score(self, task: Task, answer: Any) -> Verdict:
        tol = float(task.meta.get("tolerance", 1e-6))
        expected = expected_items(task)
        got = answer_items(answer)
        exp_nums = [parse_number(e) for e in expected]
        if any(n is None for n in exp_nums):
            bad = expected[exp_nums.index(None)]
            return Verdict(0.0, False, [], error=f"expected answer {bad!r} is not a number")
        got_nums = [parse_number(g) for g in got]
        usable = [j for j, n in enumerate(got_nums) if n is not None]

        def close(a: float, b: float) -> bool:
            return math.isclose(a, b, rel_tol=tol, abs_tol=tol)

        pairs = _bipartite([n for n in exp_nums if n is not None],
                           [n for n in got_nums if n is not None], close)
        diff: list[DiffEntry] = []
        used: set[int] = set()
        for i, (e, m) in enumerate(zip(expected, pairs), start=1):
            if m is not None:
                used.add(usable[m])
                diff.append(DiffEntry(f"item {i}", e, got[usable[m]], True))
            else:
                note = "no predicted item" if not got else f"number differs (tolerance {tol:g})"
                diff.append(DiffEntry(f"item {i}", e, None, False, note))
        k = 0
        for j, g in enumerate(got):
            if j not in used:
                k += 1
                note = "not a number" if got_nums[j] is None else "matches no expected item"
                diff.append(DiffEntry(f"extra item {k}", None, g, False, note))
        passed = all(d.ok for d in diff)
        return Verdict(1.0 if passed else 0.0, passed, diff)


class RegexEvaluator:
    """expected[0] is a pattern that must fullmatch the answer items joined by newlines."""

    name = "regex"

    def score(self, task: Task, answer: Any) -> Verdict:
        pattern = expected_items(task)[0]
        joined = "\n".join(item.strip() for item in answer_items(answer))
        try:
            ok = re.fullmatch(pattern, joined) is not None
        except re.error as exc:
            return Verdict(0.0, False, [], error=f"bad pattern {pattern!r}: {exc}")
        entry = DiffEntry("answer", pattern, joined, ok, "" if ok else "does not match the pattern")
        return Verdict(1.0 if ok else 0.0, ok, [entry])
