"""The only writer into a skill folder: patches and restores through the journalled atomic
writer (atomic.py), under the folder's exclusive lock; snapshots that match their hash; recovery
of an interrupted write."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from skillgrad_tui.core import atomic
from skillgrad_tui.core.file_write import fsync_dir, is_temp_name, sha256_hex
from skillgrad_tui.core.errors import SkillError
from skillgrad_tui.core.skill_edits import Patch, apply_edits_in_memory
from skillgrad_tui.core.skill_format import DEFAULT_MAX_FILE_BYTES, IGNORED_NAMES, Skill, assemble_skill, content_hash
from skillgrad_tui.core.skill_load import classify_texts, default_journal_dir, is_inside, load_unlocked, scan_content
from skillgrad_tui.core.vcs import VCS_NAMES, IgnoreRules


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
        skill = load_unlocked(root, DEFAULT_MAX_FILE_BYTES)
        if expect_hash is not None and skill.hash != expect_hash:
            raise SkillChanged(skill.root, expect_hash, skill.hash)
        changed = apply_edits_in_memory(skill, patch.edits)
        if changed:
            atomic.write_files_atomically(
                skill.root, {p: t.encode("utf-8") for p, t in changed.items()}, journal_dir=jdir, writer=writer
            )
        return load_unlocked(root, skill.max_file_bytes)


def _read_snapshot(root: Path) -> dict[str, bytes]:
    rels, _ = scan_content(root, IgnoreRules(root))
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


def _check_snapshot(root: Path, files: Mapping[str, bytes]) -> None:
    """Refuse a snapshot that would not load, before anything is written."""
    for rel in files:
        p = PurePosixPath(rel)
        if not rel or p.is_absolute() or p.as_posix() != rel or any(x in ("..", ".") for x in p.parts) or "\\" in rel:
            raise SkillError(f"snapshot path {rel!r} is not a clean relative path", root)
        if is_temp_name(p.name) or any(x in IGNORED_NAMES or x in VCS_NAMES for x in p.parts):
            raise SkillError(f"snapshot holds a reserved file name {rel!r}", root / rel)
    sizes = {rel: len(data) for rel, data in files.items()}
    texts, _ = classify_texts(root, sorted(files), sizes, files.__getitem__, DEFAULT_MAX_FILE_BYTES)
    digests = {rel: sha256_hex(data) for rel, data in files.items() if rel not in texts}
    assemble_skill(root, texts, digests, DEFAULT_MAX_FILE_BYTES, [])


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
        fsync_dir(folder)


def restore_snapshot(root: Path, files: dict[str, bytes], *, set_aside: Path | None = None,
                     journal_dir: Path | None = None, writer: str | None = None) -> Restored:
    """Make the folder's content exactly `files` (atomically). VCS metadata and ignored files are
    not content and stay as they are. Every content file that is removed or overwritten is first
    copied into `set_aside`; without one, a restore that would remove a file is refused."""
    root = root.resolve()
    _check_snapshot(root, files)
    if set_aside is not None and is_inside(set_aside.resolve(), root):
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
        return Restored(load_unlocked(root, DEFAULT_MAX_FILE_BYTES), deletes, replaced, kept_in)


def recover(root: Path, *, journal_dir: Path | None = None) -> str | None:
    """Finish an interrupted write (roll forward) and remove stray temps; None if nothing to do.
    The account says which: a committed write is finished, an uncommitted one undone."""
    jdir = journal_dir or default_journal_dir(root)
    if not jdir.is_dir():  # no journal and no writer: only stray temps to drop; create nothing
        return atomic.recover_folder(root, jdir)
    with atomic.folder_lock(root, jdir, exclusive=True):
        return atomic.recover_folder(root, jdir)
