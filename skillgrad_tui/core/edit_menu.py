"""Edits that cannot miss: the patcher's JSON schema is built from the skill in front of it.

A small model asked for `{"old": "<exact text>", "new": ...}` names sections that do not exist
and quotes text that is not in the skill; none of it applies. Here the model chooses instead of
quoting: the target is an enum of the skill's real section titles and reference files (plus
"new section" and "description"), the operation is one of a fixed set, and the anchor is an enum
of the target's real blocks (a heading, a list item with its continuation lines, a paragraph, a
fenced block), each named by the start of its first line. Only the new text is free. The code
turns a valid answer into an `Edit` whose `old` is an exact, unique span of the file, so every
answer the schema admits applies (the content checks in patcher.py still decide whether it is a
good edit). The only answers that give no edit are the ones that would change nothing (new text
equal to the old, or empty after cleaning); `NoChange` says so.

Grammar size: llama.cpp spells every enum value and every branch of the schema as grammar rules.
Only the target the pattern concerns (the focus) lists all of its blocks (at most `max_blocks`);
every other target offers its heading and its last block, which is enough to add a line at its
start or end. bench/bench_edit_grammar.py measures grammar build time and per-token cost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skillgrad_tui.core.edit_blocks import (BULLET, Block, NoChange, clean_text, description_edit, joined, key_text,
                                            markdown_blocks, newline, occurrences, split_md, title_of)
from skillgrad_tui.core.skill import SKILL_MD, Edit, Layer, Skill
from skillgrad_tui.core.textsim import content_words, slugify, words

# split_md and NoChange now live in edit_blocks.py; they are still imported from here.
__all__ = ["DELETE", "DESCRIPTION_TARGET", "EditMenu", "INSERT_AFTER", "MAX_REWRITE_FRACTION", "MOVE",
           "NEW_DESCRIPTION", "NEW_SECTION", "NEW_SECTION_TARGET", "NoChange", "OPERATIONS", "PREAMBLE_TARGET",
           "REPLACE", "TEXT_MAX", "WHY_MAX", "branch_for", "scripted_answer", "split_md"]

INSERT_AFTER = "insert_after"
REPLACE = "replace"
DELETE = "delete"
NEW_SECTION = "new_section"
NEW_DESCRIPTION = "new_description"
MOVE = "move_to_references"
OPERATIONS = (INSERT_AFTER, REPLACE, DELETE, NEW_SECTION, NEW_DESCRIPTION, MOVE)
NEW_SECTION_TARGET = "new section"
DESCRIPTION_TARGET = "description"
PREAMBLE_TARGET = "(start of the body)"
TEXT_MAX = 400
WHY_MAX = 60  # kept in the grammar (<= GRAMMAR_MAX_LENGTH): a rambling reason costs tokens
MAX_REWRITE_FRACTION = 0.5

# ------------------------------------------------------------------------------------- menu


@dataclass
class EditMenu:
    """The targets, operations and anchors a model may choose from for one skill."""

    skill: Skill
    focus: str | None = None  # the target whose every block is offered
    max_blocks: int = 40
    structural: bool = False  # only "move to references" (a pattern that keeps recurring)
    description: bool = True
    full: bool = False  # offer every block of every target (grammar grows with the skill; for benchmarks)
    targets: dict[str, list[Block]] = field(default_factory=dict)  # offered anchors per target
    all_blocks: dict[str, list[Block]] = field(default_factory=dict)  # every block per target

    def __post_init__(self) -> None:
        self._read_skill_md()
        for path in (p for p in self.skill.l3_docs if p.endswith((".md", ".markdown", ".txt"))):
            text = self.skill.files[path]
            self._add_blocks(path, "L3", text, 0, len(text), lambda _line: path)
        for target, blocks in self.all_blocks.items():
            if self.full:
                self.targets[target] = blocks
            elif target == self.focus:
                self.targets[target] = blocks[: self.max_blocks]
            else:
                ends = [blocks[0]] + ([blocks[-1]] if len(blocks) > 1 else [])
                self.targets[target] = ends
        for target, blocks in self.targets.items():
            self.targets[target] = _with_unique_keys(blocks)

    def _read_skill_md(self) -> None:
        text = self.skill.files[SKILL_MD]
        body = split_md(text)[1]
        lo = len(text) - len(body)
        sections = self.skill.sections()

        def section_of(line_no: int) -> str:
            title = PREAMBLE_TARGET
            for s in sections:
                if s.start_line <= line_no and s.title:
                    title = s.title
            return title

        self._add_blocks(SKILL_MD, "L2", text, lo, len(text), section_of)

    def _add_blocks(self, path: str, layer: Layer, text: str, lo: int, hi: int,
                    target_of: Callable[[int], str]) -> None:
        for s, e, heading, bullet in markdown_blocks(text, lo, hi):
            target = target_of(text.count("\n", 0, s) + 1)
            self.all_blocks.setdefault(target, []).append(
                Block(key_text(text[s:e].splitlines()[0]), path, layer, s, e, heading, bullet, target))

    # -- what the model sees ----------------------------------------------------------------------

    @property
    def body_text(self) -> str:
        return split_md(self.skill.files[SKILL_MD])[1]

    def can_add_section(self) -> bool:
        return bool(self.body_text.strip())

    def section_titles(self) -> list[str]:
        return [t for t, bs in self.targets.items() if bs and bs[0].layer == "L2"]

    def schema(self, max_items: int = 3) -> dict[str, Any]:
        text = {"type": "string", "minLength": 1, "maxLength": TEXT_MAX}
        why = {"type": "string", "maxLength": WHY_MAX}
        branches: list[dict[str, Any]] = []

        def branch(**props: Any) -> None:
            props["why"] = why
            branches.append({"type": "object", "properties": props, "required": list(props),
                             "additionalProperties": False})

        for target, blocks in self.targets.items():
            if self.structural:
                if blocks and blocks[0].layer == "L2" and blocks[0].heading:
                    branch(section={"const": target}, op={"const": MOVE},
                           condition={"type": "string", "maxLength": 120}, text=text)
                continue
            branch(section={"const": target}, op={"const": INSERT_AFTER},
                   anchor={"enum": [b.key for b in blocks]}, text=text)
            body = [b.key for b in blocks if not b.heading]
            if body:
                branch(section={"const": target}, op={"enum": [REPLACE, DELETE]}, anchor={"enum": body},
                       text={"type": "string", "maxLength": TEXT_MAX})
        if not self.structural:
            if self.can_add_section():
                branch(section={"const": NEW_SECTION_TARGET}, op={"const": NEW_SECTION},
                       title={"type": "string", "minLength": 3, "maxLength": 60}, text=text)
            if self.description:
                branch(section={"const": DESCRIPTION_TARGET}, op={"const": NEW_DESCRIPTION},
                       text={"type": "string", "minLength": 1, "maxLength": 300})
        if not branches:  # a structural pattern without a section to move: plain additions instead
            return EditMenu(self.skill, self.focus, self.max_blocks, False, self.description).schema(max_items)
        items: dict[str, Any] = branches[0] if len(branches) == 1 else {"anyOf": branches}
        return {"type": "object",
                "properties": {"candidates": {"type": "array", "minItems": 1, "maxItems": max_items,
                                              "items": items}},
                "required": ["candidates"], "additionalProperties": False}

    def describe(self, max_chars: int = 1600) -> str:
        """The focus target's text (so the model sees the lines its anchors start with) and the
        other targets by name."""
        lines: list[str] = []
        if self.focus in self.targets:
            blocks = self.targets[self.focus]
            file_text = self.skill.files[blocks[0].path]
            shown = "\n".join(file_text[b.start : b.end] for b in blocks)
            if len(shown) > max_chars:
                shown = shown[:max_chars].rsplit("\n", 1)[0] + "\n[...]"
            where = f"file {self.focus}" if blocks[0].layer == "L3" else f"section {self.focus!r}"
            lines += [f"Text of {where}:", "<<<", shown, ">>>"]
        others = [t for t in self.targets if t != self.focus]
        if others:
            lines.append("Other sections and files: " + "; ".join(others))
        return "\n".join(lines)

    # -- answer -> edits ---------------------------------------------------------------------------

    def block(self, target: str, key: str) -> Block:
        for b in self.targets.get(target, []):
            if b.key == key:
                return b
        raise NoChange(f"no anchor {key!r} in {target!r}")  # only for answers outside the schema

    def convert(self, answer: dict[str, Any], label: str = "") -> list[list[Edit]]:
        """Exact edits for one schema-valid answer, as variants (preferred first); NoChange when
        the answer would change nothing."""
        op, target = str(answer.get("op")), str(answer.get("section"))
        if op == NEW_DESCRIPTION:
            desc = " ".join(clean_text(answer.get("text", "")).split())
            if not desc or desc == " ".join(self.skill.description.split()):
                raise NoChange("the new description is empty or the same as the old one")
            return [[description_edit(self.skill, desc)]]
        if op == NEW_SECTION:
            return [[self._new_section(str(answer.get("title", "")), str(answer.get("text", "")), label)]]
        if op == MOVE:
            return self._move(target, str(answer.get("text", "")), str(answer.get("condition", "")), label)
        block = self.block(target, str(answer.get("anchor")))
        if op == INSERT_AFTER:
            return [[self._insert_after(block, str(answer.get("text", "")))]]
        if op in (REPLACE, DELETE):
            new = "" if op == DELETE else clean_text(answer.get("text", ""))
            return [[self._replace(block, new)]]
        raise NoChange(f"unknown operation {op!r}")

    def _region(self, path: str) -> tuple[str, int, int]:
        text = self.skill.files[path]
        if path == SKILL_MD:
            body = split_md(text)[1]
            return text, len(text) - len(body), len(text)
        return text, 0, len(text)

    def _span_edit(self, path: str, layer: Layer, a: int, b: int, new: str) -> Edit:
        """Replace text[a:b] by `new`, with `old` widened by whole lines until it is unique."""
        text, lo, hi = self._region(path)
        region = text[lo:hi]
        s, e = a, b
        while occurrences(region, text[s:e]) != 1:
            if s > lo:
                s = text.rfind("\n", lo, s - 1) + 1 if s - 1 > lo else lo
                s = max(s, lo)
            elif e < hi:
                nxt = text.find("\n", e + 1, hi)
                e = hi if nxt < 0 else nxt
            else:
                break  # the whole region: unique by construction
        return Edit(layer, path, text[s:e], text[s:a] + new + text[b:e])

    def _bulleted(self, block: Block) -> bool:
        return block.bullet or any(b.bullet for b in self.all_blocks.get(block.target, []))

    def _insert_after(self, block: Block, raw: str) -> Edit:
        add = clean_text(raw)
        if not add:
            raise NoChange("nothing to add")
        text = self.skill.files[block.path]
        nl = newline(text)
        anchor = text[block.start : block.end]
        bulleted = self._bulleted(block)
        if block.heading:  # right under the heading, in the section's own style
            first = add.lstrip()
            if bulleted and "\n" not in add and not BULLET.match(first) and not first.startswith("#"):
                add = "- " + add
            new = anchor + nl + add.replace("\n", nl)
        else:
            new = joined(anchor, add, bulleted, nl)
        return self._span_edit(block.path, block.layer, block.start, block.end, new)

    def _replace(self, block: Block, new: str) -> Edit:
        text = self.skill.files[block.path]
        nl = newline(text)
        old = text[block.start : block.end]
        if not new:  # delete the block and the line break before it (after it, at the very start)
            _, lo, hi = self._region(block.path)
            if block.start - len(nl) >= lo and text[block.start - len(nl) : block.start] == nl:
                return self._span_edit(block.path, block.layer, block.start - len(nl), block.end, "")
            end = block.end + len(nl) if text[block.end : block.end + len(nl)] == nl else block.end
            return self._span_edit(block.path, block.layer, block.start, end, "")
        if block.bullet and not BULLET.match(new) and "\n" not in new and not new.startswith("#"):
            new = BULLET.match(old).group(0) + new  # type: ignore[union-attr]
        new = new.replace("\n", nl)
        if new == old:
            raise NoChange("the replacement text is the same as the old text")
        return self._span_edit(block.path, block.layer, block.start, block.end, new)

    def _heading_level(self) -> int:
        levels = [s.level for s in self.skill.sections()]
        return 2 if not levels else max(set(levels), key=lambda lv: (levels.count(lv), -lv))

    def _new_section(self, raw_title: str, raw_text: str, label: str) -> Edit:
        body = clean_text(raw_text)
        if not body:
            raise NoChange("nothing to add")
        title = " ".join(clean_text(raw_title).lstrip("#").split())[:60].strip() or title_of(label) or "Notes"
        text, lo, hi = self._region(SKILL_MD)
        nl = newline(text)
        blocks = markdown_blocks(text, lo, hi)
        if not blocks:
            raise NoChange("the body is empty: there is nothing to add a section after")
        last_end = blocks[-1][1]
        if "\n" not in body and not BULLET.match(body) and not body.startswith("#"):
            body = "- " + body
        heading = "#" * self._heading_level() + " " + title
        add = nl + nl + heading + nl + body.replace("\n", nl)
        tail = text[blocks[-1][0] : last_end]
        return self._span_edit(SKILL_MD, "L2", blocks[-1][0], last_end, tail + add)

    def _move(self, target: str, raw_detail: str, raw_condition: str, label: str) -> list[list[Edit]]:
        detail = clean_text(raw_detail)
        if not detail:
            raise NoChange("no detail to move")
        name = label or target
        base = slugify(name) or "notes"
        slug, k = base, 2
        while f"references/{slug}.md" in self.skill.files or f"references/{slug}.md" in self.skill.assets:
            slug, k = f"{base}-{k}", k + 1
        path = f"references/{slug}.md"
        pointer = f"Read {path} when {_condition(raw_condition, name)}."
        create = Edit("L3", path, "", f"# {title_of(name)}\n\n{detail}\n")
        blocks = self.all_blocks.get(target, [])
        if not blocks:
            raise NoChange(f"no section {target!r} to move from")
        variants: list[list[Edit]] = []
        covered = set(content_words(detail))
        moved = [b for b in blocks if b.bullet and _covered(self.skill.files[SKILL_MD][b.start : b.end], covered)]
        text = self.skill.files[SKILL_MD]
        nl = newline(text)
        if moved and len(moved) < len(blocks) - 1:  # a real move keeps the heading and something else
            start, end = blocks[0].start, blocks[-1].end
            kept = [text[b.start : b.end] for b in blocks if b not in moved]
            span = joined(nl.join(kept), pointer, True, nl)
            _, lo, hi = self._region(SKILL_MD)
            if end - start <= MAX_REWRITE_FRACTION * (hi - lo):
                variants.append([create, self._span_edit(SKILL_MD, "L2", start, end, span)])
        variants.append([create, self._insert_after(blocks[-1], pointer)])
        return variants


def _covered(block_text: str, covered: set[str]) -> bool:
    """A list item whose content words the moved detail mostly repeats (70%+) leaves the body."""
    cw = set(content_words(block_text))
    return len(cw) >= 2 and len(cw & covered) / len(cw) >= 0.7


def _condition(raw: str, label: str) -> str:
    c = " ".join(raw.split()).rstrip(".").strip()
    c = re.sub(r"^(?:read\s+\S+\s+)?(?:only\s+)?(?:when|if)\s+", "", c, flags=re.I)
    if len(words(c)) < 2:
        c = f"a task involves {label}"
    return c[:1].lower() + c[1:]


def _with_unique_keys(blocks: list[Block]) -> list[Block]:
    seen: dict[str, int] = {}
    out = []
    for b in blocks:
        n = seen.get(b.key, 0) + 1
        seen[b.key] = n
        out.append(b if n == 1 else Block(f"{b.key} #{n}", b.path, b.layer, b.start, b.end, b.heading, b.bullet,
                                          b.target))
    return out


def branch_for(schema: dict[str, Any], section: str, op: str) -> dict[str, Any] | None:
    """The branch of a menu schema for (section, op), for scripted models that answer from it."""
    items = schema["properties"]["candidates"]["items"]
    for br in items.get("anyOf", [items]):
        props = br["properties"]
        ops = [props["op"]["const"]] if "const" in props["op"] else props["op"]["enum"]
        if props["section"].get("const") == section and op in ops:
            branch: dict[str, Any] = br
            return branch
    return None


def scripted_answer(schema: dict[str, Any], section: str, text: str, why: str = "") -> dict[str, Any]:
    """A valid answer adding `text` to `section` (its last offered anchor), for scripted stand-in
    models: a move when the menu only offers moves, a new section when `section` is not offered."""
    for op in (INSERT_AFTER, MOVE):
        br = branch_for(schema, section, op)
        if br is not None:
            props = br["properties"]
            if op == MOVE:
                return {"section": section, "op": MOVE, "condition": "a task needs it", "text": text, "why": why}
            return {"section": section, "op": op, "anchor": props["anchor"]["enum"][-1], "text": text, "why": why}
    if branch_for(schema, NEW_SECTION_TARGET, NEW_SECTION) is not None:
        return {"section": NEW_SECTION_TARGET, "op": NEW_SECTION, "title": section, "text": text, "why": why}
    items = schema["properties"]["candidates"]["items"]
    br = items.get("anyOf", [items])[0]["properties"]
    return {"section": br["section"]["const"], "op": MOVE, "condition": "a task needs it", "text": text, "why": why}


__all__ = ["DELETE", "DESCRIPTION_TARGET", "EditMenu", "INSERT_AFTER", "MOVE", "NEW_DESCRIPTION", "NEW_SECTION",
           "NEW_SECTION_TARGET", "NoChange", "OPERATIONS", "REPLACE", "branch_for", "clean_text", "scripted_answer",
           "split_md"]
