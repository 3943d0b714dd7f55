"""The official WikiTableQuestions scoring rules (evaluator.py v1.0.2), in Python 3.

Rules (Pasupat & Liang's evaluator, reproduced rule for rule so that our accuracies are the
numbers the literature reports):
- Every answer item becomes a value. A target item uses its CoreNLP canonical form (targetCanon)
  when one is known, else its raw string; a predicted item uses its raw string. The form is read
  as a number if int()/float() accept it, else as a date `yyyy-mm-dd` with `xx` for unknown parts
  (a date with only the year known is the number year), else it is a string.
- A number within 1e-6 of an integer is that integer; note the official code truncates with
  int(), so 2.9999995 becomes 2. Kept on purpose: it is the published behaviour.
- Each value keeps normalize(raw string). A target matches a prediction when the normalized
  strings are equal, or both are numbers within 1e-6, or both are dates with equal parts
  (unknown parts must be unknown on both sides).
- Target and prediction lists are de-duplicated as sets (numbers by amount, dates by parts,
  strings by normalized form). The answer is correct when both sets have the same size and
  every target matches some prediction.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
import re
import unicodedata
from typing import Any

from skillgrad_tui.core.evaluators.base import answer_items, expected_items
from skillgrad_tui.core.records import DiffEntry, Task, Verdict

# --- string normalisation -------------------------------------------------------------------

_SINGLE_QUOTES = re.compile("[\u2018\u2019\u00b4`]")
_DOUBLE_QUOTES = re.compile("[\u201c\u201d]")
_DASHES = re.compile("[\u2010\u2011\u2012\u2013\u2014\u2212]")
# Trailing citations: a bracketed note not at the very start, a bare [12], or footnote marks.
# [0-9] rather than \d: the official Python 2 pattern had no re.UNICODE flag.
_CITATIONS = re.compile("((?<!^)\\[[^\\]]*\\]|\\[[0-9]+\\]|[\u2022\u2666\u2020\u2021*#+])*$")
_PAREN_DETAILS = re.compile(r"(?<!^)( \([^)]*\))*$")
_OUTER_QUOTES = re.compile(r'^"([^"]*)"$')
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """The official string normalisation."""
    x = "".join(c for c in unicodedata.normalize("NFKD", text) if unicodedata.category(c) != "Mn")
    x = _SINGLE_QUOTES.sub("'", x)
    x = _DOUBLE_QUOTES.sub('"', x)
    x = _DASHES.sub("-", x)
    # Citations, parenthesised details and quotes can nest in any order: strip to a fixed point.
    while True:
        old = x
        x = _CITATIONS.sub("", x.strip())
        x = _PAREN_DETAILS.sub("", x.strip())
        x = _OUTER_QUOTES.sub(r"\1", x.strip())
        if x == old:
            break
    if x.endswith("."):
        x = x[:-1]
    return _SPACES.sub(" ", x).lower().strip()


# --- values ------------------------------------------------------------------------------------


class Value(ABC):
    """An answer item as the official evaluator sees it; `raw` is kept for diffs."""

    raw: str
    normalized: str

    @abstractmethod
    def key(self) -> tuple[Any, ...]:
        """Identity for de-duplicating a list into a set, as the official script does."""

    @abstractmethod
    def match(self, other: "Value") -> bool:
        """Whether a predicted value matches this target value."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Value) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key()[1]!r}, {self.normalized!r})"


class StringValue(Value):
    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.normalized = normalize(raw)

    def key(self) -> tuple[Any, ...]:
        return ("string", self.normalized)

    def match(self, other: Value) -> bool:
        return self.normalized == other.normalized


class NumberValue(Value):
    def __init__(self, amount: int | float, raw: str = "") -> None:
        # int() truncates: the official behaviour (see the module docstring).
        self.amount: int | float = int(amount) if abs(amount - round(amount)) < 1e-6 else float(amount)
        self.raw = raw
        self.normalized = normalize(raw) if raw else str(self.amount)

    def key(self) -> tuple[Any, ...]:
        return ("number", self.amount)

    def match(self, other: Value) -> bool:
        if self.normalized == other.normalized:
            return True
        return isinstance(other, NumberValue) and abs(self.amount - other.amount) < 1e-6


class DateValue(Value):
    def __init__(self, year: int, month: int, day: int, raw: str = "") -> None:
        if (year, month, day) == (-1, -1, -1):
            raise ValueError("a date needs at least one known part")
        self.ymd = (year, month, day)
        self.raw = raw
        if raw:
            self.normalized = normalize(raw)
        else:
            # The official code compares day with the string '-1', so an unknown day prints as -1.
            self.normalized = "{}-{}-{}".format(year if year != -1 else "xx",
                                                month if month != -1 else "xx", day)

    def key(self) -> tuple[Any, ...]:
        return ("date", self.ymd)

    def match(self, other: Value) -> bool:
        if self.normalized == other.normalized:
            return True
        return isinstance(other, DateValue) and self.ymd == other.ymd


def _py2_int(text: str) -> int:
    # Python 3 int()/float() accept digit separators ("1_000"); the official Python 2 code did not.
    if "_" in text:
        raise ValueError(text)
    return int(text)


def parse_number(text: str) -> int | float | None:
    """int(text), else a finite float(text), else None."""
    try:
        return _py2_int(text)
    except ValueError:
        pass
    if "_" in text:
        return None
    try:
        amount = float(text)
    except (ValueError, OverflowError):
        return None
    return None if math.isnan(amount) or math.isinf(amount) else amount


def parse_date(text: str) -> tuple[int, int, int] | None:
    """(year, month, day) from `yyyy-mm-dd`, -1 for an `xx` part; None when it is not a date."""
    parts = text.lower().split("-")
    if len(parts) != 3:
        return None
    try:
        year = -1 if parts[0] in ("xx", "xxxx") else _py2_int(parts[0])
        month = -1 if parts[1] == "xx" else _py2_int(parts[1])
        day = -1 if parts[2] == "xx" else _py2_int(parts[2])
    except ValueError:
        return None
    if year == month == day == -1:
        return None
    if not (month == -1 or 1 <= month <= 12) or not (day == -1 or 1 <= day <= 31):
        return None
    return (year, month, day)


def to_value(raw: str, canon: str | None = None) -> Value:
    """The value of one item; `canon` is the CoreNLP canonical form of a target, when known."""
    form = canon if canon else raw
    amount = parse_number(form)
    if amount is not None:
        return NumberValue(amount, raw)
    ymd = parse_date(form)
    if ymd is not None:
        if ymd[1] == ymd[2] == -1:
            return NumberValue(ymd[0], raw)
        return DateValue(*ymd, raw=raw)
    return StringValue(raw)


def distinct(values: list[Value]) -> list[Value]:
    """Set semantics of the official to_value_list, keeping first-seen order for stable diffs."""
    seen: set[Value] = set()
    out: list[Value] = []
    for v in values:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def to_value_list(raws: list[str], canons: list[str] | None = None) -> list[Value]:
    if canons is not None and len(canons) != len(raws):
        raise ValueError(f"{len(raws)} items but {len(canons)} canonical values")
    pairs = zip(raws, canons) if canons is not None else ((r, None) for r in raws)
    return distinct([to_value(r, c) for r, c in pairs])


def check_denotation(targets: list[Value], predictions: list[Value]) -> bool:
    """Both lists already distinct. Same size, and every target matched by some prediction."""
    if len(targets) != len(predictions):
        return False
    return all(any(t.match(p) for p in predictions) for t in targets)


def target_values(task: Task) -> list[Value]:
    """A task's gold values, with the tagged canonical forms when the suite provides them."""
    canon = task.meta.get("canon")
    return to_value_list(expected_items(task), list(canon) if canon is not None else None)


# --- the evaluator ----------------------------------------------------------------------------


def _amount_text(amount: int | float) -> str:
    return str(amount) if isinstance(amount, int) else repr(amount)


def _date_text(ymd: tuple[int, int, int]) -> str:
    return "-".join("xx" if p == -1 else f"{p:02d}" if i else str(p) for i, p in enumerate(ymd))


def _why_unmatched(target: Value, preds: list[Value]) -> tuple[Value | None, str]:
    """The closest candidate prediction (if any) and a short reason the target has no match."""
    if not preds:
        return None, "no predicted item"
    if isinstance(target, NumberValue):
        numbers: list[NumberValue] = [p for p in preds if isinstance(p, NumberValue)]
        if numbers:
            near = min(numbers, key=lambda p: abs(p.amount - target.amount))
            return near, (f"number differs: expected {_amount_text(target.amount)}, "
                          f"got {_amount_text(near.amount)}")
    if isinstance(target, DateValue):
        dates: list[DateValue] = [p for p in preds if isinstance(p, DateValue)]
        if dates:
            near_date = max(dates, key=lambda p: sum(a == b for a, b in zip(p.ymd, target.ymd)))
            parts = [n for n, a, b in zip(("year", "month", "day"), target.ymd, near_date.ymd) if a != b]
            return near_date, (f"date differs in {'/'.join(parts)}: expected {_date_text(target.ymd)}, "
                               f"got {_date_text(near_date.ymd)}")
    if len(preds) == 1:
        return preds[0], (f"no predicted item matches: normalized {target.normalized!r} "
                          f"vs {preds[0].normalized!r}")
    return None, f"no predicted item matches (normalized {target.normalized!r})"


def explain(targets: list[Value], preds: list[Value], passed: bool) -> list[DiffEntry]:
    """One entry per distinct target, one per prediction not otherwise shown, and a count entry.

    An unmatched target is shown with its nearest unmatched prediction (a number or date that
    differs, or the lone leftover string); those predictions are not listed again as extras.
    """
    hits = [[j for j, p in enumerate(preds) if t.match(p)] for t in targets]
    used = {j for h in hits for j in h}
    free = [p for j, p in enumerate(preds) if j not in used]
    diff: list[DiffEntry] = []
    shown: set[int] = set()
    for i, (target, h) in enumerate(zip(targets, hits), start=1):
        if h:
            diff.append(DiffEntry(f"item {i}", target.raw, preds[h[0]].raw, True))
            continue
        near, note = _why_unmatched(target, free)
        if not free and preds:
            note = "every predicted item already matches another expected item"
        if near is not None:
            shown.add(id(near))
        diff.append(DiffEntry(f"item {i}", target.raw, near.raw if near else None, False, note))
    extras = [p for p in free if id(p) not in shown]
    for k, pred in enumerate(extras, start=1):
        diff.append(DiffEntry(f"extra item {k}", None, pred.raw, passed, "matches no expected item"))
    if len(targets) != len(preds):
        diff.append(DiffEntry("item count", len(targets), len(preds), False,
                              f"expected {len(targets)} distinct items, got {len(preds)}"))
    return diff


class WTQEvaluator:
    name = "wtq"

    def score(self, task: Task, answer: Any) -> Verdict:
        targets = target_values(task)
        preds = to_value_list(answer_items(answer))
        passed = check_denotation(targets, preds)
        return Verdict(1.0 if passed else 0.0, passed, explain(targets, preds, passed))
