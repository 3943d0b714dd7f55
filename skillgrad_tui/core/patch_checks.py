"""The rules every proposed edit is checked against in code (a small model ignores rules it is only
told), and the reason keys a rejection is counted under in each step's account."""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Sequence

import yaml

from skillgrad_tui.core.edit_menu import split_md
from skillgrad_tui.core.errors import EditError
from skillgrad_tui.core.gradient import PreservationSignal
from skillgrad_tui.core.patch_prompts import TEMPLATE_TEXTS
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.skill_edits import Edit, apply_edits_in_memory, check_edit
from skillgrad_tui.core.skill_format import SKILL_MD, Skill
from skillgrad_tui.core.template_text import check_no_template_text
from skillgrad_tui.core.textsim import (STOPWORDS, contains_phrase, content_words, ngrams, normalise_label, numbers_in,
                                        quoted_strings, truncate, words)


MAX_REWRITE_FRACTION = 0.5
_HEADING_LINE = re.compile(r"^ {0,3}#{1,6}\s+\S")
MENTION_RE = re.compile(r"(?<![\w/.-])((?:references|scripts|assets)/[\w./-]*[\w-])")

# Answers that are ordinary words: an instruction may mention them without copying a task value.
_GENERIC_ANSWERS = frozenset(
    "yes no none true false total more less same first last before after above below left right "
    "home away win loss draw male female other unknown all both neither either".split()
)

# Why an answer did not become part of a candidate: short keys, counted in every step's account.
NO_CHANGE = "no change"
DOES_NOT_APPLY = "does not apply"
CONFLICT = "conflicts with another edit"
TRAINING_VALUE = "copies a training value"
L2_BUDGET = "over the L2 size budget"
DESCRIPTION_RULE = "description rule"
REWRITE = "rewrites too much"
HEADING_REMOVED = "removes a heading"
PROTECTED = "removes protected text"
DANGLING = "points to a missing file"
MODEL_INVALID = "model output invalid"
MODEL_FAILED = "model call failed"
TEMPLATE_COPY = "copies the prompt's template"
Rejection = tuple[str, str]  # (key, message)


def check_description(text: str, max_words: int = 50) -> str | None:
    """L1 rule of the paper's patcher: one non-empty sentence of at most `max_words` words."""
    t = text.strip()
    if not t:
        return "description is empty"
    n = len(t.split())
    if n > max_words:
        return f"description has {n} words, at most {max_words} allowed"
    # A sentence end followed by more text means a second sentence ("e.g." and "3.5" do not end one).
    ends = [m for m in re.finditer(r"[.!?](?=\s+\S)", t) if not re.search(r"\b(?:e\.g|i\.e|etc|vs)\.$",
                                                                           t[: m.end()], re.I)]
    if ends or "\n\n" in t:
        return "description must be a single sentence"
    return None


def check_l2_budget(new_body: str, l2_max_chars: int) -> str | None:
    if len(new_body) > l2_max_chars:
        return (f"SKILL.md body would be {len(new_body)} characters, over the L2 budget of {l2_max_chars}; "
                "move detail into references/")
    return None


def _added_chunks(old_text: str, new_text: str) -> list[list[str]]:
    """Runs of words that are in the new text but not in the old (inserted or replacing)."""
    a, b = words(old_text), words(new_text)
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [b[j1:j2] for op, _, _, j1, j2 in sm.get_opcodes() if op in ("insert", "replace")]


def _made_of(value: str, old_text: str) -> bool:
    """A value with a number whose numbers and words the old text already has (`4 rows` in a skill
    with the example `Answer: 4` and the word `rows`): writing it copies nothing from a task."""
    nums = numbers_in(value)
    if not nums or not nums <= numbers_in(old_text):
        return False
    have = set(words(old_text))
    return all(w in have or numbers_in(w) for w in words(value))


def family_phrasing(train_tasks: Sequence[Task], n: int = 4) -> set[tuple[str, ...]]:
    """The n-grams that more than half of the training questions share (at least 4 questions): the
    wording of the task family ("how many rows does the table have"), which names no one task, so a
    skill may repeat it (a worked example does)."""
    if len(train_tasks) < 4:
        return set()
    counts: Counter[tuple[str, ...]] = Counter(g for t in train_tasks for g in ngrams(words(t.question), n))
    return {g for g, c in counts.items() if 2 * c > len(train_tasks)}


def check_no_training_values(new_text: str, old_text: str, train_tasks: Sequence[Task], n: int = 4,
                             shown: str = "") -> str | None:
    """Reject added text that copies a training task: any n words in a row from a question or an
    expected answer, a number from an expected answer, or an expected answer (or a string quoted in
    a question) of 3+ characters that the old text did not already contain (nor all its parts).
    `shown` is a worked example made in code from one task as the agent saw it: its values are that
    task's own, shown on purpose, so they count as already there (a table's `16` is not another
    task's answer `16 rows` copied); everything else added is checked as usual."""
    if shown:
        old_text = f"{old_text}\n{shown}"
    chunks = _added_chunks(old_text, new_text)
    if not chunks:
        return None
    added: set[tuple[str, ...]] = set()
    for c in chunks:
        added |= {g for g in ngrams(c, n) if not all(w in STOPWORDS for w in g)}
    new_numbers = numbers_in(new_text) - numbers_in(old_text)
    added -= family_phrasing(train_tasks, n)
    for task in train_tasks:
        copied = added & ngrams(words(task.question), n)
        if copied:
            return f"copies words of training question {task.id}: {' '.join(min(copied))!r}"
        names = list(quoted_strings(task.question))
        for item in task.expected or []:
            copied = added & ngrams(words(item), n)
            if copied:
                return f"copies the expected answer of training task {task.id}: {' '.join(min(copied))!r}"
            hit = numbers_in(item) & new_numbers
            if hit:
                return f"adds the number {min(hit)} from the expected answer of training task {task.id}"
            names.append(item)
        for name in names:
            key = normalise_label(name)
            if _made_of(key, old_text):
                continue
            if (len(key) >= 3 and any(c.isalpha() for c in key) and key not in _GENERIC_ANSWERS
                    and not all(w in STOPWORDS for w in words(key))
                    and contains_phrase(new_text, key) and not contains_phrase(old_text, key)):
                return f"adds the value {name!r} from training task {task.id}"
    return None


def _removed_lines(edit: Edit) -> list[str]:
    old = Counter(line.strip() for line in edit.old.splitlines() if line.strip())
    new = Counter(line.strip() for line in edit.new.splitlines() if line.strip())
    return list((old - new).elements())


def check_preservation(skill: Skill, edit: Edit, signals: Sequence[PreservationSignal]) -> str | None:
    """An edit may not delete (or reword) a line inside the section or file a robust preservation
    signal names, nor a line that says what that signal says helped."""
    removed = _removed_lines(edit)
    if not removed:
        return None
    for s in signals:
        if not s.robust:
            continue
        protected: set[str] = set()
        if s.anchor == edit.path:
            protected = {ln.strip() for ln in skill.files.get(edit.path, "").splitlines() if ln.strip()}
        elif edit.path == SKILL_MD:
            span = section_span(skill, s.anchor, own_only=False)
            if span is not None:
                lines = skill.files[SKILL_MD].splitlines()
                protected = {ln.strip() for ln in lines[span[0] : span[1] + 1] if ln.strip()}
        helped = set(content_words(s.what_helped))
        for line in removed:
            cw = set(content_words(line))
            says_it = len(cw) >= 2 and len(cw & helped) / len(cw) >= 0.6
            if line in protected or says_it:
                return (f"removes {truncate(line, 80)!r}, which task {s.task_id} passes thanks to "
                        f"(preservation signal {s.id}: {truncate(s.what_helped, 80)})")
    return None


def check_single(skill: Skill, edit: Edit, signals: Sequence[PreservationSignal]) -> Rejection | None:
    """Checks that concern one edit against the current skill."""
    reason = check_edit(skill, edit)
    if reason is not None:
        return DOES_NOT_APPLY, f"does not apply: {reason}"
    if edit.old:
        region = split_md(skill.files[SKILL_MD])[1] if edit.layer == "L2" else skill.files.get(edit.path, "")
        replaced = _replaced_chars(edit.old, edit.new)  # an append keeps its anchor: 0 replaced
        if edit.layer != "L1" and replaced > MAX_REWRITE_FRACTION * max(len(region), 1):
            return REWRITE, (f"replaces {replaced} of {len(region)} characters of {edit.path}: "
                             "edits must be local, never a rewrite of the whole skill")
        if edit.layer == "L2":
            new_lines = {ln.strip() for ln in edit.new.splitlines()}
            for ln in edit.old.splitlines():
                if _HEADING_LINE.match(ln) and ln.strip() not in new_lines:
                    return HEADING_REMOVED, f"removes the section heading {ln.strip()!r}"
    why = check_preservation(skill, edit, signals)
    return (PROTECTED, why) if why else None


def section_span(skill: Skill, title: str, *, own_only: bool = True) -> tuple[int, int] | None:
    """0-based file line indices [heading, last line] of a section; `own_only` stops at the
    first subsection."""
    secs = skill.sections()
    for i, s in enumerate(secs):
        if s.title == title:
            end = s.end_line
            if own_only and i + 1 < len(secs):
                end = min(end, secs[i + 1].start_line - 1)
            return s.start_line - 1, end - 1
    return None


def _common_ends(a: str, b: str) -> int:
    """Length of the common prefix plus the common suffix (not overlapping)."""
    p = 0
    while p < min(len(a), len(b)) and a[p] == b[p]:
        p += 1
    s = 0
    while s < min(len(a), len(b)) - p and a[-1 - s] == b[-1 - s]:
        s += 1
    return p + s


def _replaced_chars(old: str, new: str) -> int:
    return len(old) - _common_ends(old, new)


def change_size(edits: Sequence[Edit]) -> int:
    """Characters removed plus added: the smallest change is the simplest candidate."""
    return sum(len(e.old) + len(e.new) - 2 * _common_ends(e.old, e.new) for e in edits)


def _description_of(skill_md: str) -> str:
    data = yaml.safe_load(split_md(skill_md)[0]) or {}
    return str(data.get("description", "")) if isinstance(data, dict) else ""


def check_candidate(skill: Skill, edits: list[Edit], accepted: list[Edit],
                    preservation: Sequence[PreservationSignal], train_tasks: Sequence[Task], *, ngram: int,
                    l2_max_chars: int, desc_max_words: int, shown: str = "") -> Rejection | None:
    """None when `edits`, applied after the already accepted ones, pass every rule; else why not.
    `shown`: a code-made worked example among the edits (see check_no_training_values)."""
    for e in edits:
        reason = check_single(skill, e, preservation)
        if reason is not None:
            return reason
    try:
        before = {**skill.files, **(apply_edits_in_memory(skill, accepted) if accepted else {})}
        after = {**skill.files, **apply_edits_in_memory(skill, accepted + edits)}
    except EditError as exc:
        if accepted:
            return CONFLICT, f"conflicts with an earlier edit of this candidate: {exc}"
        return DOES_NOT_APPLY, f"does not apply with its pair: {exc}"
    for path in sorted(p for p in after if after[p] != before.get(p)):
        problem = check_no_training_values(after[path], before.get(path, ""), train_tasks, ngram,
                                           shown if path == SKILL_MD else "")
        if problem is not None:
            return TRAINING_VALUE, f"{path}: {problem}"
        problem = check_no_template_text(before.get(path, ""), after[path], TEMPLATE_TEXTS)
        if problem is not None:
            return TEMPLATE_COPY, f"{path}: {problem}"
    old_yaml, old_body = split_md(before[SKILL_MD])
    new_yaml, new_body = split_md(after[SKILL_MD])
    if len(new_body) > len(old_body):  # an edit that shrinks an over-budget body is welcome
        problem = check_l2_budget(new_body, l2_max_chars)
        if problem is not None:
            return L2_BUDGET, problem
    if new_yaml != old_yaml:
        problem = check_description(_description_of(after[SKILL_MD]), desc_max_words)
        if problem is not None:
            return DESCRIPTION_RULE, problem
    for e in edits:
        if e.old == "" and e.path.startswith("references/") and f"Read {e.path} when" not in new_body:
            return DANGLING, f"creates {e.path} but SKILL.md has no line 'Read {e.path} when ...' pointing to it"
    mentioned_before = {m for text in before.values() for m in MENTION_RE.findall(text)}
    missing = sorted(m for text in after.values() for m in MENTION_RE.findall(text)
                     if m not in mentioned_before and m not in after and m not in skill.assets
                     and not any(p.startswith(m.rstrip("/") + "/") for p in after))
    if missing:
        return DANGLING, f"points to {missing[0]}, which does not exist"
    return None
