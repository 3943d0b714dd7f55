"""Writing one file atomically: temp file beside it, fsync, rename, fsync of the folder.

For everything the engine writes that is not a skill: run logs, trajectories, config, exports,
predictions. Readers see the old content or the new, never a part. A skill folder is written
only by the skill store, through atomic.py's journalled multi-file transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from pathlib import Path

TEMP_MARKER = ".sgtmp-"
_TEMP_RE = re.compile(r"^\..+\.sgtmp-[A-Za-z0-9_]+$")


def is_temp_name(name: str) -> bool:
    """True for the temp files this module writes; file watchers and loaders should ignore them."""
    return bool(_TEMP_RE.match(name))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsync_dir(path: Path) -> None:
    # Makes renames and unlinks in `path` durable; some filesystems refuse fsync on a dir.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_new_file(path: Path, data: bytes, mode: int | None) -> None:
    # O_EXCL: never clobber a file we did not create; default mode goes through the umask.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if mode is not None:
            os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(path: Path, data: bytes, *, prefix: str = "") -> None:
    """One file: temp + fsync + rename + fsync(dir). Readers see the old or the new content.

    For the app's own state (run logs, journals, config, trajectories); several files of a
    skill go through atomic.write_files_atomically (the skill store's), which adds the journal.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f"{prefix}.{path.name}{TEMP_MARKER}{secrets.token_hex(6)}"
    try:
        write_new_file(temp, data, None)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_dir(path.parent)
