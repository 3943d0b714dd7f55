"""The text under the edit menu: Markdown helpers for the text a model writes into a skill, the
front matter's description edit, and the blocks (a heading, a list item, a paragraph, a fenced
block) that an anchor names. edit_menu.py builds the schema and reads answers back on these.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

import yaml

from skillgrad_tui.core.skill import SKILL_MD, Edit, Layer, Skill

KEY_MAX = 48  # enum values longer than this are cut at a word and end in "..."
BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")
HEADING = re.compile(r"^ {0,3}(#{1,6})(?:\s+|$)")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# Control characters, C1 controls, surrogates and non-characters: YAML refuses them in the front
# matter, and no skill needs them anywhere.
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")


class NoChange(Exception):
    """A valid answer that would change nothing (the message says why); not an edit that misses."""


# ------------------------------------------------------------------------------- text helpers


def split_md(text: str) -> tuple[str, str]:
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


def newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def clean_text(text: str) -> str:
    """Free text from a model as it may enter a skill: no control characters, no '---' lines
    (they would end the front matter), no runs of blank lines, no surrounding space."""
    lines = [CONTROL.sub("", ln).rstrip() for ln in str(text).strip().splitlines() if ln.strip() != "---"]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def title_of(label: str) -> str:
    return label[:1].upper() + label[1:]


def joined(anchor_block: str, add: str, bulleted: bool, nl: str) -> str:
    """anchor_block followed by `add`, formatted to fit: a bullet list gets a bullet, prose a
    paragraph of its own (so it does not run into the previous list item)."""
    first = add.lstrip()
    if BULLET.match(first):
        return anchor_block + nl + add.replace("\n", nl)
    if bulleted and "\n" not in add and not first.startswith("#"):
        return anchor_block + nl + "- " + add
    return anchor_block + nl + nl + add.replace("\n", nl)


def yaml_scalar(text: str) -> str:
    # A plain scalar when YAML reads it back unchanged, else a JSON string (valid YAML).
    one_line = " ".join(text.split())
    try:
        if yaml.safe_load(f"k: {one_line}") == {"k": one_line}:
            return one_line
    except yaml.YAMLError:
        pass
    return json.dumps(one_line, ensure_ascii=False)


def description_edit(skill: Skill, description: str) -> Edit:
    """The L1 edit that sets the description (a folded or literal block is replaced whole)."""
    text = skill.files[SKILL_MD]
    yaml_text = split_md(text)[0]
    lines = yaml_text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if re.match(r"description\s*:", line):
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                j += 1
            old = "".join(lines[i:j]).rstrip("\r\n")
            return Edit("L1", SKILL_MD, old, "description: " + yaml_scalar(description))
    raise NoChange("the front matter has no description line")  # pragma: no cover - loads imply one


def occurrences(region: str, sub: str) -> int:
    """Overlapping occurrences, as skill.apply_edits_in_memory counts them."""
    n, i = 0, region.find(sub)
    while i >= 0:
        n += 1
        i = region.find(sub, i + 1)
    return n


# ----------------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Block:
    """A span of whole lines of one file: the unit an anchor names."""

    key: str  # the enum value: the start of its first line
    path: str
    layer: Layer
    start: int  # offsets in the file text; [start, end) holds the lines without the last newline
    end: int
    heading: bool
    bullet: bool
    target: str  # section title or L3 path it belongs to


def key_text(line: str) -> str:
    ascii_ = unicodedata.normalize("NFKD", line).encode("ascii", "ignore").decode("ascii")
    t = " ".join(ascii_.replace('"', "'").replace("\\", "/").split())
    if len(t) > KEY_MAX:
        cut = t[: KEY_MAX - 3]
        t = (cut.rsplit(" ", 1)[0] if " " in cut[8:] else cut) + "..."
    return t or "(blank)"


def line_spans(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """(start, end) of each line in text[lo:hi], end excluding the line break."""
    out = []
    pos = lo
    while pos < hi:
        nl = text.find("\n", pos, hi)
        end = hi if nl < 0 else nl
        out.append((pos, end - 1 if end > pos and text[end - 1] == "\r" else end))
        pos = hi if nl < 0 else nl + 1
    return out


def markdown_blocks(text: str, lo: int, hi: int) -> list[tuple[int, int, bool, bool]]:
    """(start, end, heading, bullet) of the Markdown blocks in text[lo:hi]: a heading, a list item
    with its indented continuation lines, a paragraph, a fenced block."""
    lines = line_spans(text, lo, hi)
    out: list[tuple[int, int, bool, bool]] = []
    i = 0
    while i < len(lines):
        s, e = lines[i]
        line = text[s:e]
        if not line.strip():
            i += 1
            continue
        fence = FENCE.match(line)
        if fence:
            j = i + 1
            while j < len(lines) and not text[lines[j][0] : lines[j][1]].strip().startswith(fence.group(1)):
                j += 1
            j = min(j, len(lines) - 1)
            out.append((s, lines[j][1], False, False))
            i = j + 1
            continue
        if HEADING.match(line):
            out.append((s, e, True, False))
            i += 1
            continue
        bullet = bool(BULLET.match(line))
        j = i + 1
        while j < len(lines):
            nxt = text[lines[j][0] : lines[j][1]]
            if not nxt.strip() or HEADING.match(nxt) or FENCE.match(nxt) or BULLET.match(nxt):
                break
            if bullet and not nxt[:1].isspace():
                break  # an unindented line after a list item starts a paragraph
            j += 1
        out.append((s, lines[j - 1][1], False, bullet))
        i = j
    return out
