"""Which contents of a skill folder the engine (or the app for it) wrote itself.

Watch mode re-evaluates a skill when a person saves it, so it must not take the engine's own
patches for an edit. The engine says what it wrote in its events: `VersionSaved` names every
version a run produced and `StepFinished` the version on disk once a step is done; a rollback or
an approved review records its hash before writing. One tracker, fed by those events, serves the
app and `skillgrad watch`: `latest()` is what `SkillWatcher(ignore_hash=...)` compares a burst
against, and `is_own(hash)` judges a change seen while a run was writing.

Thread-safe: the worker thread feeds it while the watcher thread and the UI read it.
"""

from __future__ import annotations

import threading

from skillgrad_tui.core.events import Event, StepFinished, VersionSaved


class OwnWrites:
    """The hashes this process wrote into the skill folder, and the last one."""

    def __init__(self, current: str | None = None) -> None:
        self._lock = threading.Lock()
        self._latest = current  # the folder's content as we last left it
        self._written: set[str] = set()

    def wrote(self, skill_hash: str) -> None:
        """The folder now holds (or is about to hold) `skill_hash`, written by us."""
        with self._lock:
            self._written.add(skill_hash)
            self._latest = skill_hash

    def produced(self, skill_hash: str) -> None:
        """A version we made that may be on disk for a while (not necessarily the last one)."""
        with self._lock:
            self._written.add(skill_hash)

    def observe(self, event: Event) -> None:
        """Feed one engine event: the ones that say the engine wrote the skill are noted."""
        if isinstance(event, StepFinished):
            self.wrote(event.skill_hash)
        elif isinstance(event, VersionSaved):
            self.produced(event.skill_hash)

    def reset(self, current: str) -> None:
        """Start from the folder as it is now (watch mode switched on with no run writing)."""
        with self._lock:
            self._latest = current

    def latest(self) -> str | None:
        with self._lock:
            return self._latest

    def is_own(self, skill_hash: str) -> bool:
        """True for content we wrote; False for anything else, a person's edit included."""
        with self._lock:
            return skill_hash in self._written or skill_hash == self._latest


__all__ = ["OwnWrites"]
