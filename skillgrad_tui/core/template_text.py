"""Placeholder and template text in an edit: words a model copied from the prompt's instructions or
reply format instead of writing guidance (seen: an edit that appended `- <a line to add` from the
patcher's template passed every other check).

The class rule that a prompt offers as its example's text is guidance and may be copied; the
instructions around it, and every `<placeholder>`, may not.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from skillgrad_tui.core.textsim import words

COPY_NGRAM = 5  # this many words in a row, taken from the template and new to the skill, is a copy
_PLACEHOLDER = re.compile(r"<[^<>\n]{2,80}>")
# A line that is nothing but a placeholder, closed or cut off: `- <a line to add`, `<one short rule>`.
_PLACEHOLDER_LINE = re.compile(r"^\s*(?:[-*+]\s+|\d+[.)]\s+|#{1,6}\s+)?<[a-z][a-z ,.'/-]*>?\s*$", re.I)


def placeholders(templates: Iterable[str]) -> set[str]:
    return {m.group(0) for t in templates for m in _PLACEHOLDER.finditer(t)}


def _copies(line: str, mark: str) -> bool:
    """The placeholder, whole or cut off by the token limit (`<the guidance, a few`)."""
    if mark in line:
        return True
    end = line.rstrip()
    return any(end.endswith(mark[:k]) for k in range(8, len(mark)))


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def added_lines(before: str, after: str) -> list[str]:
    """Lines of `after` that `before` does not have (the text an edit brings in)."""
    old = set(before.splitlines())
    return [ln for ln in after.splitlines() if ln not in old and ln.strip()]


@functools.lru_cache(maxsize=8)
def _index(templates: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[tuple[str, ...]]]:
    """The templates' placeholders (sorted) and word n-grams: built once, not for every edit checked."""
    grams = frozenset().union(*(_ngrams(t, COPY_NGRAM) for t in templates))
    return tuple(sorted(placeholders(templates))), grams


def check_no_template_text(before: str, after: str, templates: tuple[str, ...]) -> str | None:
    """None, or why the new lines of `after` look copied from the prompt rather than written."""
    marks, template_grams = _index(templates)
    new = added_lines(before, after)
    for line in new:
        for mark in marks:
            if _copies(line, mark):
                return f"copies the prompt's placeholder {mark!r}"
        if _PLACEHOLDER_LINE.match(line) and line.strip() not in before:
            return f"adds a placeholder line, not guidance: {line.strip()[:80]!r}"
    copied = _ngrams("\n".join(new), COPY_NGRAM) & template_grams
    if copied:
        copied -= _ngrams(before, COPY_NGRAM)  # the skill already said it: not a copy from the prompt
    if copied:
        return f"copies the prompt's instructions: {' '.join(sorted(copied)[0])!r}"
    return None


__all__ = ["COPY_NGRAM", "added_lines", "check_no_template_text", "placeholders"]
