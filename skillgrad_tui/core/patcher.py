"""The patcher: pattern-by-pattern skill edits, with every rule checked in code (method.md, step 4).

For each of the heaviest patterns the model proposes two or three candidate edits; the code turns
each into exact `Edit`s, runs every check, and keeps the smallest change that passes. The rules
are never left to the prompt alone, because a small model ignores them: the edit must apply
exactly once, L1 stays one sentence of at most 50 words, L2 stays under its size budget, no
training question or answer value is copied in, no edit replaces more than half of a file, no
section heading disappears, nothing a robust preservation signal relies on is deleted, and the
edits of one proposal must apply together and leave a skill that loads.

Small models are helped by easy candidate forms that the code converts into exact edits:
{"section", "add"} appends under a section, {"description"} rewrites L1, and a structural move
(after 3+ recurrences despite in-place patches) only asks for the detail and the condition; the
code writes references/<slug>.md and the "Read references/<slug>.md when ..." pointer itself.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from skillgrad_tui.core.errors import BackendError, EditError, OutputInvalid
from skillgrad_tui.core.gradient import (NEW_SECTION, PreservationSignal, resolve_anchor,
                                        section_titles, skill_context)
from skillgrad_tui.core.llm.base import Backend, CompletionRequest
from skillgrad_tui.core.momentum import Pattern, rank_key
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.skill import SKILL_MD, Edit, Patch, Skill, apply_edits_in_memory, check_edit
from skillgrad_tui.core.textsim import (STOPWORDS, content_words, contains_phrase, ngrams, normalise_label,
                                        numbers_in, quoted_strings, slugify, truncate, words)

STRUCTURAL_RECURRENCE = 3
MAX_REWRITE_FRACTION = 0.5
_HEADING_LINE = re.compile(r"^ {0,3}#{1,6}\s+\S")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")
_MENTION = re.compile(r"(?<![\w/.-])((?:references|scripts|assets)/[\w./-]*[\w-])")
# Answers that are ordinary words: an instruction may mention them without copying a task value.
_GENERIC_ANSWERS = frozenset(
    "yes no none true false total more less same first last before after above below left right "
    "home away win loss draw male female other unknown all both neither either".split()
)


# --------------------------------------------------------------------------------------- records


@dataclass
class ProposedEdit:
    edit: Edit
    pattern_id: str
    pattern_label: str
    rationale: str
    gradients: list[str]
    tasks: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.edit.layer, "path": self.edit.path, "old": self.edit.old, "new": self.edit.new,
                "pattern": self.pattern_id, "pattern_label": self.pattern_label, "rationale": self.rationale,
                "gradients": list(self.gradients), "tasks": list(self.tasks)}


@dataclass
class Proposal:
    edits: list[ProposedEdit] = field(default_factory=list)  # passed every check; apply together, in order
    rejected: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # raw candidate, reason
    invalid_outputs: int = 0

    def to_patch(self) -> Patch:
        rationale: list[str] = []
        gradients: list[str] = []
        tasks: list[str] = []
        for pe in self.edits:
            line = f"{pe.pattern_label}: {pe.rationale}"
            if line not in rationale:
                rationale.append(line)
            gradients += [g for g in pe.gradients if g not in gradients]
            tasks += [t for t in pe.tasks if t not in tasks]
        return Patch([pe.edit for pe in self.edits], "\n".join(rationale), gradients, tasks)


class _Reject(Exception):
    """A candidate that cannot become a checked edit; the message is the reason shown to people."""


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


def check_no_training_values(new_text: str, old_text: str, train_tasks: Sequence[Task], n: int = 4) -> str | None:
    """Reject added text that copies a training task: any n words in a row from a question or an
    expected answer, a number from an expected answer, or an expected answer (or a string quoted in
    a question) of 3+ characters that the old text did not already contain."""
    chunks = _added_chunks(old_text, new_text)
    if not chunks:
        return None
    added: set[tuple[str, ...]] = set()
    for c in chunks:
        added |= {g for g in ngrams(c, n) if not all(w in STOPWORDS for w in g)}
    new_numbers = numbers_in(new_text) - numbers_in(old_text)
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


def _check_single(skill: Skill, edit: Edit, signals: Sequence[PreservationSignal]) -> str | None:
    """Checks that concern one edit against the current skill."""
    reason = check_edit(skill, edit)
    if reason is not None:
        return f"does not apply: {reason}"
    if edit.old:
        region = _split_md(skill.files[SKILL_MD])[1] if edit.layer == "L2" else skill.files.get(edit.path, "")
        replaced = _replaced_chars(edit.old, edit.new)  # an append keeps its anchor: 0 replaced
        if edit.layer != "L1" and replaced > MAX_REWRITE_FRACTION * max(len(region), 1):
            return (f"replaces {replaced} of {len(region)} characters of {edit.path}: "
                    "edits must be local, never a rewrite of the whole skill")
        if edit.layer == "L2":
            new_lines = {ln.strip() for ln in edit.new.splitlines()}
            for ln in edit.old.splitlines():
                if _HEADING_LINE.match(ln) and ln.strip() not in new_lines:
                    return f"removes the section heading {ln.strip()!r}"
    return check_preservation(skill, edit, signals)


# --------------------------------------------------------------------------------- text helpers


def _split_md(text: str) -> tuple[str, str]:
    """(front matter YAML, body) of a SKILL.md that loads (same delimiter rule as skill.py)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].lstrip("\ufeff").rstrip() != "---":
        return "", text
    offset = len(lines[0])
    for line in lines[1:]:
        if line.rstrip() == "---":
            return text[len(lines[0]) : offset], text[offset + len(line) :]
        offset += len(line)
    return "", text


def _description_of(skill_md: str) -> str:
    data = yaml.safe_load(_split_md(skill_md)[0]) or {}
    return str(data.get("description", "")) if isinstance(data, dict) else ""


def _section_span(skill: Skill, title: str, *, own_only: bool = True) -> tuple[int, int] | None:
    """0-based file line indices [heading, last line] of a section; `own_only` stops at the
    first subsection so that additions land in the section itself."""
    secs = skill.sections()
    for i, s in enumerate(secs):
        if s.title == title:
            end = s.end_line
            if own_only and i + 1 < len(secs):
                end = min(end, secs[i + 1].start_line - 1)
            return s.start_line - 1, end - 1
    return None


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _unique_tail(lines: list[str], lo: int, hi: int, region: str, nl: str) -> str | None:
    """The shortest block of lines ending at the last non-blank line of [lo, hi] that occurs
    exactly once in `region`: an exact `old` to append after."""
    k = hi
    while k >= lo and not lines[k].strip():
        k -= 1
    for start in range(k, lo - 1, -1):
        block = nl.join(lines[start : k + 1])
        if region.count(block) == 1:
            return block
    return None


def _clean_add(text: str) -> str:
    lines = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip() != "---"]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _joined(anchor_block: str, add: str, bulleted: bool, nl: str) -> str:
    """anchor_block followed by `add`, formatted to fit: a bullet list gets a bullet, prose a
    paragraph of its own (so it does not run into the previous list item)."""
    first = add.lstrip()
    if _BULLET.match(first):
        return anchor_block + nl + add.replace("\n", nl)
    if bulleted and "\n" not in add and not first.startswith("#"):
        return anchor_block + nl + "- " + add
    return anchor_block + nl + nl + add.replace("\n", nl)


def _title_of(label: str) -> str:
    return label[:1].upper() + label[1:]


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


def _yaml_scalar(text: str) -> str:
    # A plain scalar when YAML reads it back unchanged, else a JSON string (valid YAML).
    one_line = " ".join(text.split())
    try:
        if yaml.safe_load(f"k: {one_line}") == {"k": one_line}:
            return one_line
    except yaml.YAMLError:
        pass
    return json.dumps(one_line, ensure_ascii=False)


# ------------------------------------------------------------------------------ the conversions


def _append_edit(skill: Skill, section: str, add: str, pattern: Pattern) -> Edit:
    add = _clean_add(add)
    if not add:
        raise _Reject("nothing to add")
    anchor, kind = resolve_anchor(skill, section, pattern.anchor)
    if kind == "description":
        raise _Reject("the description cannot take an addition; give a new description instead")
    if kind == "file":
        text = skill.files[anchor]
        nl, lines = _newline(text), text.splitlines()
        block = _unique_tail(lines, 0, len(lines) - 1, text, nl)
        if block is None:
            raise _Reject(f"no unique line to append after in {anchor}")
        bulleted = any(_BULLET.match(ln) for ln in lines)
        return Edit("L3", anchor, block, _joined(block, add, bulleted, nl))
    text = skill.files[SKILL_MD]
    nl, lines = _newline(text), text.splitlines()
    body = _split_md(text)[1]
    body_lo = text[: len(text) - len(body)].count("\n")
    if kind == "new":
        if not add.lstrip().startswith("#"):
            single = "\n" not in add and not _BULLET.match(add)
            add = f"## {_title_of(pattern.label)}\n" + ("- " + add if single else add)
        block = _unique_tail(lines, body_lo, len(lines) - 1, body, nl)
        if block is None:
            raise _Reject("the body has no unique last line to append a new section after")
        return Edit("L2", SKILL_MD, block, block + nl + nl + add.replace("\n", nl))
    span = _section_span(skill, anchor)
    if span is None:  # pragma: no cover - resolve_anchor only returns existing titles
        raise _Reject(f"no section {anchor!r}")
    lo, hi = span
    block = _unique_tail(lines, lo, hi, body, nl)
    if block is None:
        raise _Reject(f"no unique line to append after in section {anchor!r}")
    bulleted = any(_BULLET.match(ln) for ln in lines[lo : hi + 1])
    return Edit("L2", SKILL_MD, block, _joined(block, add, bulleted, nl))


def _description_edit(skill: Skill, description: str) -> Edit:
    text = skill.files[SKILL_MD]
    yaml_text = _split_md(text)[0]
    lines = yaml_text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if re.match(r"description\s*:", line):
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                j += 1  # a folded or literal block continues on indented lines
            old = "".join(lines[i:j]).rstrip("\r\n")
            nl = _newline(text)
            return Edit("L1", SKILL_MD, old, "description: " + _yaml_scalar(description).replace("\n", nl))
    raise _Reject("front matter has no description line")


def _repair_old(region: str, old: str) -> tuple[str, bool]:
    """Small models copy text with stray spaces: find the one place it means, if there is one."""
    if region.count(old) == 1:
        return old, False
    stripped = old.strip()
    if stripped and region.count(stripped) == 1:
        return stripped, True
    toks = old.split()
    if toks:
        found = list(re.finditer(r"\s+".join(re.escape(t) for t in toks), region))
        if len(found) == 1:
            return found[0].group(0), True
    return old, False


def _explicit_edit(skill: Skill, raw: dict[str, Any]) -> Edit:
    path = str(raw["path"]).strip().lstrip("./").lstrip("/") if raw["path"] else SKILL_MD
    if path.lower() == SKILL_MD.lower():
        path = SKILL_MD
    old, new = str(raw["old"]), str(raw["new"])
    if path == SKILL_MD:
        yaml_text, body = _split_md(skill.files[SKILL_MD])
        layer = "L1" if old and old.strip() in yaml_text and old.strip() not in body else "L2"
        region = yaml_text if layer == "L1" else body
    else:
        layer, region = "L3", skill.files.get(path, "")
    if old:
        old, repaired = _repair_old(region, old)
        if repaired:
            new = new.strip()
        # "old = a heading, new = the text to add" is an append that forgot to repeat the heading.
        if _HEADING_LINE.match(old) and "\n" not in old.strip() and old.strip() not in new:
            new = old + _newline(region) + new.strip()
    return Edit(layer, path, old, new)  # type: ignore[arg-type]


def _condition(raw: str, label: str) -> str:
    c = " ".join(raw.split()).rstrip(".").strip()
    c = re.sub(r"^(?:read\s+\S+\s+)?(?:only\s+)?(?:when|if)\s+", "", c, flags=re.I)
    if len(words(c)) < 2:
        c = f"a task involves {label}"
    return c[:1].lower() + c[1:]


def _moved(line: str, covered: set[str]) -> bool:
    """A bullet whose content words the moved detail mostly repeats (70%+) leaves L2."""
    cw = set(content_words(line))
    return bool(_BULLET.match(line)) and len(cw) >= 2 and len(cw & covered) / len(cw) >= 0.7


def _structural_edits(skill: Skill, raw: dict[str, Any], pattern: Pattern, taken: set[str]) -> list[list[Edit]]:
    """Variants, preferred first: references/<slug>.md with the detail plus the pointer line in
    L2, with the anchor section's lines that the detail now covers moved out (a real move); then
    the same without removing anything (if the move breaks a rule, e.g. a preservation signal)."""
    detail = _clean_add(str(raw.get("detail", "")))
    if len(words(detail)) < 3:
        raise _Reject("structural move without detail to move")
    base = slugify(pattern.label)
    slug, k = base, 2
    while f"references/{slug}.md" in skill.files or f"references/{slug}.md" in taken:
        slug, k = f"{base}-{k}", k + 1
    path = f"references/{slug}.md"
    pointer = f"Read {path} when {_condition(str(raw.get('condition', '')), pattern.label)}."
    create = Edit("L3", path, "", f"# {_title_of(pattern.label)}\n\n{detail}\n")
    anchor, kind = resolve_anchor(skill, pattern.anchor, pattern.label)
    text = skill.files[SKILL_MD]
    nl, lines = _newline(text), text.splitlines()
    span = _section_span(skill, anchor) if kind == "section" else None
    variants: list[list[Edit]] = []
    if span is not None:
        lo, hi = span
        while hi > lo and not lines[hi].strip():
            hi -= 1
        covered = set(content_words(detail))
        kept = [lines[lo]] + [ln for ln in lines[lo + 1 : hi + 1] if not _moved(ln, covered)]
        old = nl.join(lines[lo : hi + 1])
        body = _split_md(text)[1]
        if len(kept) < hi - lo + 1 and len(old) <= MAX_REWRITE_FRACTION * len(body) and body.count(old) == 1:
            bulleted = any(_BULLET.match(ln) for ln in lines[lo + 1 : hi + 1])
            move = Edit("L2", SKILL_MD, old, _joined(nl.join(kept), pointer, bulleted, nl))
            variants.append([create, move])
    section = anchor if kind == "section" else NEW_SECTION
    variants.append([create, _append_edit(skill, section, pointer, pattern)])
    return variants


# --------------------------------------------------------------------------------- model schemas

_WHY = {"type": "string", "maxLength": 160}
_APPEND_FORM = {
    "type": "object",
    "properties": {"section": {"type": "string", "minLength": 1, "maxLength": 80},
                   "add": {"type": "string", "minLength": 1, "maxLength": 300}, "why": _WHY},
    "required": ["section", "add", "why"], "additionalProperties": False,
}
_REPLACE_FORM = {
    "type": "object",
    "properties": {"layer": {"type": "string", "enum": ["L1", "L2", "L3"]},
                   "path": {"type": "string", "maxLength": 100},
                   "old": {"type": "string", "maxLength": 400},
                   "new": {"type": "string", "maxLength": 600}, "why": _WHY},
    "required": ["layer", "path", "old", "new", "why"], "additionalProperties": False,
}
_DESCRIPTION_FORM = {
    "type": "object",
    "properties": {"description": {"type": "string", "minLength": 1, "maxLength": 300}, "why": _WHY},
    "required": ["description", "why"], "additionalProperties": False,
}
_MOVE_FORM = {
    "type": "object",
    "properties": {"detail": {"type": "string", "minLength": 1, "maxLength": 500},
                   "condition": {"type": "string", "maxLength": 100}, "why": _WHY},
    "required": ["detail", "condition", "why"], "additionalProperties": False,
}


def _candidates_schema(*forms: dict[str, Any]) -> dict[str, Any]:
    items = forms[0] if len(forms) == 1 else {"anyOf": list(forms)}
    return {"type": "object",
            "properties": {"candidates": {"type": "array", "minItems": 1, "maxItems": 3, "items": items}},
            "required": ["candidates"], "additionalProperties": False}


EDIT_SCHEMA = _candidates_schema(_APPEND_FORM, _REPLACE_FORM, _DESCRIPTION_FORM)
MOVE_SCHEMA = _candidates_schema(_MOVE_FORM)


# -------------------------------------------------------------------------------------- patcher


class Patcher:
    def __init__(self, backend: Backend, *, seed: int = 0, l2_max_chars: int = 6000, desc_max_words: int = 50,
                 max_patterns: int = 3, ngram: int = 4, max_tokens: int = 256) -> None:
        self.backend = backend
        self.seed = seed
        self.l2_max_chars = l2_max_chars
        self.desc_max_words = desc_max_words
        self.max_patterns = max_patterns
        self.ngram = ngram
        self.max_tokens = max_tokens

    @staticmethod
    def is_structural(pattern: Pattern) -> bool:
        """A body (L2) pattern that recurred in 3+ steps although it was patched in place before;
        L1 and L3 patterns have nothing to move out of the body."""
        return (pattern.layer == "L2" and pattern.recurrence >= STRUCTURAL_RECURRENCE
                and pattern.patch_attempts > 0)

    def propose(self, skill: Skill, patterns: list[Pattern], preservation: list[PreservationSignal],
                train_tasks: list[Task], step: int) -> Proposal:
        proposal = Proposal()
        accepted: list[Edit] = []
        order = sorted(patterns, key=rank_key)[: self.max_patterns]
        for pattern in order:
            structural = self.is_structural(pattern)
            schema = MOVE_SCHEMA if structural else EDIT_SCHEMA
            raws = self._ask(skill, self.prompt(skill, pattern, preservation, structural), schema, pattern, proposal)
            scored: list[tuple[int, int, int, dict[str, Any], list[Edit]]] = []
            for i, raw in enumerate(raws):
                try:
                    variants = self._convert(skill, raw, pattern, structural, accepted)
                except _Reject as exc:
                    proposal.rejected.append(({**raw, "pattern": pattern.id}, str(exc)))
                    continue
                # Candidates compete on the size of their preferred variant; a fallback variant
                # of one candidate is tried right after it.
                size = _change_size(variants[0])
                scored += [(size, i, j, raw, edits) for j, edits in enumerate(variants)]
            for *_, raw, edits in sorted(scored, key=lambda s: s[:3]):
                reason = self.check(skill, edits, accepted, preservation, train_tasks)
                if reason is not None:
                    proposal.rejected.append(({**raw, "pattern": pattern.id}, reason))
                    continue
                accepted.extend(edits)
                why = truncate(str(raw.get("why", "")), 200) or pattern.latest_action
                if structural:
                    why = f"structural move after {pattern.recurrence} recurrences: {why}"
                for e in edits:
                    proposal.edits.append(ProposedEdit(e, pattern.id, pattern.label, why,
                                                       pattern.gradient_ids(), pattern.tasks()))
                break  # the simplest passing candidate wins; the others are alternatives, not additions
        return proposal

    def _ask(self, skill: Skill, user: str, schema: dict[str, Any], pattern: Pattern,
             proposal: Proposal) -> list[dict[str, Any]]:
        request = CompletionRequest.chat(("system", skill_context(skill)), ("user", user), json_schema=schema,
                                         max_tokens=self.max_tokens, seed=self.seed)
        try:
            completion = self.backend.complete(request)
        except OutputInvalid as exc:
            proposal.invalid_outputs += exc.attempts
            proposal.rejected.append(({"pattern": pattern.id}, f"model output invalid: {exc}"))
            return []
        except BackendError as exc:
            proposal.rejected.append(({"pattern": pattern.id}, f"model call failed: {exc}"))
            return []
        proposal.invalid_outputs += completion.invalid_outputs
        if completion.finish_reason == "cancelled" or not isinstance(completion.json, dict):
            return []
        return [c for c in completion.json.get("candidates", []) if isinstance(c, dict)]

    def _convert(self, skill: Skill, raw: dict[str, Any], pattern: Pattern, structural: bool,
                 accepted: list[Edit]) -> list[list[Edit]]:
        """Exact edits for one raw candidate: a list of variants, each a list of edits."""
        if structural:
            taken = {e.path for e in accepted if e.old == ""}
            return _structural_edits(skill, raw, pattern, taken)
        if "section" in raw and "add" in raw:
            return [[_append_edit(skill, str(raw["section"]), str(raw["add"]), pattern)]]
        if "description" in raw:
            return [[_description_edit(skill, str(raw["description"]))]]
        if {"path", "old", "new"} <= raw.keys():
            return [[_explicit_edit(skill, raw)]]
        raise _Reject("candidate has none of the accepted forms")

    def check(self, skill: Skill, edits: list[Edit], accepted: list[Edit],
              preservation: Sequence[PreservationSignal], train_tasks: Sequence[Task]) -> str | None:
        """None when `edits`, applied after the already accepted ones, pass every rule; else why not."""
        for e in edits:
            reason = _check_single(skill, e, preservation)
            if reason is not None:
                return reason
        try:
            before = {**skill.files, **(apply_edits_in_memory(skill, accepted) if accepted else {})}
            after = {**skill.files, **apply_edits_in_memory(skill, accepted + edits)}
        except EditError as exc:
            what = "conflicts with an earlier edit of this proposal" if accepted else "does not apply with its pair"
            return f"{what}: {exc}"
        for path in sorted(p for p in after if after[p] != before.get(p)):
            reason = check_no_training_values(after[path], before.get(path, ""), train_tasks, self.ngram)
            if reason is not None:
                return f"{path}: {reason}"
        old_yaml, old_body = _split_md(before[SKILL_MD])
        new_yaml, new_body = _split_md(after[SKILL_MD])
        if len(new_body) > len(old_body):  # an edit that shrinks an over-budget body is welcome
            reason = check_l2_budget(new_body, self.l2_max_chars)
            if reason is not None:
                return reason
        if new_yaml != old_yaml:
            reason = check_description(_description_of(after[SKILL_MD]), self.desc_max_words)
            if reason is not None:
                return reason
        for e in edits:
            if e.old == "" and e.path.startswith("references/") and f"Read {e.path} when" not in new_body:
                return f"creates {e.path} but SKILL.md has no line 'Read {e.path} when ...' pointing to it"
        mentioned_before = {m for text in before.values() for m in _MENTION.findall(text)}
        missing = sorted(m for text in after.values() for m in _MENTION.findall(text)
                         if m not in mentioned_before and m not in after and m not in skill.assets
                         and not any(p.startswith(m.rstrip("/") + "/") for p in after))
        if missing:
            return f"points to {missing[0]}, which does not exist"
        return None

    def prompt(self, skill: Skill, pattern: Pattern, preservation: Sequence[PreservationSignal],
               structural: bool) -> str:
        anchor, kind = resolve_anchor(skill, pattern.anchor, pattern.label)
        if kind == "file":
            where, shown = f"file {anchor} (L3)", skill.files[anchor]
        elif kind == "section":
            span = _section_span(skill, anchor)
            lines = skill.files[SKILL_MD].splitlines()
            where = f"section {anchor!r} of SKILL.md (L2)"
            shown = "\n".join(lines[span[0] : span[1] + 1]).strip() if span else ""
        elif kind == "description":
            where, shown = "the description (L1)", _description_of(skill.files[SKILL_MD])
        else:
            where, shown = "a new section of SKILL.md (L2)", "Sections: " + "; ".join(section_titles(skill))
        history = [e["text"] for e in pattern.log if e.get("event") == "patch_failed"][-2:]
        keep = [s.what_helped for s in preservation if s.robust][:3]
        body_len = len(_split_md(skill.files[SKILL_MD])[1])
        head = (f"Failure pattern {pattern.id}, seen in {len(pattern.tasks())} task(s) over {pattern.recurrence} "
                f"step(s): {pattern.label}\nWhere: {where}\nWhat goes wrong: {pattern.description}\n"
                f"Latest diagnosis: {pattern.latest_action}\n")
        if history:
            head += "Edits tried before and rolled back: " + " / ".join(truncate(h, 120) for h in history) + "\n"
        if keep:
            head += "Do not remove what helped other tasks: " + " / ".join(truncate(k, 120) for k in keep) + "\n"
        if len(shown) > 1200:  # cut by characters, not truncate(): the model must see exact lines
            shown = shown[:1200].rsplit("\n", 1)[0] + "\n[...]"
        head += f"Current text:\n<<<\n{shown}\n>>>\n"
        rules = ("Rules: general advice that holds for any task, never names, numbers or answers from tasks; "
                 f"short; never rewrite the skill; SKILL.md body stays under {self.l2_max_chars} characters "
                 f"(now {body_len}).\n")
        if structural:
            return (head + f"This pattern keeps failing after {pattern.patch_attempts} in-place edit(s). Move its "
                    "detail into a new reference file that the agent reads only when needed.\n" + rules +
                    'Reply with JSON {"candidates": [...]}, 1 to 3 items {"detail": "<the guidance, a few '
                    'lines>", "condition": "<when to read it>", "why": "<reason>"}.')
        return (head + "Fix the gap with a small edit.\n" + rules +
                'Reply with JSON {"candidates": [...]}, 2 or 3 alternatives, each one of:\n'
                '{"section": "<section title>", "add": "<a line to add>", "why": "<reason>"}\n'
                '{"layer": "L2", "path": "SKILL.md", "old": "<exact text>", "new": "<replacement>", '
                '"why": "<reason>"}\n'
                '{"description": "<new one-sentence description>", "why": "<reason>"} (only if the skill '
                "is not picked for such tasks)")


__all__ = [
    "EDIT_SCHEMA", "MOVE_SCHEMA", "Patcher", "Proposal", "ProposedEdit",
    "check_description", "check_l2_budget", "check_no_training_values", "check_preservation",
]
