"""Reading a skill folder: what is content (not our temps, editor files, VCS metadata or what
.gitignore names), which files load as text, and the shared-lock read that never sees half a
patch. Nothing here writes into the skill folder."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shlex
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from skillgrad_tui.core import atomic
from skillgrad_tui.core.file_write import is_temp_name
from skillgrad_tui.core.errors import SkillError
from skillgrad_tui.core.skill_format import (DEFAULT_MAX_FILE_BYTES, EDITOR_TEMP_PATTERNS, IGNORED_NAMES, SKILL_MD,
                                             Problem, Skill, assemble_skill, split_front_matter)
from skillgrad_tui.core.skill_layout import always_text, linked_closure
from skillgrad_tui.core.vcs import VCS_NAMES, IgnoreRules


def default_journal_dir(root: Path) -> Path:
    return root.resolve().parent / ".skillgrad" / "journal"


def is_inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def is_ignored_name(name: str) -> bool:
    """Names that are never part of a skill's content: our temps, caches, editor files."""
    if name in IGNORED_NAMES or is_temp_name(name) or name.endswith(".pyc"):
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


def scan_content(root: Path, rules: IgnoreRules | None) -> tuple[list[str], list[Problem]]:
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
                if not is_inside(target, root):
                    raise SkillError(f"symlink resolves outside the skill folder (to {target})", full)
                problems.append(Problem(full, None, "symlinked folder inside the skill: not followed", "warning"))
                dirnames.remove(name)
        for name in filenames:
            full = here / name
            if full.is_symlink():
                target = full.resolve()
                if not is_inside(target, root):
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


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_unlocked(root: Path, max_file_bytes: int, honour_ignores: bool = True) -> Skill:
    root = root.resolve()
    if not root.is_dir():
        raise SkillError("skill folder does not exist or is not a folder", root)
    rules = IgnoreRules(root) if honour_ignores else None
    rels, problems = scan_content(root, rules)
    sizes = {rel: (root / rel).stat().st_size for rel in rels}
    texts, skipped = classify_texts(root, rels, sizes, lambda rel: (root / rel).read_bytes(), max_file_bytes)
    digests = {rel: _file_digest(root / rel) for rel in rels if rel not in texts}
    return assemble_skill(root, texts, digests, max_file_bytes, problems + skipped, rules)


def classify_texts(root: Path, rels: list[str], sizes: Mapping[str, int], read: Callable[[str], bytes],
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
        body = split_front_matter(root / SKILL_MD, texts[SKILL_MD]).body  # the front matter's license
    except SkillError:  # line names LICENSE.txt, which is no reading for the agent
        return texts, []  # assemble_skill reports it

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
        return load_unlocked(root, max_file_bytes, honour_ignores)


def text_files(files: Mapping[str, bytes]) -> dict[str, str]:
    """The files of a snapshot that load as text (SKILL.md, L3, scripts' code), by the loading rules."""
    sizes = {rel: len(data) for rel, data in files.items()}
    return classify_texts(Path("."), sorted(files), sizes, files.__getitem__, DEFAULT_MAX_FILE_BYTES)[0]
