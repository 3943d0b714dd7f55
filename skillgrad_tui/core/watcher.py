"""Watch a skill folder and report real content changes, once per burst.

Editors save in bursts (swap file, backup, rename, chmod), and our own patches land through the
journalled writer (temp file + rename). So the watcher does not react to events one by one: each
relevant event restarts a short debounce timer, and when the timer fires it hashes the folder's
content. It calls `on_change` only if that hash is new: not the one it last reported, and not the
one `ignore_hash()` says the app wrote itself. A folder that vanished or half-exists mid-save
hashes to a marker instead of raising, so deletes and renames never kill the watcher thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_CLOSED_NO_WRITE,
    EVENT_TYPE_OPENED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from skillgrad_tui.core.skill import content_hash, is_ignored_name, walk_content
from skillgrad_tui.core.vcs import VCS_NAMES, IgnoreRules

# Editor droppings: vim swap/backup files and its 4913 write probe, emacs lock/backup files, temps.
MISSING = "missing"  # folder_hash of a folder that does not exist (or is not readable)


def is_ignored_path(root: Path, path: str | os.PathLike[str]) -> bool:
    """Ignored if outside root, or if any part of it below root is an ignored name (our temps,
    editor files, VCS metadata: a commit or a tag is not a change to the skill)."""
    try:
        rel = Path(os.fsdecode(path)).resolve().relative_to(root)
    except (ValueError, OSError):
        return True
    return any(is_ignored_name(part) or part in VCS_NAMES for part in rel.parts)


def folder_hash(root: Path) -> str:
    """Content hash of the folder without editor temps, VCS metadata and what .gitignore names;
    equals `Skill.hash` of a clean folder.

    Never raises: a file deleted while we read is skipped (the next event re-hashes), an
    unreadable or absent folder hashes to MISSING, and an unreadable file to a per-path marker.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        return MISSING
    files: dict[str, bytes] = {}
    for here, _dirnames, filenames in walk_content(root, IgnoreRules(root)):
        for name in filenames:
            full = here / name
            rel = full.relative_to(root).as_posix()
            try:
                files[rel] = full.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:  # a socket, a permission problem: still a distinct state
                files[rel] = f"<unreadable {exc.errno}>".encode()
    return content_hash(files)


def short(h: str | None) -> str:
    return (h or "-")[:12]


class SkillWatcher:
    """Calls `on_change(summary)` from a timer thread after each burst that changed the content.

    summary names the changed paths ("SKILL.md modified", "references/a.md deleted", ...).
    `ignore_hash()` returns the hash of the folder as the app itself last wrote it (or None);
    a burst that ends on that content is the app's own write and is not reported.
    """

    def __init__(self, root: Path, on_change: Callable[[str], None], debounce_s: float = 0.5,
                 ignore_hash: Callable[[], str | None] | None = None) -> None:
        self.root = Path(root).resolve()
        self.on_change = on_change
        self.debounce_s = debounce_s
        self.ignore_hash = ignore_hash or (lambda: None)
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._pending: dict[str, str] = {}  # rel path -> last event type, for the summary
        self._last_hash: str | None = None
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self.reports = 0  # bursts reported, for tests and the status line
        self.ignored_own = 0  # bursts that ended on our own content

    @property
    def running(self) -> bool:
        return self._observer is not None

    @property
    def last_hash(self) -> str | None:
        return self._last_hash

    def start(self) -> None:
        if self._observer is not None:
            return
        self._last_hash = folder_hash(self.root)  # a touch without a content change is no change
        observer = Observer()
        observer.schedule(_Handler(self), str(self.root), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._pending.clear()
            observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            if threading.current_thread() is not observer:
                observer.join(timeout=5)

    def rebase(self) -> None:
        """Take the folder as it is now as seen (e.g. after a re-evaluation the app started)."""
        self._last_hash = folder_hash(self.root)

    # -- called from the observer thread
    def _event(self, event: FileSystemEvent) -> None:
        if event.is_directory and event.event_type == "modified":
            return  # a child's own event follows; a dir mtime alone is noise (e.g. a swap file)
        if event.event_type in (EVENT_TYPE_OPENED, EVENT_TYPE_CLOSED_NO_WRITE):
            return
        paths = [os.fsdecode(p) for p in (event.src_path, getattr(event, "dest_path", "")) if p]
        relevant = [p for p in paths if not is_ignored_path(self.root, p)]
        if not relevant and os.fsdecode(event.src_path) != str(self.root):
            return
        with self._lock:
            if self._observer is None:
                return
            for p in relevant or [str(self.root)]:
                try:
                    rel = Path(os.fsdecode(p)).resolve().relative_to(self.root).as_posix()
                except (ValueError, OSError):
                    rel = os.fsdecode(p)
                self._pending[rel if rel != "." else "(skill folder)"] = event.event_type
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce_s, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
            pending, self._pending = self._pending, {}
            if self._observer is None:
                return
        now = folder_hash(self.root)
        if now == self._last_hash:
            return  # touched, or changed and changed back within the burst
        self._last_hash = now
        if now == self.ignore_hash():
            self.ignored_own += 1
            return
        self.reports += 1
        summary = ", ".join(f"{p} {kind}" for p, kind in sorted(pending.items())) or "content changed"
        self.on_change(summary)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: SkillWatcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._watcher._event(event)
