"""Small text helpers shared by the diagnosers, the momentum memory and the patcher.

Everything here is deterministic and model-free: labels are compared, merged and checked in
code because small models cannot be trusted to do it (method.md, "Small local models").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_WORD_RE = re.compile(r"[a-z0-9]+(?:['’\-][a-z0-9]+)*")
_NUMBER_RE = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?![\w])")
_QUOTED_RE = re.compile(r"\"([^\"]+)\"|“([^”]+)”|‘([^’]+)’|(?<![a-z])'([^']+)'(?![a-z])", re.I)

# Function words: they carry no task value and make weak n-gram evidence on their own.
STOPWORDS = frozenset(
    "a an and are as at be by did do does for from has have how in is it its of on or that the "
    "their then there these this those to was were what when where which who whom why will with "
    "not no than into out up down about over under after before between each any all".split()
)


def words(text: str) -> list[str]:
    """Lowercase word tokens (letters/digits, inner hyphens and apostrophes kept)."""
    return _WORD_RE.findall(text.lower())


def normalise_label(text: str) -> str:
    """A label as it is stored and compared: lowercase words separated by single spaces."""
    return " ".join(words(text))


def normalise_anchor(text: str) -> str:
    """Anchors compare without case, heading marks, surrounding quotes or extra spaces."""
    t = text.strip().strip("\"'`").lstrip("#").strip()
    return re.sub(r"\s+", " ", t).lower().rstrip(".:")


def jaccard(a: str | Iterable[str], b: str | Iterable[str]) -> float:
    """Jaccard similarity of word sets (strings are tokenised with `words`); 0 when either is empty."""
    sa = set(words(a)) if isinstance(a, str) else set(a)
    sb = set(words(b)) if isinstance(b, str) else set(b)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)} if n > 0 else set()


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS]


def stems(text: str) -> set[str]:
    """Content words cut to 5 characters: a crude stemmer, enough for 'count'/'counting' and
    'compare'/'comparisons' to meet when matching a model's anchor to a section title."""
    return {w[:5] for w in content_words(text)}


def slugify(text: str, max_words: int = 6) -> str:
    """A file-name slug: lowercase words joined by hyphens; 'notes' when nothing is left."""
    parts = [re.sub(r"[^a-z0-9]", "", w) for w in words(text)]
    slug = "-".join(p for p in parts if p)
    slug = "-".join(slug.split("-")[:max_words])
    return slug or "notes"


def number_key(token: str) -> str:
    """'12,467' and '12467.0' compare equal; so do '+3' and '3'."""
    t = token.replace(",", "").lstrip("+")
    if "." in t:
        t = t.rstrip("0").rstrip(".")
    return t or "0"


def numbers_in(text: str) -> set[str]:
    return {number_key(m.group(0)) for m in _NUMBER_RE.finditer(text)}


def quoted_strings(text: str) -> list[str]:
    return [next(g for g in m.groups() if g) for m in _QUOTED_RE.finditer(text)]


def contains_phrase(text: str, phrase: str) -> bool:
    """True when the words of `phrase` occur consecutively among the words of `text`."""
    hay, needle = words(text), words(phrase)
    if not needle or len(needle) > len(hay):
        return False
    n = len(needle)
    return any(hay[i : i + n] == needle for i in range(len(hay) - n + 1))


def truncate(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary when possible, with an ellipsis."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:") + "…"
