"""The patcher: pattern-by-pattern skill edits, with every rule checked in code (method.md, step 4).

For each of the heaviest patterns the model picks one to three edits from a menu built from the
skill (edit_menu.py): a section, an operation and an anchor chosen from enums of what really
exists, and only the new text free, so every answer the schema admits is an edit that applies.
The code then runs every check, because a small model ignores rules it is only told: L1 stays
one sentence of at most 50 words, L2 stays under its size budget, no training question or
answer value is copied in, no edit replaces more than half of a file, no section heading
disappears, nothing a robust preservation signal relies on is deleted, and the edits of one
candidate must apply together and leave a skill that loads. A structural move (after 3+
recurrences despite in-place patches) only asks for the detail and the condition; the code
writes references/<slug>.md and the "Read references/<slug>.md when ..." pointer itself.

`propose` returns a pool of candidate skills for the optimiser (GEPA-style): candidate 0 combines
each pattern's simplest passing edit; the next ones are single alternatives (another edit for one
pattern, or one pattern's edit alone), and, when there are too few, edits sampled again at a
higher temperature. Every answer is counted: proposed, applied (became an edit that applies),
no change, passed the checks, rejected by reason.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from skillgrad_tui.core.edit_menu import (INSERT_AFTER, MOVE, EditMenu, NoChange, split_md)
from skillgrad_tui.core.errors import BackendError, EditError, OutputInvalid
from skillgrad_tui.core.failures import class_by_label
from skillgrad_tui.core.gradient import PreservationSignal, resolve_anchor, skill_context
from skillgrad_tui.core.llm.base import Backend, CompletionRequest
from skillgrad_tui.core.momentum import Pattern, rank_key
from skillgrad_tui.core.payloads import ProposedEditPayload
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.template_text import check_no_template_text
from skillgrad_tui.core.skill import SKILL_MD, Edit, Patch, Skill, apply_edits_in_memory, check_edit
from skillgrad_tui.core.textsim import (STOPWORDS, content_words, contains_phrase, ngrams, normalise_label,
                                        numbers_in, quoted_strings, truncate, words)

STRUCTURAL_RECURRENCE = 3
MAX_REWRITE_FRACTION = 0.5
SAMPLE_TEMPERATURE = 0.8  # extra candidates are sampled; the first answer per pattern is greedy
_HEADING_LINE = re.compile(r"^ {0,3}#{1,6}\s+\S")
_MENTION = re.compile(r"(?<![\w/.-])((?:references|scripts|assets)/[\w./-]*[\w-])")
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

# The fixed words of the patcher's prompt. An edit that copies them (or a <placeholder>) is rejected:
# check_no_template_text. The failure class's rule, offered as the example's text, is not among them.
RULES = ("Rules: general advice that holds for any task, never names, numbers or answers from tasks; "
         "short; never rewrite the skill; SKILL.md body stays under {limit} characters (now {now}).\n")
MOVE_ASK = ("This pattern keeps failing after {attempts} in-place edit(s). Move its detail into a new reference "
            "file that the agent reads only when needed.\n")
MOVE_REPLY = ('Reply with JSON {"candidates": [...]}, 1 to 3 items {"section": "<the section>", "op": '
              '"move_to_references", "condition": "<when to read it>", "text": "<the guidance, a few lines>", '
              '"why": "<reason>"}.\nExample: ')
EDIT_ASK = "Fix the gap with a small edit.\n"
EDIT_REPLY = ('Reply with JSON {"candidates": [...]}, 1 to 3 alternatives, each {"section", "op", "anchor", '
              '"text", "why"}: section = a section or file named above; op = insert_after (add text after the '
              "anchor line), replace (the anchor line by text), delete (the anchor line), new_section (with a "
              '"title" instead of an anchor) or new_description; anchor = the start of a line of that section, '
              "as shown; text = the new text.\nExample: ")
RULE_PLACEHOLDER = "<one short general rule>"
TEMPLATE_TEXTS = (RULES, MOVE_ASK, MOVE_REPLY, EDIT_ASK, EDIT_REPLY, RULE_PLACEHOLDER)
Rejection = tuple[str, str]  # (key, message)


# --------------------------------------------------------------------------------------- records


@dataclass
class ProposedEdit:
    edit: Edit
    pattern_id: str
    pattern_label: str
    rationale: str
    gradients: list[str]
    tasks: list[str]

    def to_dict(self) -> ProposedEditPayload:
        return {"layer": self.edit.layer, "path": self.edit.path, "old": self.edit.old, "new": self.edit.new,
                "pattern": self.pattern_id, "pattern_label": self.pattern_label, "rationale": self.rationale,
                "gradients": list(self.gradients), "tasks": list(self.tasks)}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "ProposedEdit":
        return ProposedEdit(Edit(d["layer"], d["path"], d["old"], d["new"]), d["pattern"], d["pattern_label"],
                            d.get("rationale", ""), list(d.get("gradients", [])), list(d.get("tasks", [])))


@dataclass
class Proposal:
    """The candidates of one step and the account of how they came about."""

    candidates: list[list[ProposedEdit]] = field(default_factory=list)  # each applies together, in order
    origins: list[str] = field(default_factory=list)  # how each candidate was made
    rejected: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # raw answer (+reason_key), reason
    invalid_outputs: int = 0
    proposed: int = 0  # answers the model gave (each one a proposed edit)
    applied: int = 0  # answers that became edits that apply to the skill
    passed: int = 0  # ... and passed every check

    @property
    def edits(self) -> list[ProposedEdit]:
        """Candidate 0: each pattern's simplest passing edit, together."""
        return self.candidates[0] if self.candidates else []

    def reject(self, raw: Mapping[str, Any], key: str, message: str) -> None:
        self.rejected.append(({**raw, "reason_key": key}, message))

    def reasons(self) -> Counter[str]:
        return Counter(raw.get("reason_key", "other") for raw, _ in self.rejected)

    def to_patch(self, index: int = 0) -> Patch:
        rationale: list[str] = []
        gradients: list[str] = []
        tasks: list[str] = []
        chosen = self.candidates[index] if self.candidates else []
        for pe in chosen:
            line = f"{pe.pattern_label}: {pe.rationale}"
            if line not in rationale:
                rationale.append(line)
            gradients += [g for g in pe.gradients if g not in gradients]
            tasks += [t for t in pe.tasks if t not in tasks]
        return Patch([pe.edit for pe in chosen], "\n".join(rationale), gradients, tasks)


# ---------------------------------------------------------------------------------------- checks


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
            span = _section_span(skill, s.anchor, own_only=False)
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


def _check_single(skill: Skill, edit: Edit, signals: Sequence[PreservationSignal]) -> Rejection | None:
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


def _section_span(skill: Skill, title: str, *, own_only: bool = True) -> tuple[int, int] | None:
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


# --------------------------------------------------------------------------------- text helpers


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


def _change_size(edits: Sequence[Edit]) -> int:
    """Characters removed plus added: the smallest change is the simplest candidate."""
    return sum(len(e.old) + len(e.new) - 2 * _common_ends(e.old, e.new) for e in edits)


def _description_of(skill_md: str) -> str:
    data = yaml.safe_load(split_md(skill_md)[0]) or {}
    return str(data.get("description", "")) if isinstance(data, dict) else ""


# -------------------------------------------------------------------------------------- patcher


@dataclass
class _Option:
    """One answer that passed every check on its own: a possible candidate."""

    pattern: Pattern
    raw: dict[str, Any]
    edits: list[Edit]
    why: str


class Patcher:
    def __init__(self, backend: Backend, *, seed: int = 0, l2_max_chars: int = 6000, desc_max_words: int = 50,
                 max_patterns: int = 3, ngram: int = 4, max_tokens: int = 256, max_blocks: int = 40) -> None:
        self.backend = backend
        self.seed = seed
        self.l2_max_chars = l2_max_chars
        self.desc_max_words = desc_max_words
        self.max_patterns = max_patterns
        self.ngram = ngram
        self.max_tokens = max_tokens
        self.max_blocks = max_blocks

    @staticmethod
    def is_structural(pattern: Pattern) -> bool:
        """A body (L2) pattern that recurred in 3+ steps although it was patched in place before;
        L1 and L3 patterns have nothing to move out of the body."""
        return (pattern.layer == "L2" and pattern.recurrence >= STRUCTURAL_RECURRENCE
                and pattern.patch_attempts > 0)

    def menu(self, skill: Skill, pattern: Pattern) -> EditMenu:
        anchor, kind = resolve_anchor(skill, pattern.anchor, pattern.label)
        focus = anchor if kind == "section" or (kind == "file" and anchor in skill.l3_docs) else None
        return EditMenu(skill, focus=focus, structural=self.is_structural(pattern), max_blocks=self.max_blocks)

    def propose(self, skill: Skill, patterns: list[Pattern], preservation: list[PreservationSignal],
                train_tasks: list[Task], step: int, candidates: int = 1) -> Proposal:
        """Up to `candidates` candidate skills (as edit lists) for the heaviest patterns."""
        proposal = Proposal()
        order = sorted(patterns, key=rank_key)[: self.max_patterns]
        options = [self._options(skill, p, preservation, train_tasks, proposal, self.seed, 0.0) for p in order]
        seen: set[frozenset[tuple[str, str]]] = set()

        def add(chosen: list[_Option], origin: str) -> None:
            if len(proposal.candidates) >= candidates or not chosen:
                return
            edits = [e for o in chosen for e in o.edits]
            result = frozenset(apply_edits_in_memory(skill, edits).items())
            if result in seen:
                return
            seen.add(result)
            proposal.candidates.append([self._proposed(o, e) for o in chosen for e in o.edits])
            proposal.origins.append(origin)

        # Candidate 0: the simplest passing edit of each pattern, checked together.
        combined: list[_Option] = []
        accepted: list[Edit] = []
        for opts in options:
            for o in opts:
                why = self.check(skill, o.edits, accepted, preservation, train_tasks)
                if why is None:
                    combined.append(o)
                    accepted += o.edits
                    break
                proposal.reject({**o.raw, "pattern": o.pattern.id}, *why)
        add(combined, "each pattern's simplest edit")
        # Then alternatives: another edit for one pattern, then one pattern's edit alone.
        for level in range(1, 3):
            for opts in options:
                if level < len(opts):
                    add([opts[level]], f"alternative {level + 1} for {opts[level].pattern.id}")
        if len(order) > 1:
            for opts in options:
                if opts:
                    add([opts[0]], f"{opts[0].pattern.id} alone")
        # Too few: sample more answers, one pattern at a time, heaviest first.
        extra, calls = 0, candidates - len(proposal.candidates)  # one more call per missing candidate, at most
        while len(proposal.candidates) < candidates and order and extra < calls:
            pattern = order[extra % len(order)]
            extra += 1
            for o in self._options(skill, pattern, preservation, train_tasks, proposal,
                                   self.seed + 1000 * extra, SAMPLE_TEMPERATURE):
                add([o], f"sample {extra} for {pattern.id}")
        return proposal

    def _proposed(self, o: _Option, e: Edit) -> ProposedEdit:
        why = o.why
        if self.is_structural(o.pattern):
            why = f"structural move after {o.pattern.recurrence} recurrences: {why}"
        return ProposedEdit(e, o.pattern.id, o.pattern.label, why, o.pattern.gradient_ids(), o.pattern.tasks())

    def _options(self, skill: Skill, pattern: Pattern, preservation: Sequence[PreservationSignal],
                 train_tasks: Sequence[Task], proposal: Proposal, seed: int, temperature: float) -> list[_Option]:
        """The model's answers for one pattern that pass every check alone, simplest first."""
        menu = self.menu(skill, pattern)
        raws = self._ask(skill, self.prompt(skill, pattern, preservation, menu), menu.schema(), pattern,
                         proposal, seed, temperature)
        scored: list[tuple[int, int, int, dict[str, Any], list[Edit]]] = []
        for i, raw in enumerate(raws):
            proposal.proposed += 1
            tagged = {**raw, "pattern": pattern.id}
            try:
                variants = menu.convert(raw, pattern.label)
                apply_edits_in_memory(skill, variants[0])
            except NoChange as exc:
                proposal.reject(tagged, NO_CHANGE, str(exc))
                continue
            except EditError as exc:  # never expected: the menu only offers edits that apply
                proposal.reject(tagged, DOES_NOT_APPLY, f"does not apply: {exc}")
                continue
            proposal.applied += 1
            size = _change_size(variants[0])  # fallback variants are tried right after their answer
            scored += [(size, i, j, raw, edits) for j, edits in enumerate(variants)]
        out: list[_Option] = []
        done: set[int] = set()
        last = {i: j for _, i, j, _, _ in scored}  # the last variant of each answer
        for _, i, j, raw, edits in sorted(scored, key=lambda s: s[:3]):
            if i in done:
                continue
            why = self.check(skill, edits, [], preservation, train_tasks)
            if why is not None:
                if j == last[i]:  # no fallback variant left to try
                    proposal.reject({**raw, "pattern": pattern.id}, *why)
                    done.add(i)
                continue
            done.add(i)
            proposal.passed += 1
            out.append(_Option(pattern, raw, edits, truncate(str(raw.get("why", "")), 200) or pattern.latest_action))
        return out

    def _ask(self, skill: Skill, user: str, schema: dict[str, Any], pattern: Pattern, proposal: Proposal,
             seed: int, temperature: float) -> list[dict[str, Any]]:
        request = CompletionRequest.chat(("system", skill_context(skill)), ("user", user), json_schema=schema,
                                         max_tokens=self.max_tokens, seed=seed, temperature=temperature)
        try:
            completion = self.backend.complete(request)
        except OutputInvalid as exc:
            proposal.invalid_outputs += exc.attempts
            proposal.reject({"pattern": pattern.id}, MODEL_INVALID, f"model output invalid: {exc}")
            return []
        except BackendError as exc:
            proposal.reject({"pattern": pattern.id}, MODEL_FAILED, f"model call failed: {exc}")
            return []
        proposal.invalid_outputs += completion.invalid_outputs
        if completion.finish_reason == "cancelled" or not isinstance(completion.json, dict):
            return []
        return [c for c in completion.json.get("candidates", []) if isinstance(c, dict)]

    def check(self, skill: Skill, edits: list[Edit], accepted: list[Edit],
              preservation: Sequence[PreservationSignal], train_tasks: Sequence[Task],
              shown: str = "") -> Rejection | None:
        """None when `edits`, applied after the already accepted ones, pass every rule; else why not.
        `shown`: a code-made worked example among the edits (see check_no_training_values)."""
        for e in edits:
            reason = _check_single(skill, e, preservation)
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
            problem = check_no_training_values(after[path], before.get(path, ""), train_tasks, self.ngram,
                                               shown if path == SKILL_MD else "")
            if problem is not None:
                return TRAINING_VALUE, f"{path}: {problem}"
            problem = check_no_template_text(before.get(path, ""), after[path], TEMPLATE_TEXTS)
            if problem is not None:
                return TEMPLATE_COPY, f"{path}: {problem}"
        old_yaml, old_body = split_md(before[SKILL_MD])
        new_yaml, new_body = split_md(after[SKILL_MD])
        if len(new_body) > len(old_body):  # an edit that shrinks an over-budget body is welcome
            problem = check_l2_budget(new_body, self.l2_max_chars)
            if problem is not None:
                return L2_BUDGET, problem
        if new_yaml != old_yaml:
            problem = check_description(_description_of(after[SKILL_MD]), self.desc_max_words)
            if problem is not None:
                return DESCRIPTION_RULE, problem
        for e in edits:
            if e.old == "" and e.path.startswith("references/") and f"Read {e.path} when" not in new_body:
                return DANGLING, f"creates {e.path} but SKILL.md has no line 'Read {e.path} when ...' pointing to it"
        mentioned_before = {m for text in before.values() for m in _MENTION.findall(text)}
        missing = sorted(m for text in after.values() for m in _MENTION.findall(text)
                         if m not in mentioned_before and m not in after and m not in skill.assets
                         and not any(p.startswith(m.rstrip("/") + "/") for p in after))
        if missing:
            return DANGLING, f"points to {missing[0]}, which does not exist"
        return None

    def prompt(self, skill: Skill, pattern: Pattern, preservation: Sequence[PreservationSignal],
               menu: EditMenu | None = None) -> str:
        menu = menu or self.menu(skill, pattern)
        history = [e["text"] for e in pattern.log if e.get("event") == "patch_failed"][-2:]
        keep = [s.what_helped for s in preservation if s.robust][:3]
        body_len = len(split_md(skill.files[SKILL_MD])[1])
        head = (f"Failure pattern {pattern.id}, seen in {len(pattern.tasks())} task(s) over {pattern.recurrence} "
                f"step(s): {pattern.label}\nWhat goes wrong: {pattern.description}\n"
                f"Latest diagnosis: {pattern.latest_action}\n")
        if history:
            head += "Edits tried before and rolled back: " + " / ".join(truncate(h, 120) for h in history) + "\n"
        if keep:
            head += "Do not remove what helped other tasks: " + " / ".join(truncate(k, 120) for k in keep) + "\n"
        head += menu.describe() + "\n"
        rules = RULES.format(limit=self.l2_max_chars, now=body_len)
        example = self._example(menu, pattern)
        if menu.structural:
            return head + MOVE_ASK.format(attempts=pattern.patch_attempts) + rules + MOVE_REPLY + example
        return head + EDIT_ASK + rules + EDIT_REPLY + example

    def _example(self, menu: EditMenu, pattern: Pattern) -> str:
        """One valid answer, with the failure class's usual fix as its text (a small model copies
        examples; the gate decides whether the copy helps)."""
        cls = class_by_label(pattern.label)
        text = cls.rule if cls is not None and cls.rule else RULE_PLACEHOLDER
        target = menu.focus if menu.focus in menu.targets else next(
            (t for t, bs in menu.targets.items() if bs and bs[0].layer == "L2"), None)
        if target is None:
            return json.dumps({"candidates": [{"section": "new section", "op": "new_section",
                                               "title": pattern.label, "text": text, "why": "fix"}]})
        if menu.structural:
            return json.dumps({"candidates": [{"section": target, "op": MOVE, "condition": "a task needs it",
                                               "text": text, "why": "move"}]})
        anchor = menu.targets[target][-1].key
        return json.dumps({"candidates": [{"section": target, "op": INSERT_AFTER, "anchor": anchor, "text": text,
                                           "why": "fix"}]})


__all__ = [
    "Patcher", "Proposal", "ProposedEdit", "check_description", "check_l2_budget", "check_no_training_values",
    "check_preservation",
]
