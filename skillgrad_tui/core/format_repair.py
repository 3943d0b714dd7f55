"""Repairs for a skill that breaks a hard limit of the format (a published skill may: Anthropic's
claude-api description is 1,068 characters, over 1,024). The skill loads with a "format"
warning; the optimiser's first step offers these edits as a candidate through the patcher's
normal checks and the gate, so the repair is never written unchecked."""

from __future__ import annotations

import re

import yaml

from skillgrad_tui.core.skill_edits import Edit
from skillgrad_tui.core.skill_format import DESCRIPTION_MAX, SKILL_MD, Skill, parse_skill_md

REPAIR_ORIGIN = "format repair"


def _key_block(yaml_text: str, first_line: int, key_line: int) -> str:
    """The lines of one top-level key (its value may continue on indented lines)."""
    lines = yaml_text.splitlines(keepends=True)
    i = key_line - first_line
    j = i + 1
    while j < len(lines) and (not lines[j].strip() or lines[j][0] in " \t"):
        j += 1
    return "".join(lines[i:j])


def _scalar(key: str, value: str) -> str:
    return yaml.safe_dump({key: value}, width=10**6, allow_unicode=True, sort_keys=False)


def short_description(text: str, max_words: int = 50) -> str:
    """The first sentence, at most `max_words` words and DESCRIPTION_MAX characters, ending in a full stop."""
    t = " ".join(text.split())
    m = re.search(r"(?<!\be\.g)(?<!\bi\.e)[.!?](?=\s)", t)
    first = t[: m.end()] if m else t
    words = first.split()[:max_words]
    out = " ".join(words)
    while len(out) > DESCRIPTION_MAX - 1:
        words = words[:-1]
        out = " ".join(words)
    return out.rstrip(",;:.!? ") + "."


def repair_edits(skill: Skill, max_words: int = 50) -> list[Edit]:
    """L1 edits that fix each format violation of `skill`; empty when there is none."""
    if not skill.format_violations():
        return []
    parsed = parse_skill_md(skill.root / SKILL_MD, skill.files[SKILL_MD])
    yaml_text, first = parsed.split.yaml_text, parsed.split.yaml_line
    edits: list[Edit] = []
    if skill.name != skill.root.name and "name" in parsed.key_lines:
        old = _key_block(yaml_text, first, parsed.key_lines["name"])
        edits.append(Edit("L1", SKILL_MD, old, _scalar("name", skill.root.name)))
    if len(skill.description) > DESCRIPTION_MAX and "description" in parsed.key_lines:
        old = _key_block(yaml_text, first, parsed.key_lines["description"])
        new = _scalar("description", short_description(skill.description, max_words))
        edits.append(Edit("L1", SKILL_MD, old, new if old.endswith("\n") else new.rstrip("\n")))
    return edits
