"""One writer per skill folder: a lock held for the whole of a run, a watch session, a rollback.

The per-write lock in atomic.py only keeps one write from interleaving with another; two runs on
one skill could still take turns and merge their edits into a version that neither recorded. This
lock is taken once, for as long as anything may write the skill, and refuses a second holder at
once with a line naming the first (pid, command, run id, since when).

It is an flock(2) on `<parent>/.skillgrad/journal/<key>.owner`, so the kernel releases it when its
holder dies, however it dies: a lock left by a dead process is simply free, and the next holder
takes it over (and can say whose it was). The file's JSON names the holder for the error message;
it is never what decides. Nested use in one thread (a watch session that starts runs) is counted,
not refused; another thread of the same process is refused like another process.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from skillgrad_tui.core import atomic
from skillgrad_tui.core.errors import SkillError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None  # type: ignore[assignment]


@dataclass
class Holder:
    pid: int
    command: str
    run_id: str | None
    since: float
    host: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        run = f", run {self.run_id}" if self.run_id else ""
        host = "" if self.host == socket.gethostname() else f" on {self.host}"
        return f"pid {self.pid}{host} ({self.command}){run}, since {when}"

    @staticmethod
    def parse(text: str) -> "Holder | None":
        try:
            d: dict[str, Any] = json.loads(text)
            return Holder(int(d["pid"]), str(d["command"]), d.get("run_id"), float(d["since"]), str(d["host"]))
        except (ValueError, KeyError, TypeError):
            return None


class SkillBusy(SkillError):
    """Another run, watch session or rollback is writing this skill."""

    def __init__(self, root: Path, holder: Holder | None) -> None:
        self.holder = holder
        who = holder.describe() if holder else "another process (it did not say which)"
        super().__init__(f"skill is in use by {who}; wait for it to finish or stop it", root)


def owner_path(root: Path) -> Path:
    from skillgrad_tui.core.skill import default_journal_dir

    return atomic.lock_path(root, default_journal_dir(root)).with_suffix(".owner")


def _command() -> str:
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("skillgrad", "__main__.py"):
        argv[0] = "skillgrad"
    text = shlex.join(argv) if argv else f"python pid {os.getpid()}"
    return text if len(text) <= 160 else text[:157] + "..."


# path -> (thread id, depth, lock) of the locks this process holds
_held: dict[Path, tuple[int, int, "SkillLock"]] = {}
_held_guard = threading.Lock()


class SkillLock:
    """`with SkillLock(root, run_id=...):` -- raises SkillBusy when another writer holds it.

    `taken_over` names the previous holder when it died holding the lock (its record was left)."""

    def __init__(self, root: Path, *, run_id: str | None = None, command: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.path = owner_path(self.root)
        self.run_id = run_id
        self.command = command or _command()
        self.taken_over: Holder | None = None
        self._fd: int | None = None
        self._nested = False

    def acquire(self) -> "SkillLock":
        me = threading.get_ident()
        with _held_guard:
            held = _held.get(self.path)
            if held is not None and held[0] == me:
                _held[self.path] = (me, held[1] + 1, held[2])
                self._nested = True
                return self
        if fcntl is None:  # pragma: no cover - no advisory locks on this OS
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = Holder.parse(_read(fd))
            os.close(fd)
            raise SkillBusy(self.root, holder) from None
        self.taken_over = Holder.parse(_read(fd))  # a record left behind: its holder died
        self._fd = fd
        self._write()
        with _held_guard:
            _held[self.path] = (me, 1, self)
        return self

    def set_run_id(self, run_id: str) -> None:
        """Name the run in the record once it has an id (a new run gets one after locking)."""
        with _held_guard:
            held = _held.get(self.path)
        owner = held[2] if held is not None else self
        owner.run_id = run_id
        if owner._fd is not None:
            owner._write()

    def _write(self) -> None:
        assert self._fd is not None
        record = Holder(os.getpid(), self.command, self.run_id, time.time(), socket.gethostname())
        data = json.dumps(asdict(record)).encode("utf-8")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def release(self) -> None:
        with _held_guard:
            held = _held.get(self.path)
            if self._nested:
                if held is not None:
                    _held[self.path] = (held[0], held[1] - 1, held[2])
                self._nested = False
                return
            _held.pop(self.path, None)
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # an empty record: released cleanly, nothing to take over
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> "SkillLock":
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        return ""


def holder_of(root: Path) -> Holder | None:
    """Who holds the skill's lock now (None when it is free); never takes it."""
    path = owner_path(Path(root).resolve())
    if fcntl is None or not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return Holder.parse(_read(fd))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
