"""The answer's form, read from the evaluator's diffs and written into the skill by code.

When failed tasks expect `12 rows` and the model wrote `12`, the value is right and the form is
wrong, and what fixes it is what the skill shows: small models copy the form of the skill's worked
examples far more than they follow its rules (issue 10's probes). So this module induces, from the
(got, expected) answers of a step's failures, the form the evaluator wants (`N rows`) and the forms
the model wrote (`N`, `rows: N`), and turns it into edits no model has to get right: the skill's
example answers written in a wrong form (one the model wrote, or the expected form's words in another
layout) are rewritten into the expected one, and a rule line with an example is added when the
skill shows the expected form nowhere, followed by a worked example made from one training failure
(its context, question and expected answer) when the optimiser gives one. The edits go through the patcher's
checks and the gate like any proposed edit, so the evidence decides, never this module alone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from skillgrad_tui.core.edit_menu import split_md
from skillgrad_tui.core.skill import SKILL_MD, Edit, Skill, markdown_sections
from skillgrad_tui.core.textsim import numbers_in

FORM_ORIGIN = "answer form from the evaluator's diffs"
FORM_PATTERN = "answer-form"
SLOT = "\x00"  # where the number goes in a form; never in real text
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w]|\.\d)")
# "Answer: 4", "- **Reply:** `4`", "A: 4": the lines that show an example answer.
_ANSWER_LINE = re.compile(r"^(?P<lead>\s*(?:[-*>]\s+)?(?:\*\*)?(?:answer|reply|output|response|a)(?:\*\*)?\s*:"
                          r"(?:\*\*)?\s*)(?P<value>\S.*?)(?P<tail>\s*)$", re.I)
_EXAMPLE_CUE = re.compile(r"\b(?:e\.g\.|for example|for instance|such as|example)", re.I)
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_FORMAT_TITLE = re.compile(r"\b(?:format|answer|answers|reply|output|style)\b", re.I)


def answer_form(text: str) -> str | None:
    """`text` with its one number replaced by SLOT ('12 rows' -> SLOT + ' rows'); None unless it
    has exactly one number. Whitespace is normalised; letter case is kept (it may matter)."""
    t = " ".join(text.split())
    found = list(_NUMBER.finditer(t))
    if len(found) != 1:
        return None
    m = found[0]
    return t[: m.start()] + SLOT + t[m.end() :]


def show(form: str, number: str = "N") -> str:
    return form.replace(SLOT, number)


@dataclass(frozen=True)
class FormShift:
    """The form the evaluator expects and the forms the model wrote instead, with their support."""

    expected: str
    got: tuple[str, ...]  # most common first
    support: int  # failures whose answers show the shift
    failures: int  # failures looked at
    tasks: tuple[str, ...]

    def why(self) -> str:
        wrote = ", ".join(f"`{show(g)}`" for g in self.got)
        return (f"{self.support} of {self.failures} failed tasks expect answers in the form `{show(self.expected)}`; "
                f"the model wrote {wrote}")


def induce(failures: Iterable[tuple[str, Sequence[str], Sequence[str]]], min_support: int = 2) -> FormShift | None:
    """The majority form shift in (task id, got items, expected items) of failed tasks, or None when
    fewer than `min_support` failures (and not most of those with a one-number answer) show one."""
    shifts: Counter[str] = Counter()
    wrote: dict[str, Counter[str]] = {}
    tasks: dict[str, list[str]] = {}
    n = judged = 0
    for task_id, got, expected in failures:
        n += 1
        if len(got) != 1 or len(expected) != 1:
            continue
        g, e = answer_form(got[0]), answer_form(expected[0])
        if e is None:
            continue
        judged += 1
        if g is None or g == e:
            continue
        shifts[e] += 1
        wrote.setdefault(e, Counter())[g] += 1
        tasks.setdefault(e, []).append(task_id)
    if not shifts:
        return None
    expected, support = shifts.most_common(1)[0]
    if support < min_support or 2 * support < judged:
        return None
    got = tuple(g for g, _ in wrote[expected].most_common())
    return FormShift(expected, got, support, n, tuple(tasks[expected]))


def _form_words(form: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[^\W\d_]+", form.replace(SLOT, " "))}


def _wrong_form(form: str, shift: FormShift) -> bool:
    """A form to rewrite: one the model wrote, or the expected form's words laid out another way
    (`rows: N` for `N rows`, an older convention the model may not even copy)."""
    if form == shift.expected:
        return False
    if form in shift.got:
        return True
    unit = _form_words(shift.expected)
    return bool(unit) and _form_words(form) == unit


def _rewrite(value: str, shift: FormShift) -> str | None:
    """`value` in the expected form when it is written in a wrong form (_wrong_form)."""
    inner = value.strip().strip("`").strip()
    form = answer_form(inner)
    if form is None or not _wrong_form(form, shift):
        return None
    number = _NUMBER.search(" ".join(inner.split()))
    assert number is not None
    new = show(shift.expected, number.group(0))
    return value.replace(inner, new, 1)


def _rewritten_line(line: str, shift: FormShift) -> str | None:
    body = line.rstrip("\n")
    m = _ANSWER_LINE.match(body)
    if m:
        new = _rewrite(m["value"], shift)
        if new is not None:
            return m["lead"] + new + m["tail"] + line[len(body) :]
    if _EXAMPLE_CUE.search(body):
        out = _CODE_SPAN.sub(lambda c: f"`{_rewrite(c[1], shift) or c[1]}`", body)
        if out != body:
            return out + line[len(body) :]
    return None


def _unique_block(lines: list[str], i: int, body_start: int) -> tuple[int, str]:
    """The first line index k and the text of lines k..i, grown upwards until it occurs once."""
    text = "".join(lines)
    for k in range(i, body_start - 1, -1):
        block = "".join(lines[k : i + 1])
        if text.count(block) == 1:
            return k, block
    raise ValueError("no unique anchor")


def _shows_expected(body: str, shift: FormShift) -> bool:
    spans = [s for s in _CODE_SPAN.findall(body)] + [m["value"] for ln in body.splitlines()
                                                     if (m := _ANSWER_LINE.match(ln))]
    return any(answer_form(s.strip("` ")) == shift.expected for s in spans)


def _example_number(body: str, avoid: set[str]) -> str:
    """A number for the rule's example: one the skill already uses, else one no training answer has."""
    for n in sorted(numbers_in(body) - avoid, key=lambda s: (len(s), s)):
        if n.isdigit() and 2 <= int(n) <= 99:
            return n
    return next(str(i) for i in range(7, 1000) if str(i) not in avoid)


def worked_example(context: str, question: str, answer: str) -> str:
    """One task as the agent sees it (context, question) with the answer the evaluator wants: the
    block small models copy the form of (a rule line alone moved SmolLM2 on 1 of 40 held-out tasks,
    the rule with one such example on 22 of 40)."""
    lead = f"{context.strip()}\n\n" if context.strip() else ""
    return f"{lead}Question: {question.strip()}\nAnswer: {answer.strip()}\n"


def form_edits(skill: Skill, shift: FormShift, avoid: set[str], example: str | None = None) -> list[Edit]:
    """L2 edits of SKILL.md, in the order they apply: example answers rewritten into the expected
    form, then a rule line (only when the skill shows the expected form nowhere), followed by
    `example` (a worked_example block) under a heading of its own when one is given. `avoid` are
    numbers of training answers, never used in the rule's example."""
    text = skill.files[SKILL_MD]
    _, body = split_md(text)
    lines = text.splitlines(keepends=True)
    body_start = len(text[: len(text) - len(body)].splitlines())
    edits: list[Edit] = []
    for i in range(body_start, len(lines)):
        new = _rewritten_line(lines[i], shift)
        if new is None or new == lines[i]:
            continue
        try:
            k, old = _unique_block(lines, i, body_start)
        except ValueError:
            continue
        lines[i] = new
        edits.append(Edit("L2", SKILL_MD, old, "".join(lines[k : i + 1])))
    new_body = "".join(lines[body_start:])
    if _shows_expected(new_body, shift):
        return edits
    rule = (f"- Write the answer in the form `{show(shift.expected)}` (N is the value), "
            f"e.g. `{show(shift.expected, _example_number(new_body, avoid))}`.\n")
    sections = [s for s in markdown_sections(new_body, body_start + 1) if _FORMAT_TITLE.search(s.title)]
    end = len(lines) - 1  # the body's last non-empty line
    while end > body_start and not lines[end].strip():
        end -= 1
    if sections:  # after the last line of the first section about the answer's format
        last = sections[0].end_line - 1
        while last > sections[0].start_line - 1 and not lines[last].strip():
            last -= 1
        where, heading = last, ""
    else:  # a section of its own at the end of the body
        where, heading = end, "\n## Answer format\n"
    shown = f"\n## Worked example\n{example}" if example else ""
    try:
        k, old = _unique_block(lines, where, body_start)
    except ValueError:
        return edits
    sep = "" if old.endswith("\n") else "\n"
    if where == end or not shown:  # the rule goes at the end of the body: the example follows it
        edits.append(Edit("L2", SKILL_MD, old, old + sep + heading + rule + shown))
        return edits
    edits.append(Edit("L2", SKILL_MD, old, old + sep + heading + rule))
    try:
        k, last_block = _unique_block(lines, end, body_start)
    except ValueError:
        return edits
    edits.append(Edit("L2", SKILL_MD, last_block,
                      last_block + ("" if last_block.endswith("\n") else "\n") + shown))
    return edits
