"""The skill package, the optimiser's parameter: load, validate, hash, checked edits, atomic writes.

Layout (Agent Skills): SKILL.md = YAML front matter (L1) + Markdown body (L2); references/ and
any text file SKILL.md links or names are L3, read on demand; code under scripts/ is loaded
(hashed, editable) but is a tool, listed by usage and never pasted; assets/ (and any other file)
is listed and hashed but never loaded as text (skill_layout.py has the rules).
Everything that refuses a folder raises SkillError naming file and line;
nothing here writes inside the skill folder except `apply_patch` / `restore_snapshot`, through
the journalled writer in atomic.py. Our own state (journal, lock) lives in
<parent>/.skillgrad/journal, never inside the skill folder. Version-control metadata and what
.gitignore names are not skill content (vcs.py): never hashed, written, moved or deleted.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shlex
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NamedTuple

import yaml

from skillgrad_tui.core import atomic
from skillgrad_tui.core.skill_layout import always_text, is_reference_path, is_tool_path, linked_closure, tool_usage
from skillgrad_tui.core.errors import EditError, SkillError
from skillgrad_tui.core.vcs import VCS_NAMES, IgnoreRules

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
        digests = {p: atomic.sha256_hex(t.encode("utf-8")) for p, t in self.files.items()}
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
        split = _split_front_matter(self.root / SKILL_MD, self.files[SKILL_MD])
        return markdown_sections(split.body, split.body_line)

    def text_size(self) -> dict[str, int]:
        split = _split_front_matter(self.root / SKILL_MD, self.files[SKILL_MD])
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
    return _hash_digests({p: atomic.sha256_hex(b) for p, b in files.items()})


def default_journal_dir(root: Path) -> Path:
    return root.resolve().parent / ".skillgrad" / "journal"


# ---------------------------------------------------------------------------------------- parsing


class _FrontMatter(NamedTuple):
    yaml_text: str  # between the delimiter lines
    yaml_start: int  # offset of yaml_text in the file text
    yaml_line: int  # 1-based file line where yaml_text starts
    body: str
    body_start: int  # offset of the body in the file text
    body_line: int  # 1-based file line where the body starts


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _split_front_matter(path: Path, text: str) -> _FrontMatter:
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
                text[yaml_start:offset], yaml_start, 2, text[body_start:], body_start, _line_at(text, body_start)
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


def _parse_skill_md(path: Path, text: str) -> _ParsedSkillMd:
    split = _split_front_matter(path, text)
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
                warn(root / path, _line_at(text, m.start()), f"mentions {target}, which does not exist")
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


# ---------------------------------------------------------------------------------------- loading


def _creatable(rel: str) -> bool:
    """Where an edit may create a new file: a reference, or a script (a tool)."""
    return is_reference_path(rel) or is_tool_path(rel)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def is_ignored_name(name: str) -> bool:
    """Names that are never part of a skill's content: our temps, caches, editor files."""
    if name in IGNORED_NAMES or atomic.is_temp_name(name) or name.endswith(".pyc"):
        return True
    return any(fnmatch.fnmatchcase(name, pat) for pat in EDITOR_TEMP_PATTERNS)


def walk_content(root: Path, rules: IgnoreRules | None) -> Iterator[tuple[Path, list[str], list[str]]]:
    """os.walk over what may be skill content: our temps, caches, editor files, VCS metadata and
    (with `rules`) what .gitignore names are left out, ignored folders not entered. Top-down, so a
    caller may prune `dirnames` further."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        rel = here.relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"

        def skip(name: str, is_dir: bool) -> bool:
            if is_ignored_name(name) or name in VCS_NAMES:
                return True
            return rules is not None and rules.ignored(prefix + name, is_dir=is_dir)

        dirnames[:] = sorted(d for d in dirnames if not skip(d, True))
        yield here, dirnames, [f for f in filenames if not skip(f, False)]


def _scan(root: Path, rules: IgnoreRules | None) -> tuple[list[str], list[Problem]]:
    """Every content file under root (sorted posix paths). Refuses links that leave the folder,
    broken links and special files; skips what walk_content leaves out and (with a warning)
    linked dirs."""
    found: list[str] = []
    problems: list[Problem] = []
    for here, dirnames, filenames in walk_content(root, rules):
        for name in list(dirnames):
            full = here / name
            if full.is_symlink():
                target = full.resolve()
                if not _inside(target, root):
                    raise SkillError(f"symlink resolves outside the skill folder (to {target})", full)
                problems.append(Problem(full, None, "symlinked folder inside the skill: not followed", "warning"))
                dirnames.remove(name)
        for name in filenames:
            full = here / name
            if full.is_symlink():
                target = full.resolve()
                if not _inside(target, root):
                    raise SkillError(f"symlink resolves outside the skill folder (to {target})", full)
                if not target.exists():
                    raise SkillError(f"broken symlink (to {target})", full)
            if not full.is_file():
                raise SkillError("not a regular file (device, socket or pipe)", full)
            rel = full.relative_to(root).as_posix()
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                raise SkillError("file name is not valid UTF-8", full) from None
            found.append(rel)
    return sorted(found), problems


def _decode(path: Path, data: bytes, max_file_bytes: int) -> str:
    if len(data) > max_file_bytes:
        raise SkillError(f"file is {len(data)} bytes, over the limit of {max_file_bytes}", path)
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise SkillError(f"binary content (NUL byte at offset {nul}) where text is expected", path, line)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        msg = f"not UTF-8: invalid byte 0x{data[exc.start]:02x} at byte offset {exc.start}"
        raise SkillError(msg, path, line) from None


def _assemble(
    root: Path, files: dict[str, str], asset_digests: dict[str, str], max_file_bytes: int, extra: list[Problem],
    ignore: IgnoreRules | None = None,
) -> Skill:
    """Build and check a Skill from in-memory content (disk loads and edit previews share this)."""
    md = root / SKILL_MD
    if SKILL_MD not in files:
        near = [p for p in [*files, *asset_digests] if p.lower() == "skill.md"]
        hint = f" (found {near[0]}; the name is case-sensitive)" if near else ""
        raise SkillError(f"missing SKILL.md{hint}", md)
    parsed = _parse_skill_md(md, files[SKILL_MD])
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


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_unlocked(root: Path, max_file_bytes: int, honour_ignores: bool = True) -> Skill:
    root = root.resolve()
    if not root.is_dir():
        raise SkillError("skill folder does not exist or is not a folder", root)
    rules = IgnoreRules(root) if honour_ignores else None
    rels, problems = _scan(root, rules)
    sizes = {rel: (root / rel).stat().st_size for rel in rels}
    texts, skipped = _classify(root, rels, sizes, lambda rel: (root / rel).read_bytes(), max_file_bytes)
    digests = {rel: _file_digest(root / rel) for rel in rels if rel not in texts}
    return _assemble(root, texts, digests, max_file_bytes, problems + skipped, rules)


def _classify(root: Path, rels: list[str], sizes: Mapping[str, int], read: Callable[[str], bytes],
              max_file_bytes: int) -> tuple[dict[str, str], list[Problem]]:
    """The text files of a skill (SKILL.md, references/, scripts/ code, and what they name), and a
    warning for each named file that is not loaded as text. A bad file among the first three kinds
    refuses the skill (file and line); a named file of another kind that is big or binary is only listed."""
    texts: dict[str, str] = {}
    for rel in rels:
        if always_text(rel):
            if sizes[rel] > max_file_bytes:  # check before reading a huge file into memory
                raise SkillError(f"file is {sizes[rel]} bytes, over the limit of {max_file_bytes}", root / rel)
            texts[rel] = _decode(root / rel, read(rel), max_file_bytes)
    if SKILL_MD not in texts:
        return texts, []
    try:
        body = _split_front_matter(root / SKILL_MD, texts[SKILL_MD]).body  # the front matter's license
    except SkillError:  # line names LICENSE.txt, which is no reading for the agent
        return texts, []  # _assemble reports it

    def read_text(rel: str) -> str | None:
        try:
            return _decode(root / rel, read(rel), max_file_bytes)
        except SkillError:
            return None

    seeds = {**{p: t for p, t in texts.items() if p != SKILL_MD}, SKILL_MD: body}
    others = {rel: sizes[rel] for rel in rels if rel not in texts}
    found, skipped = linked_closure(seeds, others, read_text)
    texts.update(found)
    notes = [Problem(root / rel, None, f"named by the skill but not loaded as text ({sizes[rel]} bytes, binary, a "
                     "schema or under assets/): the agent never sees it in a prompt", "warning")
             for rel in skipped if not rel.startswith("assets/")]
    return texts, notes


class PendingWrite(SkillError):
    """A write of the skill was committed (its journal exists) but not finished: a crash."""


def recover_command(root: Path) -> str:
    return f"skillgrad recover {shlex.quote(str(Path(root)))}"


def _refuse_pending(root: Path, journal_dir: Path) -> None:
    pending = atomic.pending_journal(root, journal_dir)
    if pending is not None:
        raise PendingWrite(f"an interrupted write of this skill is pending (a crash after its commit point); "
                           f"`{recover_command(root)}` finishes it", root)


def load_skill(root: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, honour_ignores: bool = True) -> Skill:
    """Read and check a skill folder. Raises SkillError (file and line) for anything that breaks
    the format; softer findings end up in `skill.problems`. `honour_ignores=False` is for stored
    versions, whose every file is content."""
    jdir = default_journal_dir(root)
    with atomic.folder_lock(root, jdir, exclusive=False):  # never read half of a patch
        _refuse_pending(root, jdir)
        return _load_unlocked(root, max_file_bytes, honour_ignores)


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
        parsed = _parse_skill_md(md, skill.files[SKILL_MD])
    except SkillError as exc:
        return [Problem(exc.path or md, exc.line, exc.message, "error")]
    out = _l1_problems(md, parsed, skill.root.name)
    for rel, text in sorted(skill.files.items()):
        size = len(text.encode("utf-8"))
        if size > skill.max_file_bytes:
            msg = f"file is {size} bytes, over the limit of {skill.max_file_bytes}"
            out.append(Problem(skill.root / rel, None, msg, "error"))
        if "\0" in text:
            out.append(Problem(skill.root / rel, _line_at(text, text.index("\0")), "contains a NUL byte", "error"))
    return out + _warnings(skill.root, parsed, skill.files, skill.assets)


# ------------------------------------------------------------------------------------------ edits


@dataclass(frozen=True)
class Edit:
    layer: Layer
    path: str  # relative to the skill root, posix separators
    old: str  # "" creates a new L3 file
    new: str


@dataclass
class Patch:
    edits: list[Edit]
    rationale: str = ""
    gradients: list[str] = field(default_factory=list)  # labels/ids of the text gradients behind it
    tasks: list[str] = field(default_factory=list)  # ids of the tasks behind it


def _edit_path(skill: Skill, edit: Edit) -> str:
    raw = edit.path
    if not raw or "\\" in raw or "\0" in raw:
        raise EditError(f"bad path {raw!r}: use a relative path with '/' separators", skill.root)
    p = PurePosixPath(raw)
    if p.is_absolute() or ".." in p.parts:
        raise EditError(f"{raw} is outside the skill folder", skill.root / raw.lstrip("/"))
    rel = p.as_posix()
    if rel == ".":
        raise EditError("empty path", skill.root)
    if edit.layer not in ("L1", "L2", "L3"):
        raise EditError(f"unknown layer {edit.layer!r}", skill.root / rel)
    want = ("L1", "L2") if rel == SKILL_MD else ("L3",)
    if edit.layer not in want:
        raise EditError(f"a {edit.layer} edit cannot target {rel} (its layer is {' or '.join(want)})", skill.root / rel)
    return rel


def _region(path: Path, text: str, layer: Layer) -> tuple[int, int]:
    """Offsets [start, end) of the text an edit of `layer` may touch in this file."""
    if layer == "L3":
        return 0, len(text)
    split = _split_front_matter(path, text)
    if layer == "L1":
        return split.yaml_start, split.yaml_start + len(split.yaml_text)
    return split.body_start, len(text)


def _apply_one(skill: Skill, edit: Edit, current: dict[str, str]) -> None:
    rel = _edit_path(skill, edit)
    path = skill.root / rel
    if "\0" in edit.new:
        raise EditError("new text contains a NUL byte", path)
    if edit.old == "":
        if rel in current or rel in skill.assets or (skill.root / rel).exists():
            raise EditError("file already exists: an edit with empty 'old' only creates new files", path)
        if not _creatable(rel):
            raise EditError("new files may only be created under references/ or scripts/ (code)", path)
        parts = PurePosixPath(rel).parts
        if atomic.is_temp_name(parts[-1]) or any(part in IGNORED_NAMES or part in VCS_NAMES for part in parts):
            raise EditError("reserved file name", path)
        if not edit.new.strip():
            raise EditError("a new file needs content", path)
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if i < len(parts) and (skill.root / sub).is_symlink():
                raise EditError(f"{sub} is a symbolic link: files are never written through a link", path)
            if skill.ignore is not None and skill.ignore.ignored(sub, is_dir=i < len(parts)):
                raise EditError(".gitignore names this path, so it would not be part of the skill", path)
        for parent in PurePosixPath(rel).parents:
            if parent.as_posix() in current or parent.as_posix() in skill.assets:
                raise EditError(f"{parent} is a file, not a folder", path)
        current[rel] = edit.new
        return
    if edit.old == edit.new:
        raise EditError("edit changes nothing (old == new)", path)
    if rel not in current:
        why = "is an asset (binary or not loaded), not editable text" if rel in skill.assets else "does not exist"
        raise EditError(f"{rel} {why}", path)
    text = current[rel]
    start, end = _region(path, text, edit.layer)
    where = {"L1": "front matter", "L2": "body", "L3": "file"}[edit.layer]
    hits: list[int] = []
    i = text.find(edit.old, start, end)
    while i >= 0:
        hits.append(i)
        i = text.find(edit.old, i + 1, end)
    if not hits:
        elsewhere = " (it is in the other part of SKILL.md: check the layer)" if edit.old in text else ""
        raise EditError(f"old text not found in the {where}{elsewhere}", path)
    if len(hits) > 1:
        lines = ", ".join(str(_line_at(text, h)) for h in hits)
        msg = f"old text occurs {len(hits)} times in the {where} (lines {lines}); make it unique"
        raise EditError(msg, path, _line_at(text, hits[0]))
    new_text = text[: hits[0]] + edit.new + text[hits[0] + len(edit.old) :]
    if edit.layer != "L3":
        _check_regions(path, text, new_text, edit, hits[0])
    current[rel] = new_text


def _check_regions(path: Path, old_text: str, new_text: str, edit: Edit, at: int) -> None:
    """An L1 edit must leave the body as it was and vice versa, e.g. no stray '---' line."""
    line = _line_at(old_text, at)
    before = _split_front_matter(path, old_text)
    try:
        after = _split_front_matter(path, new_text)
    except SkillError:
        raise EditError("would break front matter (its delimiters)", path, line) from None
    if edit.layer == "L1" and after.body != before.body:
        raise EditError("would break front matter: the new text ends it early", path, line)
    if edit.layer == "L2" and after.yaml_text != before.yaml_text:
        raise EditError("would break front matter", path, line)


def apply_edits_in_memory(skill: Skill, edits: list[Edit]) -> dict[str, str]:
    """New full text of every file the edits touch, in order; the result must load and validate.
    Raises EditError naming the file (and line) of the first edit that does not apply."""
    if not edits:
        raise EditError("no edits", skill.root)
    current = dict(skill.files)
    for edit in edits:
        _apply_one(skill, edit, current)
    changed = {p: t for p, t in current.items() if skill.files.get(p) != t}
    for rel, text in changed.items():
        size = len(text.encode("utf-8"))
        if size > skill.max_file_bytes:
            raise EditError(f"result would be {size} bytes, over the limit of {skill.max_file_bytes}", skill.root / rel)
    try:
        result = _assemble(skill.root, current, dict(skill.asset_digests), skill.max_file_bytes, [], skill.ignore)
    except SkillError as exc:
        raise EditError(f"result would not load: {exc.message}", exc.path, exc.line) from None
    had = {p.message.split("'")[1] for p in _format_violations(skill)}  # messages open with 'name' or 'description'
    for p in result.format_violations():  # a published skill may break a limit; an edit may not add one
        if p.message.split("'")[1] not in had:
            raise EditError(p.message, p.path, p.line)
    return changed


def _format_violations(skill: Skill) -> list[Problem]:
    try:
        parsed = _parse_skill_md(skill.root / SKILL_MD, skill.files[SKILL_MD])
    except SkillError:
        return []
    return [p for p in _l1_problems(skill.root / SKILL_MD, parsed, skill.root.name) if p.kind == "format"]


def check_edit(skill: Skill, edit: Edit) -> str | None:
    """None if the edit applies on its own, else the reason (with file and line)."""
    try:
        apply_edits_in_memory(skill, [edit])
    except EditError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------------------- writes and versions


class SkillChanged(SkillError):
    """The skill on disk is not the version a writer expected (someone else changed it)."""

    def __init__(self, root: Path, expected: str, found: str) -> None:
        self.expected = expected
        self.found = found
        super().__init__(f"skill on disk is {found[:12]}, not the expected {expected[:12]}", root)


def apply_patch(root: Path, patch: Patch, *, expect_hash: str | None = None, journal_dir: Path | None = None,
                writer: str | None = None) -> Skill:
    """Check every edit against the skill as it is on disk now, then write all files at once.

    With `expect_hash`, the skill on disk must be that version: the check and the write happen
    under one exclusive lock, so no other writer can slip in between (SkillChanged otherwise).
    `writer` (e.g. "run X, step 3") is recorded in the journal for `skillgrad recover`."""
    jdir = journal_dir or default_journal_dir(root)
    with atomic.folder_lock(root, jdir, exclusive=True):
        atomic.recover_folder(root, jdir)
        skill = _load_unlocked(root, DEFAULT_MAX_FILE_BYTES)
        if expect_hash is not None and skill.hash != expect_hash:
            raise SkillChanged(skill.root, expect_hash, skill.hash)
        changed = apply_edits_in_memory(skill, patch.edits)
        if changed:
            atomic.write_files_atomically(
                skill.root, {p: t.encode("utf-8") for p, t in changed.items()}, journal_dir=jdir, writer=writer
            )
        return _load_unlocked(root, skill.max_file_bytes)


def _read_snapshot(root: Path) -> dict[str, bytes]:
    rels, _ = _scan(root, IgnoreRules(root))
    return {rel: (root / rel).read_bytes() for rel in rels}


def snapshot(skill: Skill) -> dict[str, bytes]:
    """Bytes of every file of the skill folder, assets included. Refuses if the folder changed on
    disk since `skill` was loaded, so a stored version always matches its hash."""
    jdir = default_journal_dir(skill.root)
    with atomic.folder_lock(skill.root, jdir, exclusive=False):
        files = _read_snapshot(skill.root.resolve())
    if content_hash(files) != skill.hash:
        raise SkillError("skill folder changed on disk since it was loaded; reload it and try again", skill.root)
    return files


def text_files(files: Mapping[str, bytes]) -> dict[str, str]:
    """The files of a snapshot that load as text (SKILL.md, L3, scripts' code), by the loading rules."""
    sizes = {rel: len(data) for rel, data in files.items()}
    return _classify(Path("."), sorted(files), sizes, files.__getitem__, DEFAULT_MAX_FILE_BYTES)[0]


def _check_snapshot(root: Path, files: Mapping[str, bytes]) -> None:
    """Refuse a snapshot that would not load, before anything is written."""
    for rel in files:
        p = PurePosixPath(rel)
        if not rel or p.is_absolute() or p.as_posix() != rel or any(x in ("..", ".") for x in p.parts) or "\\" in rel:
            raise SkillError(f"snapshot path {rel!r} is not a clean relative path", root)
        if atomic.is_temp_name(p.name) or any(x in IGNORED_NAMES or x in VCS_NAMES for x in p.parts):
            raise SkillError(f"snapshot holds a reserved file name {rel!r}", root / rel)
    sizes = {rel: len(data) for rel, data in files.items()}
    texts, _ = _classify(root, sorted(files), sizes, files.__getitem__, DEFAULT_MAX_FILE_BYTES)
    digests = {rel: atomic.sha256_hex(data) for rel, data in files.items() if rel not in texts}
    _assemble(root, texts, digests, DEFAULT_MAX_FILE_BYTES, [])


@dataclass
class Restored:
    """What a restore did. Nothing of the user's is lost: every file the restore removed or
    overwrote was first copied (fsynced) into `set_aside`, under its path in the skill."""

    skill: Skill
    removed: list[str]  # files the version does not have: moved to set_aside
    replaced: list[str]  # files overwritten with the version's content: old content in set_aside
    set_aside: Path | None  # None when nothing was removed or replaced

    @property
    def hash(self) -> str:
        return self.skill.hash


def _copy_aside(root: Path, rels: list[str], dest: Path) -> None:
    for rel in rels:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target, follow_symlinks=False)
        if not target.is_symlink():
            with open(target, "rb") as f:
                os.fsync(f.fileno())
    for folder in {(dest / rel).parent for rel in rels} | {dest}:
        atomic.fsync_dir(folder)


def restore_snapshot(root: Path, files: dict[str, bytes], *, set_aside: Path | None = None,
                     journal_dir: Path | None = None, writer: str | None = None) -> Restored:
    """Make the folder's content exactly `files` (atomically). VCS metadata and ignored files are
    not content and stay as they are. Every content file that is removed or overwritten is first
    copied into `set_aside`; without one, a restore that would remove a file is refused."""
    root = root.resolve()
    _check_snapshot(root, files)
    if set_aside is not None and _inside(set_aside.resolve(), root):
        raise SkillError("the folder for set-aside files must be outside the skill folder", set_aside)
    jdir = journal_dir or default_journal_dir(root)
    root.mkdir(exist_ok=True)
    with atomic.folder_lock(root, jdir, exclusive=True):
        atomic.recover_folder(root, jdir)
        current = _read_snapshot(root)
        rules = IgnoreRules(root)
        hidden = sorted(p for p in files if p not in current and (root / p).exists() and rules.ignored(p))
        if hidden:
            raise SkillError(f"the version has {hidden[0]}, which .gitignore names in the folder now; "
                             "move that file away first", root / hidden[0])
        writes = {p: b for p, b in files.items() if current.get(p) != b}
        deletes = sorted(p for p in current if p not in files)
        replaced = sorted(p for p in writes if p in current)
        if deletes and set_aside is None:
            listed = ", ".join(deletes[:5]) + (f" and {len(deletes) - 5} more" if len(deletes) > 5 else "")
            raise SkillError(f"restoring would remove {len(deletes)} file(s) that the version does not have "
                             f"({listed}); give a folder to keep them in", root)
        kept_in: Path | None = None
        if set_aside is not None and (deletes or replaced):
            _copy_aside(root, deletes + replaced, set_aside)
            kept_in = set_aside
        if writes or deletes:
            atomic.write_files_atomically(root, writes, deletes, journal_dir=jdir, writer=writer)
        return Restored(_load_unlocked(root, DEFAULT_MAX_FILE_BYTES), deletes, replaced, kept_in)


def recover(root: Path, *, journal_dir: Path | None = None) -> str | None:
    """Finish an interrupted write (roll forward) and remove stray temps; None if nothing to do.
    The account says which: a committed write is finished, an uncommitted one undone."""
    jdir = journal_dir or default_journal_dir(root)
    if not jdir.is_dir():  # no journal and no writer: only stray temps to drop; create nothing
        return atomic.recover_folder(root, jdir)
    with atomic.folder_lock(root, jdir, exclusive=True):
        return atomic.recover_folder(root, jdir)
