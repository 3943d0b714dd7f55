"""The skill lines a contrastive diagnoser may name as what made a failed task pass.

Asked for "what helped" in free text, a small model copies the prompt's own words: SmolLM2-135M
answered "The skill text or rule that made the difference" to every comparison of the repair
benchmark, so no preservation signal ever came out and `--no-contrastive` made exactly the calls
the full method made. The answer is chosen from the skill's real lines instead (an enum in the
schema): the lines added since the version the task failed with come first (the likeliest cause,
and a small model tends to take an early choice), rules before the rows of an example's table,
then the rest. Each choice knows where it lives, so the anchor follows from the line in code
rather than from a second guess of the model.

The enum holds each line's key (its first words, ASCII: edit_blocks.key_text), as the patcher's
anchors do: a short key keeps the grammar small and is what a small model copies well; the signal
records the whole line.
"""

from __future__ import annotations

from dataclasses import dataclass

from skillgrad_tui.core.edit_blocks import key_text
from skillgrad_tui.core.edit_menu import DESCRIPTION_TARGET
from skillgrad_tui.core.skill import SKILL_MD, Skill
from skillgrad_tui.core.textsim import words

MAX_CHOICES = 24  # the prompt lists them all; more would crowd a 2k context
MAX_CHARS = 160


@dataclass(frozen=True)
class LineChoice:
    key: str  # what the answer names (key_text of the line; unique among the choices)
    text: str  # the line, whitespace collapsed, cut at MAX_CHARS: what the signal records
    where: str  # its section title, an L3 file's path, or the description (DESCRIPTION_TARGET)
    new: bool  # not in the version the task failed with


def _content_lines(text: str) -> list[tuple[str, str | None]]:
    """(line, heading above it) for the lines that say something: no blanks, fences or headings."""
    out: list[tuple[str, str | None]] = []
    heading: str | None = None
    fenced = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("```") or line.startswith("~~~"):
            fenced = not fenced
            continue
        if not fenced and line.startswith("#"):
            heading = line.lstrip("#").strip() or heading
            continue
        if len(words(line)) >= 3:
            out.append((line, heading))
    return out


def _lines_of(skill: Skill) -> list[tuple[str, str]]:
    """Every content line of the skill, whitespace collapsed and cut at MAX_CHARS, with where it
    lives: the description, the body's lines under their section (or the first section), then the
    L3 documents' lines under their path."""
    titles = [s.title for s in skill.sections() if s.title]
    first = titles[0] if titles else DESCRIPTION_TARGET
    found: list[tuple[str, str]] = [(skill.description, DESCRIPTION_TARGET)]
    found += [(line, heading if heading in titles else first) for line, heading in _content_lines(skill.body)]
    for path in skill.l3_docs:
        if path != SKILL_MD:
            found += [(line, path) for line, _ in _content_lines(skill.files[path])]
    return [(" ".join(line.split())[:MAX_CHARS], where) for line, where in found]


def helped_choices(skill: Skill, before: Skill | None = None) -> list[LineChoice]:
    """The lines the answer may name, new ones first; at most MAX_CHOICES, each key unique.
    Without the earlier version (it is not in the run log), every line counts as old."""
    old = {text for text, _ in _lines_of(before)} if before is not None else None
    seen: set[str] = set()
    new: list[LineChoice] = []
    rest: list[LineChoice] = []
    for text, where in _lines_of(skill):
        key = key_text(text)
        if not text or key in seen:
            continue
        seen.add(key)
        is_new = old is not None and text not in old
        (new if is_new else rest).append(LineChoice(key, text, where, is_new))
    # A table row of a worked example is evidence, not a rule: rules and answers lead.
    new.sort(key=lambda c: _is_table_row(c.text))
    return (new + rest)[:MAX_CHOICES]


def _is_table_row(line: str) -> bool:
    return line.count("|") >= 2


__all__ = ["LineChoice", "MAX_CHARS", "MAX_CHOICES", "helped_choices"]
