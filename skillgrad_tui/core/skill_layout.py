"""Which files of a skill folder are text the agent may read (L3), which are tools, which are neither.

Skills in the wild do not keep their detail in references/ only: SKILL.md links `forms.md`,
`reference/evaluation.md`, `agents/grader.md`. The rules (README, "How a skill is loaded"):
- SKILL.md, and every file under references/, is text (L3 besides SKILL.md), as before;
- code under scripts/ (.py, .sh, .js, ...) is loaded as text (hashed, editable) but is a *tool*:
  listed to the agent by name and a one-line usage, copied into the sandbox, never pasted;
- any other file that SKILL.md (or an L3 file, transitively) links with a Markdown link or names
  by relative path is L3 when it is readable text of a known kind, at most LINKED_MAX_BYTES, not a
  schema and not under assets/;
- everything else (assets/, schemas, binaries, big files, LICENSE.txt...) is listed and hashed only.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from pathlib import PurePosixPath
from urllib.parse import unquote

SKILL_MD = "SKILL.md"
CODE_SUFFIXES = frozenset({".py", ".sh", ".bash", ".js", ".mjs", ".cjs", ".ts"})
DOC_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".rst", ".yaml", ".yml", ".toml", ".csv", ".json", ".xml"})
# Machine-readable schemas are for programs, not for a model's context (xlsx's scripts/ held ~1 MB of them).
SCHEMA_SUFFIXES = frozenset({".xsd", ".dtd", ".rng", ".rnc", ".wsdl"})
LINKED_MAX_BYTES = 64_000  # a named file above this is listed, not loaded: it would not fit a small model's context
_LINK_RE = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*[\"'])?\s*\)")
_SUFFIX_ALT = "|".join(sorted(s[1:] for s in DOC_SUFFIXES | CODE_SUFFIXES))
_PATH_RE = re.compile(rf"(?<![\w/.:~-])((?:\.{{1,2}}/)?(?:[\w-]+/)*[\w.-]*\w\.(?:{_SUFFIX_ALT}))(?![\w/-])")


def is_tool_path(rel: str) -> bool:
    """Code under scripts/: a tool the agent runs, not text it reads."""
    p = PurePosixPath(rel)
    return len(p.parts) > 1 and p.parts[0] == "scripts" and p.suffix.lower() in CODE_SUFFIXES


def is_reference_path(rel: str) -> bool:
    return rel.startswith("references/") and "/" in rel


def always_text(rel: str) -> bool:
    """Paths that are text whatever SKILL.md says (a bad one there refuses the skill)."""
    return rel == SKILL_MD or is_reference_path(rel) or is_tool_path(rel)


def may_be_linked_text(rel: str, size: int) -> bool:
    """A file that becomes L3 when named: known text kind, not a schema, not an asset, not huge."""
    p = PurePosixPath(rel)
    suffix = p.suffix.lower()
    if p.parts[0] == "assets" or suffix in SCHEMA_SUFFIXES or size > LINKED_MAX_BYTES:
        return False
    return suffix in DOC_SUFFIXES or suffix in CODE_SUFFIXES


def named_paths(text: str, source: str, existing: Iterable[str]) -> set[str]:
    """Existing files that `text` (the content of file `source`) links or names by relative path:
    relative to the source's folder or to the skill root, or by a bare file name that exactly one
    file of the skill has."""
    existing = set(existing)
    by_name: dict[str, list[str]] = {}
    for rel in existing:
        by_name.setdefault(PurePosixPath(rel).name, []).append(rel)
    base = PurePosixPath(source).parent
    raw = [m.group(1) for m in _LINK_RE.finditer(text)] + [m.group(1) for m in _PATH_RE.finditer(text)]
    out: set[str] = set()
    for target in raw:
        if "://" in target or target.startswith(("mailto:", "#", "/")):
            continue
        target = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if not target:
            continue
        for candidate in (_normal(base / target), _normal(PurePosixPath(target))):
            if candidate is not None and candidate in existing:
                out.add(candidate)
                break
        else:
            same = by_name.get(PurePosixPath(target).name, []) if "/" not in target else []
            if len(same) == 1:
                out.add(same[0])
    return out


def _normal(p: PurePosixPath) -> str | None:
    parts: list[str] = []
    for part in p.parts:
        if part == ".":
            continue
        if part == "..":
            if not parts:
                return None  # outside the skill
            parts.pop()
            continue
        parts.append(part)
    return "/".join(parts) or None


def linked_closure(texts: dict[str, str], candidates: dict[str, int],
                   read: Callable[[str], str | None]) -> tuple[dict[str, str], list[str]]:
    """Grow the L3 set from the files in `texts` (SKILL.md body and references): every candidate
    (path -> size) named by a loaded file is read with `read` (None: not text) and searched in turn.
    Returns the new texts and the named files that could not be loaded (too big, binary, schema)."""
    found: dict[str, str] = {}
    skipped: set[str] = set()
    queue = list(texts.items())
    everything = set(texts) | set(candidates)
    while queue:
        source, text = queue.pop()
        if is_tool_path(source):
            continue  # code names many paths of its own: only prose decides what the agent reads
        for rel in sorted(named_paths(text, source, everything)):
            if rel in texts or rel in found or rel in skipped or rel not in candidates:
                continue
            content = read(rel) if may_be_linked_text(rel, candidates[rel]) else None
            if content is None:
                skipped.add(rel)
                continue
            found[rel] = content
            queue.append((rel, content))
    return found, sorted(skipped)


def tool_usage(rel: str, text: str) -> str:
    """One line saying what a script does: its docstring, argparse description, or header comment."""
    if rel.endswith(".py"):
        try:
            doc = ast.get_docstring(ast.parse(text))
        except (SyntaxError, ValueError):
            doc = None
        if doc and doc.strip():
            return _first_line(doc)
        m = re.search(r"ArgumentParser\([^)]*description\s*=\s*(?:f?[\"']{1,3})([^\"'\n]+)", text)
        if m:
            return _first_line(m.group(1))
    for line in text.splitlines()[:15]:
        s = line.strip()
        if s.startswith("#!") or not s:
            continue
        if s.startswith(("#", "//")):
            comment = s.lstrip("#/ ").strip()
            if comment and not comment.lower().startswith(("-*-", "type:", "noqa", "eslint", "@ts-")):
                return _first_line(comment)
            continue
        break
    return ""


def _first_line(text: str, limit: int = 160) -> str:
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 3].rstrip() + "..."
