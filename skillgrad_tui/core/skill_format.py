"""The skill format (Agent Skills): the Skill and its problems, front matter and its checks, the
Markdown sections, the content hash, and building a checked Skill from in-memory text."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NamedTuple

import yaml

from skillgrad_tui.core.file_write import sha256_hex
from skillgrad_tui.core.errors import SkillError
from skillgrad_tui.core.skill_layout import is_reference_path, is_tool_path, tool_usage
from skillgrad_tui.core.vcs import IgnoreRules


Layer = Literal["L1", "L2", "L3"]
SKILL_MD = "SKILL.md"
TEXT_DIRS = ("references", "scripts")  # always loaded; other files only when SKILL.md names them
NAME_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
NAME_MAX = 64
DESCRIPTION_MAX = 1024
DESCRIPTION_WORDS_WARN = 50  # the paper's patcher keeps L1 to one sentence of at most 50 words
BODY_LINES_WARN = 500  # Agent Skills guidance: keep SKILL.md under ~500 lines, move detail to L3
KNOWN_KEYS = frozenset({"name", "description", "license", "compatibility", "metadata", "allowed-tools"})

# Never part of a skill's content: our temp files and caches a script run may leave behind.
IGNORED_NAMES = frozenset({"__pycache__", ".DS_Store"})

# Editor swap, backup and probe files: an open vim must not change the skill's hash.
EDITOR_TEMP_PATTERNS = ("*.swp", "*.swx", "*.swo", "*~", ".#*", "#*#", "4913", "*.tmp")
DEFAULT_MAX_FILE_BYTES = 256_000
_MENTION_RE = re.compile(r"(?<![\w/.-])((?:references|scripts|assets)/[\w./-]*[\w-])")
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*#*[ \t]*$")


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int | None
    message: str
    severity: Literal["error", "warning"]
    # "format": the skill breaks a hard limit of the format but still loads; the optimiser repairs it first.
    kind: str = ""

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.severity}: {self.message}"


class Section(NamedTuple):
    title: str
    level: int
    start_line: int  # 1-based lines of SKILL.md (not of the body), inclusive
    end_line: int  # last line before the next heading of the same or a higher level


@dataclass
class Skill:
    root: Path
    name: str
    description: str
    front_matter: dict[str, Any]
    body: str
    files: dict[str, str]  # relative posix path -> text: SKILL.md and every L3 text file
    assets: list[str]  # every other file (assets/, LICENSE, ...): listed and hashed, not loaded
    problems: list[Problem]  # warnings found while loading
    asset_digests: dict[str, str] = field(default_factory=dict, repr=False)  # path -> sha256 hex
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    # What is not skill content in the user's folder (None for stored versions: all of it is).
    ignore: IgnoreRules | None = field(default=None, repr=False, compare=False)

    @property
    def hash(self) -> str:
        digests = {p: sha256_hex(t.encode("utf-8")) for p, t in self.files.items()}
        return _hash_digests({**self.asset_digests, **digests})

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    @property
    def l3_docs(self) -> list[str]:
        """The L3 text the agent may read on demand (not SKILL.md, not tools), sorted."""
        return sorted(p for p in self.files if p != SKILL_MD and not is_tool_path(p))

    @property
    def tools(self) -> dict[str, str]:
        """scripts/ code: path -> one-line usage (docstring, argparse description or header comment)."""
        return {p: tool_usage(p, t) for p, t in sorted(self.files.items())
                if is_tool_path(p) and PurePosixPath(p).name != "__init__.py"}

    def format_violations(self) -> list[Problem]:
        return [p for p in self.problems if p.kind == "format"]

    def layer_of(self, rel_path: str) -> Layer:
        return "L2" if PurePosixPath(rel_path).as_posix() == SKILL_MD else "L3"

    def sections(self) -> list[Section]:
        split = split_front_matter(self.root / SKILL_MD, self.files[SKILL_MD])
        return markdown_sections(split.body, split.body_line)

    def text_size(self) -> dict[str, int]:
        split = split_front_matter(self.root / SKILL_MD, self.files[SKILL_MD])
        l3 = sum(len(self.files[p]) for p in self.l3_docs)
        tools = sum(len(self.files[p]) for p in self.tools)
        return {"L1": len(split.yaml_text), "L2": len(split.body), "L3": l3, "tools": tools}


def _hash_digests(digests: Mapping[str, str]) -> str:
    # Paths are part of the content: a rename is a new version. The root folder is not.
    h = hashlib.sha256()
    for path in sorted(digests):
        h.update(path.encode("utf-8") + b"\0" + digests[path].encode("ascii") + b"\n")
    return h.hexdigest()


def content_hash(files: Mapping[str, bytes]) -> str:
    """Hash of a snapshot; equals `Skill.hash` of the skill it was taken from."""
    return _hash_digests({p: sha256_hex(b) for p, b in files.items()})


class _FrontMatter(NamedTuple):
    yaml_text: str  # between the delimiter lines
    yaml_start: int  # offset of yaml_text in the file text
    yaml_line: int  # 1-based file line where yaml_text starts
    body: str
    body_start: int  # offset of the body in the file text
    body_line: int  # 1-based file line where the body starts


def line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def split_front_matter(path: Path, text: str) -> _FrontMatter:
    start = 1 if text.startswith("\ufeff") else 0  # tolerate an editor's byte-order mark
    lines = text[start:].splitlines(keepends=True)
    if not lines or lines[0].rstrip() != "---":
        raise SkillError("no YAML front matter: SKILL.md must start with a line '---'", path, 1)
    offset = start + len(lines[0])
    yaml_start = offset
    for line in lines[1:]:
        if line.rstrip() == "---":
            body_start = offset + len(line)
            return _FrontMatter(
                text[yaml_start:offset], yaml_start, 2, text[body_start:], body_start, line_at(text, body_start)
            )
        offset += len(line)
    raise SkillError("unterminated front matter: no closing '---' line", path, 1)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: `name:` twice would make L1 edits ambiguous."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _ParsedSkillMd(NamedTuple):
    split: _FrontMatter
    front_matter: dict[str, Any]
    key_lines: dict[str, int]  # top-level key -> 1-based file line


def parse_skill_md(path: Path, text: str) -> _ParsedSkillMd:
    split = split_front_matter(path, text)
    loader = _StrictLoader(split.yaml_text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = split.yaml_line + mark.line if mark is not None else split.yaml_line
        problem = getattr(exc, "problem", None) or str(exc)
        raise SkillError(f"front matter is not valid YAML: {problem}", path, line) from exc
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise SkillError(f"front matter must be a YAML mapping (key: value lines), got {kind}", path, split.yaml_line)
    assert node is not None  # a mapping was read from it
    key_lines = {
        k.value: split.yaml_line + k.start_mark.line for k, _ in node.value if isinstance(k, yaml.ScalarNode)
    }
    return _ParsedSkillMd(split, data, key_lines)


def _l1_problems(path: Path, parsed: _ParsedSkillMd, folder_name: str) -> list[Problem]:
    """Hard rules of the format on name and description. A name that differs from the folder and a
    description over the length limit are kind "format" warnings: published skills break them, the
    skill still loads and the optimiser repairs them first; every other finding is an error."""
    fm, lines = parsed.front_matter, parsed.key_lines
    out: list[Problem] = []

    def err(key: str, message: str, severity: Literal["error", "warning"] = "error") -> None:
        kind = "format" if severity == "warning" else ""
        out.append(Problem(path, lines.get(key, parsed.split.yaml_line), message, severity, kind))

    name = fm.get("name")
    if "name" not in fm:
        err("name", "front matter has no 'name'")
    elif not isinstance(name, str):
        err("name", f"'name' must be a string, got {type(name).__name__}")
    elif len(name) > NAME_MAX:
        err("name", f"'name' is {len(name)} characters, at most {NAME_MAX} allowed")
    elif not NAME_RE.match(name):
        err("name", f"'name' {name!r} must be lowercase letters, digits and single hyphens, not at either end")
    elif name != folder_name:
        err("name", f"'name' {name!r} differs from the folder name {folder_name!r}", "warning")
    desc = fm.get("description")
    if "description" not in fm:
        err("description", "front matter has no 'description'")
    elif not isinstance(desc, str) or not desc.strip():
        err("description", "'description' must be a non-empty string")
    elif len(desc) > DESCRIPTION_MAX:
        err("description", f"'description' is {len(desc)} characters, at most {DESCRIPTION_MAX} allowed",
            "warning")
    return out


def _warnings(root: Path, parsed: _ParsedSkillMd, files: Mapping[str, str], others: list[str]) -> list[Problem]:
    """Things that load but probably hurt the skill; the optimiser and the user see them."""
    md = root / SKILL_MD
    fm, split = parsed.front_matter, parsed.split
    out: list[Problem] = []

    def warn(path: Path, line: int | None, message: str) -> None:
        out.append(Problem(path, line, message, "warning"))

    desc = fm.get("description")
    if isinstance(desc, str) and len(desc.split()) > DESCRIPTION_WORDS_WARN:
        words = len(desc.split())
        msg = f"'description' has {words} words; keep it to one sentence of at most {DESCRIPTION_WORDS_WARN}"
        warn(md, parsed.key_lines.get("description"), msg)
    for key in fm:
        if key not in KNOWN_KEYS:
            warn(md, parsed.key_lines.get(str(key)), f"unknown front matter key {key!r} (kept as is)")
    if "metadata" in fm and not isinstance(fm["metadata"], dict):
        warn(md, parsed.key_lines.get("metadata"), "'metadata' should be a mapping")
    if not split.body.strip():
        warn(md, split.body_line, "the body (L2) is empty")
    body_lines = split.body.count("\n") + 1
    if body_lines > BODY_LINES_WARN:
        msg = f"the body is {body_lines} lines; above {BODY_LINES_WARN}, move detail into references/"
        warn(md, split.body_line, msg)
    existing = set(files) | set(others)
    prose = {p: t for p, t in files.items() if not is_tool_path(p)}  # code names paths of its own
    for path, text in sorted(prose.items()):
        offset = split.body_start if path == SKILL_MD else 0
        for m in _MENTION_RE.finditer(text, offset):
            target = m.group(1)
            if "." not in PurePosixPath(target).name:
                continue  # "scripts/tools" in prose is a phrase, not a path
            if target not in existing and not any(e.startswith(target.rstrip("/") + "/") for e in existing):
                warn(root / path, line_at(text, m.start()), f"mentions {target}, which does not exist")
    all_prose = "\n".join(t for p, t in prose.items() if p != SKILL_MD) + split.body
    for path in sorted(files):
        name = PurePosixPath(path).name
        if is_reference_path(path) and path not in split.body and name not in split.body:
            warn(root / path, None, "never mentioned from SKILL.md, so the agent cannot know when to read it")
        elif is_tool_path(path) and name != "__init__.py" and path not in all_prose and name not in all_prose \
                and "scripts/" not in all_prose and PurePosixPath(path).stem not in all_prose:
            # A skill may name a script by path, by file name, by module or point at the folder.
            warn(root / path, None, "never mentioned from SKILL.md or a reference")
    return out


def markdown_sections(body: str, first_line: int = 1) -> list[Section]:
    """ATX headings of a Markdown text, outside fenced code; lines are numbered from first_line."""
    lines = body.splitlines()
    heads: list[tuple[str, int, int]] = []
    fence: str | None = None
    for i, line in enumerate(lines):
        m = _FENCE_RE.match(line)
        if m:
            mark = m.group(1)
            if fence is None:
                fence = mark
            elif mark[0] == fence[0] and len(mark) >= len(fence) and not line.strip()[len(mark):].strip():
                fence = None
            continue
        if fence is None and (h := _HEADING_RE.match(line)):
            heads.append(((h.group(2) or "").strip(), len(h.group(1)), i))
    last = max(len(lines) - 1, 0)
    out: list[Section] = []
    for j, (title, level, i) in enumerate(heads):
        end = next((k - 1 for _, lv, k in heads[j + 1 :] if lv <= level), last)
        out.append(Section(title, level, first_line + i, first_line + end))
    return out


def assemble_skill(
    root: Path, files: dict[str, str], asset_digests: dict[str, str], max_file_bytes: int, extra: list[Problem],
    ignore: IgnoreRules | None = None,
) -> Skill:
    """Build and check a Skill from in-memory content (disk loads and edit previews share this)."""
    md = root / SKILL_MD
    if SKILL_MD not in files:
        near = [p for p in [*files, *asset_digests] if p.lower() == "skill.md"]
        hint = f" (found {near[0]}; the name is case-sensitive)" if near else ""
        raise SkillError(f"missing SKILL.md{hint}", md)
    parsed = parse_skill_md(md, files[SKILL_MD])
    l1 = _l1_problems(md, parsed, root.name)
    errors = [p for p in l1 if p.severity == "error"]
    if errors:
        raise SkillError(errors[0].message, errors[0].path, errors[0].line)
    fm = parsed.front_matter
    skill = Skill(
        root=root,
        name=fm["name"],
        description=fm["description"],
        front_matter=fm,
        body=parsed.split.body,
        files=files,
        assets=sorted(asset_digests),
        problems=[],
        asset_digests=asset_digests,
        max_file_bytes=max_file_bytes,
        ignore=ignore,
    )
    skill.problems = l1 + extra + _warnings(root, parsed, files, skill.assets)
    return skill


def warning_summary(problems: list[Problem], first: int = 3) -> str:
    """One line for a CLI or a log: how many warnings, format defects first, the first few."""
    warns = sorted((p for p in problems if p.severity == "warning"), key=lambda p: p.kind != "format")
    if not warns:
        return ""
    shown = "; ".join(f"{p.path.name}{f':{p.line}' if p.line else ''}: {p.message}" for p in warns[:first])
    more = f" (and {len(warns) - first} more)" if len(warns) > first else ""
    return f"the skill loads with {len(warns)} warning(s): {shown}{more}"


def validate_skill(skill: Skill) -> list[Problem]:
    """All problems of an in-memory skill (errors first), e.g. after editing `files` by hand."""
    md = skill.root / SKILL_MD
    if SKILL_MD not in skill.files:
        return [Problem(md, None, "missing SKILL.md", "error")]
    try:
        parsed = parse_skill_md(md, skill.files[SKILL_MD])
    except SkillError as exc:
        return [Problem(exc.path or md, exc.line, exc.message, "error")]
    out = _l1_problems(md, parsed, skill.root.name)
    for rel, text in sorted(skill.files.items()):
        size = len(text.encode("utf-8"))
        if size > skill.max_file_bytes:
            msg = f"file is {size} bytes, over the limit of {skill.max_file_bytes}"
            out.append(Problem(skill.root / rel, None, msg, "error"))
        if "\0" in text:
            out.append(Problem(skill.root / rel, line_at(text, text.index("\0")), "contains a NUL byte", "error"))
    return out + _warnings(skill.root, parsed, skill.files, skill.assets)


def format_violations_of(skill: Skill) -> list[Problem]:
    try:
        parsed = parse_skill_md(skill.root / SKILL_MD, skill.files[SKILL_MD])
    except SkillError:
        return []
    return [p for p in _l1_problems(skill.root / SKILL_MD, parsed, skill.root.name) if p.kind == "format"]
