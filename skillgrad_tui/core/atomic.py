"""Atomic multi-file writes inside one folder, made crash-safe by a journal kept outside it.

A write of several files goes in four steps:
  1. every new content goes to a temp file beside its target (`.<name>.sgtmp-<rand>`), fsynced;
  2. a journal (JSON: each target, its temp, the new content's sha256, and the deletions) is written
     to the journal folder by temp file + rename, so it exists either whole or not at all;
  3. temps are renamed over their targets (os.replace) and deletions are done, dirs fsynced;
  4. the journal is removed.
The journal's appearance is the commit point. `recover_folder` rolls a present journal forward
(the temps it names were fsynced before it was written) and removes stray temps otherwise, so a
crash at any moment leaves either every old file or every new one, never a mix.

Writers must hold `folder_lock(..., exclusive=True)`; readers may hold the shared lock so that
they never read a folder half way through step 3.

Only the skill store (skill_store.py; skill_load.py for the shared read lock, skill_lock.py for
the lock file's name) imports this module:
an import-linter contract keeps every other writer to one file at a time (core/file_write.py),
so nothing else can write into a skill folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillgrad_tui.core.errors import SkillError
from skillgrad_tui.core.file_write import (TEMP_MARKER, fsync_dir, is_temp_name, sha256_hex, write_file_atomically,
                                           write_new_file)
from skillgrad_tui.core.vcs import VCS_NAMES

try:  # POSIX advisory locks; elsewhere the lock is a no-op (single-writer use only).
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None  # type: ignore[assignment]

JOURNAL_VERSION = 1

# Fault injection for tests: called as fault_hook(stage, count) at each step of a write, with
# stage in "temp_written", "journal_written", "renamed", "deleted" (count is 1-based within the
# stage; 0 for "journal_written"). A hook may raise, sleep, or get the process killed.
fault_hook: Callable[[str, int], None] | None = None


def _hook(stage: str, count: int) -> None:
    if fault_hook is not None:
        fault_hook(stage, count)


def _journal_key(root: Path) -> str:
    # Several skills may share a parent (and so a journal folder): key the files by the full path.
    digest = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{root.name}-{digest}"


def journal_path(root: Path, journal_dir: Path) -> Path:
    return journal_dir / f"{_journal_key(root.resolve())}.journal.json"


def lock_path(root: Path, journal_dir: Path) -> Path:
    return journal_dir / f"{_journal_key(root.resolve())}.lock"


@contextlib.contextmanager
def folder_lock(root: Path, journal_dir: Path, *, exclusive: bool) -> Iterator[None]:
    """Advisory lock on one folder's writes. Shared locks only wait if the lock file already
    exists, so that plain reading never creates our state folder beside a skill."""
    path = lock_path(root, journal_dir)
    if fcntl is None or (not exclusive and not path.exists()):
        yield
        return
    if exclusive:
        journal_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the flock


@dataclass(frozen=True)
class _Replace:
    target: str  # posix path relative to the root
    temp: str
    sha256: str


def _check_rel(rel: str) -> None:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a clean relative path inside the folder: {rel!r}")


def _refuse_linked_parents(root: Path, rel: str) -> None:
    """A folder inside the skill that is a symlink is never written through (it may lead to
    another folder of the skill, or, after a swap, anywhere)."""
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        sub = root.joinpath(*parts[:i])
        if sub.is_symlink():
            raise SkillError("is a symbolic link: files are never written through a link", sub)


def write_files_atomically(
    root: Path,
    writes: Mapping[str, bytes],
    deletes: Iterable[str] = (),
    *,
    journal_dir: Path,
    writer: str | None = None,
) -> None:
    """Replace/create `writes` and remove `deletes` (paths relative to `root`) all at once.

    The caller holds `folder_lock(root, journal_dir, exclusive=True)`. Errors before the commit
    point remove the temps and leave the folder untouched; errors after it leave the journal for
    `recover_folder` to finish. `writer` says who wrote (for the account recovery gives).
    """
    root = root.resolve()
    deletes = sorted(set(deletes))
    for rel in [*writes, *deletes]:
        _check_rel(rel)
        _refuse_linked_parents(root, rel)
    if set(writes) & set(deletes):
        raise ValueError("a path is both written and deleted")
    ops: list[_Replace] = []
    try:
        for count, (rel, data) in enumerate(sorted(writes.items()), start=1):
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.parent / f".{target.name}{TEMP_MARKER}{secrets.token_hex(6)}"
            mode = stat.S_IMODE(target.stat().st_mode) if target.is_file() else None  # keep +x on scripts
            ops.append(_Replace(rel, temp.relative_to(root).as_posix(), sha256_hex(data)))
            write_new_file(temp, data, mode)
            _hook("temp_written", count)
        journal = {
            "version": JOURNAL_VERSION,
            "root": str(root),
            "state": "committed",  # present == committed: it is written only once every temp is durable
            "replace": [{"target": o.target, "temp": o.temp, "sha256": o.sha256} for o in ops],
            "delete": deletes,
            "writer": writer,
        }
        _write_journal(journal_path(root, journal_dir), journal)
    except BaseException:
        for op in ops:
            with contextlib.suppress(OSError):
                (root / op.temp).unlink()
        raise
    _hook("journal_written", 0)
    _roll_forward(root, journal, journal_path(root, journal_dir))


def _write_journal(path: Path, journal: dict[str, Any]) -> None:
    write_file_atomically(path, json.dumps(journal, indent=1).encode("utf-8"))


def _prune_empty_dirs(root: Path, start: Path) -> None:
    # A deletion that empties references/ should not leave an empty folder behind.
    d = start
    while d != root and root in d.parents:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent


def _roll_forward(root: Path, journal: dict[str, Any], jpath: Path) -> int:
    """Finish the renames and deletions a journal describes; idempotent. Returns files touched."""
    touched_dirs: set[Path] = set()
    done = 0
    for count, op in enumerate(journal["replace"], start=1):
        target, temp = root / op["target"], root / op["temp"]
        if temp.exists():
            os.replace(temp, target)
        elif not target.is_file() or sha256_hex(target.read_bytes()) != op["sha256"]:
            raise SkillError(
                f"cannot finish the interrupted write: {op['target']} has neither its temp file nor the "
                "new content (changed by hand since?); inspect it, then delete the journal",
                jpath,
            )
        touched_dirs.add(target.parent)
        done += 1
        _hook("renamed", count)
    for count, rel in enumerate(journal["delete"], start=1):
        target = root / rel
        if target.is_symlink() or target.exists():
            target.unlink()
            done += 1
        touched_dirs.add(target.parent)
        _prune_empty_dirs(root, target.parent)
        _hook("deleted", count)
    for d in touched_dirs:
        if d.exists():
            fsync_dir(d)
    jpath.unlink()
    fsync_dir(jpath.parent)
    return done


def remove_stray_temps(root: Path) -> list[Path]:
    """Delete temp files left by a write that died before its commit point."""
    removed: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if d not in VCS_NAMES]  # never ours, never touched
        for name in filenames:
            if is_temp_name(name):
                path = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed


def recover_folder(root: Path, journal_dir: Path) -> str | None:
    """Roll forward a committed write, then drop stray temps. Caller holds the exclusive lock.

    Returns a one-line account of what it did, or None when there was nothing to do: a write past
    its commit point is finished (the new version), one before it is undone (the old version).
    """
    root = root.resolve()
    jpath = journal_path(root, journal_dir)
    did: list[str] = []
    if jpath.exists():
        try:
            journal = json.loads(jpath.read_text("utf-8"))
            if journal.get("version") != JOURNAL_VERSION or journal.get("root") != str(root):
                raise ValueError("journal is for another version or folder")
            for op in journal["replace"]:
                _check_rel(op["target"])
                _check_rel(op["temp"])
            for rel in journal["delete"]:
                _check_rel(rel)
        except (ValueError, KeyError, TypeError) as exc:
            raise SkillError(f"unreadable write journal ({exc}); inspect the folder, then delete it", jpath) from exc
        n = _roll_forward(root, journal, jpath)
        by = f" by {journal['writer']}" if isinstance(journal.get("writer"), str) else ""
        did.append(f"finished an interrupted write{by} ({n} files; it had passed its commit point, so the "
                   "skill is now the new version)")
    for stray in journal_dir.glob(f".{jpath.name}{TEMP_MARKER}*") if journal_dir.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            stray.unlink()
    strays = remove_stray_temps(root)
    if strays:
        did.append(f"undid an unfinished write: removed {len(strays)} temp file(s) of it (it had not reached "
                   "its commit point, so the skill is as it was before)")
    return "; ".join(did) or None


def pending_journal(root: Path, journal_dir: Path) -> Path | None:
    path = journal_path(root, journal_dir)
    return path if path.exists() else None
