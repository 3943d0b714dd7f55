"""The run directory: the append-only event log, every skill version, trajectories and state.

Layout (`<skill parent>/.skillgrad/runs/<run-id>/`):
    events.jsonl            one event per line, fsynced per event; a crash may leave a torn last line
    versions.json           index of VersionRecord (atomic rewrite)
    versions/<n>-<hash12>/<skill-name>/...   the files of version n (a loadable skill folder);
                            a version whose content an earlier one already has shares its folder
    trajectories/step-<k>/<phase>/<task>.json
    memory.json, memory.md, overlay.md, overlays/step-<k>.md   the latest momentum memory (for people)
    memory/step-<k>-<stage>.json   memory snapshots that resume reads (named in state.json)
    state.json              what resume needs (atomic rewrite)

Every write is either an append of a whole line or write-temp + fsync + rename, so a SIGKILL at
any moment leaves each file either old or new. Nothing here writes inside the user's skill except
`restore_version`, through skill.restore_snapshot (journalled and atomic), which first copies every
file it removes or overwrites into set-aside/<stamp>-before-v<N>/.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from skillgrad_tui.core.file_write import fsync_dir
from skillgrad_tui.core.events import Event
from skillgrad_tui.core.records import Trajectory
from skillgrad_tui.core.run_dirs import (EVALS_NAME, EVENTS, RUNS_SUBDIR, STATE, TMP_PREFIX, VERSIONS_INDEX, RunError,
                                         atomic_write, default_runs_root, evals_root, find_runs, new_run_id,
                                         read_event_dicts, read_json, replay, run_skill_path, runs_root,
                                         unique_run_dir, write_json)
from skillgrad_tui.core.run_versions import (SET_ASIDE, VersionRecord, list_versions, read_tree, restore_version,
                                             set_aside_dir, text_chars, version_files)
from skillgrad_tui.core.skill import Skill, content_hash, load_skill

# Where runs live and their files (run_dirs.py) and the stored versions (run_versions.py) are still
# imported from here, as they were before the split.
__all__ = ["EVALS_NAME", "EVENTS", "RUNS_SUBDIR", "RunError", "RunLog", "SET_ASIDE", "STATE", "VERSIONS_INDEX",
           "VersionRecord", "atomic_write", "default_runs_root", "evals_root", "fault_hook", "find_runs",
           "list_versions", "new_run_id", "read_event_dicts", "read_json", "replay", "restore_version",
           "run_skill_path", "runs_root", "set_aside_dir", "text_chars", "unique_run_dir", "version_files",
           "write_json"]

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None  # type: ignore[assignment]

# Fault injection for tests (like atomic.fault_hook): called with a stage name at each durable
# write ("event", "version_dir", "versions_index", "state", "json", "text"); it may kill the process.
fault_hook: Callable[[str], None] | None = None


def _hook(stage: str) -> None:
    if fault_hook is not None:
        fault_hook(stage)


# ----------------------------------------------------------------------------------------- RunLog


class RunLog:
    """One run directory, opened by the single process that writes it (an flock enforces that)."""

    def __init__(self, run_dir: Path, *, create: bool = False) -> None:
        self.run_dir = Path(run_dir).resolve()
        if create:
            if self.run_dir.exists() and any(self.run_dir.iterdir()):
                raise RunError("run directory already exists and is not empty (use --resume)", self.run_dir)
            self.run_dir.mkdir(parents=True, exist_ok=True)
        elif not (self.run_dir / EVENTS).exists() and not (self.run_dir / STATE).exists():
            raise RunError("not a run directory (no events.jsonl or state.json)", self.run_dir)
        self._lock_fd = self._lock()
        self._clean_temps()
        self._events = self._open_events()
        self._records: list[VersionRecord] = self._read_index()

    # -- lifecycle ---------------------------------------------------------------------------------

    def _lock(self) -> int | None:
        if fcntl is None:
            return None
        fd = os.open(self.run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunError("run is in use by another skillgrad process", self.run_dir) from None
        return fd

    def _clean_temps(self) -> None:
        for folder in (self.run_dir, self.run_dir / "versions", self.run_dir / "memory"):
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                if p.name.startswith(TMP_PREFIX):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()

    def _open_events(self) -> IO[bytes]:
        path = self.run_dir / EVENTS
        if path.exists():
            data = path.read_bytes()
            cut = data.rfind(b"\n") + 1
            if cut < len(data):  # drop a torn last line so the next event starts on its own line
                with open(path, "r+b") as f:
                    f.truncate(cut)
                    os.fsync(f.fileno())
        events = open(path, "ab")
        fsync_dir(self.run_dir)
        return events

    def close(self) -> None:
        if self._events is not None and not self._events.closed:
            self._events.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- events ------------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Append one event durably (a whole line, flushed and fsynced)."""
        line = json.dumps(event.to_dict(), ensure_ascii=False, default=str) + "\n"
        self._events.write(line.encode("utf-8"))
        self._events.flush()
        os.fsync(self._events.fileno())
        _hook("event")

    __call__ = emit  # a RunLog is an EventSink

    def events(self) -> list[Event]:
        return list(replay(self.run_dir))

    # -- state and plain files ---------------------------------------------------------------------

    def read_state(self) -> dict[str, Any] | None:
        path = self.run_dir / STATE
        if not path.exists():
            return None
        try:
            state = read_json(path)
        except ValueError as exc:
            raise RunError(f"state.json is unreadable: {exc}", path) from None
        if not isinstance(state, dict):
            raise RunError("state.json is not a JSON object", path)
        return state

    def write_state(self, state: Mapping[str, Any]) -> None:
        write_json(self.run_dir / STATE, state)
        _hook("state")

    def write_json(self, rel: str, obj: Any) -> None:
        write_json(self.run_dir / rel, obj)
        _hook("json")

    def read_json(self, rel: str) -> Any:
        return read_json(self.run_dir / rel)

    def write_text(self, rel: str, text: str) -> None:
        atomic_write(self.run_dir / rel, text.encode("utf-8"))
        _hook("text")

    # -- trajectories ------------------------------------------------------------------------------

    def traj_dir(self, step: int | str, phase: str) -> Path:
        name = step if isinstance(step, str) else f"step-{step}"
        return self.run_dir / "trajectories" / name / phase

    def load_trajectories(self, traj_dir: Path, skill_hash: str | None = None) -> dict[str, Trajectory]:
        """Finished trajectories in a folder (by task id); a torn or foreign file is ignored."""
        from skillgrad_tui.core.evaluate import load_trajectory

        out: dict[str, Trajectory] = {}
        if not traj_dir.is_dir():
            return out
        for path in sorted(traj_dir.glob("*.json")):
            traj = load_trajectory(path)
            if traj is None or traj.verdict is None:
                continue
            if skill_hash is not None and traj.skill_hash != skill_hash:
                continue
            out[traj.task_id] = traj
        return out

    # -- versions ----------------------------------------------------------------------------------

    def _read_index(self) -> list[VersionRecord]:
        path = self.run_dir / VERSIONS_INDEX
        if not path.exists():
            return []
        try:
            return [VersionRecord.from_dict(d) for d in read_json(path)]
        except (ValueError, TypeError) as exc:
            raise RunError(f"versions.json is unreadable: {exc}", path) from None

    def _write_index(self) -> None:
        write_json(self.run_dir / VERSIONS_INDEX, [r.to_dict() for r in self._records])
        _hook("versions_index")

    def versions(self) -> list[VersionRecord]:
        return list(self._records)

    def version(self, n: int) -> VersionRecord:
        for r in self._records:
            if r.version == n:
                return r
        known = ", ".join(str(r.version) for r in self._records) or "none"
        raise RunError(f"no version {n} in this run (versions: {known})", self.run_dir / VERSIONS_INDEX)

    def version_dir(self, n: int) -> Path:
        """The skill folder holding version n (shared with the first version of the same content)."""
        rec = self.version(n)
        first = next(r for r in self._records if r.skill_hash == rec.skill_hash)
        outer = self.run_dir / "versions" / first.dirname
        inner = [p for p in outer.iterdir() if p.is_dir()] if outer.is_dir() else []
        if len(inner) != 1:
            raise RunError(f"version {n} has no stored files", outer)
        return inner[0]

    def version_files(self, n: int) -> dict[str, bytes]:
        rec = self.version(n)
        files = read_tree(self.version_dir(n))
        if content_hash(files) != rec.skill_hash:
            raise RunError(f"stored files of version {n} do not match its hash (edited by hand?)",
                           self.version_dir(n))
        return files

    def load_version(self, n: int) -> Skill:
        # Every stored file is content: the .gitignore rules of wherever the run dir lives do not apply.
        return load_skill(self.version_dir(n), honour_ignores=False)

    def save_version(self, files: Mapping[str, bytes], skill_name: str, *, step: int, parent: int | None,
                     val_score: float | None = None, train_score: float | None = None,
                     kept: bool = False, origin: str = "") -> VersionRecord:
        """Store a version and index it. Idempotent for the same (step, content, parent), so a run
        that redoes a step after a crash gets the same version number, not a duplicate."""
        digest = content_hash(files)
        for r in self._records:
            if r.step == step and r.skill_hash == digest and r.parent == parent:
                return r
        rec = VersionRecord(version=len(self._records), skill_hash=digest, step=step, parent=parent,
                            val_score=val_score, train_score=train_score, chars=text_chars(files),
                            kept=kept, created=time.time(), origin=origin)
        if not any(r.skill_hash == digest for r in self._records):
            self._store_files(rec, skill_name, files)
        self._records.append(rec)
        self._write_index()
        return rec

    def _store_files(self, rec: VersionRecord, skill_name: str, files: Mapping[str, bytes]) -> None:
        versions = self.run_dir / "versions"
        final = versions / rec.dirname
        if final.exists():  # left by a run that died before indexing it: keep it only if complete
            inner = final / skill_name
            if inner.is_dir() and content_hash(read_tree(inner)) == rec.skill_hash:
                return
            shutil.rmtree(final)
        tmp = versions / f"{TMP_PREFIX}{rec.dirname}-{secrets.token_hex(4)}"
        root = tmp / skill_name
        for rel, data in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for d in {(root / rel).parent for rel in files} | {root, tmp}:
            fsync_dir(d)
        os.rename(tmp, final)
        fsync_dir(versions)
        _hook("version_dir")

    def update_version(self, n: int, **changes: Any) -> VersionRecord:
        rec = self.version(n)
        for key, value in changes.items():
            if key not in {"val_score", "train_score", "kept", "minibatch", "decision"}:
                raise ValueError(f"cannot change {key} of a version")
            setattr(rec, key, value)
        self._write_index()
        return rec
