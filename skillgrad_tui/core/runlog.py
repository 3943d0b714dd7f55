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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any

from skillgrad_tui.core.file_write import fsync_dir, write_file_atomically
from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.events import Event
from skillgrad_tui.core.records import Trajectory
from skillgrad_tui.core.errors import SkillError
from skillgrad_tui.core.skill import Restored, Skill, content_hash, load_skill, restore_snapshot, text_files

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None  # type: ignore[assignment]

# Where runs live and how they are named are defined here only: optimiser runs in
# <skill parent>/<[run] dir> (default .skillgrad/runs), evaluations in "evals" beside that folder,
# so that an evaluation never looks like a resumable optimiser run.
RUNS_SUBDIR = Path(".skillgrad") / "runs"
EVALS_NAME = "evals"
EVENTS = "events.jsonl"
VERSIONS_INDEX = "versions.json"
STATE = "state.json"
_TMP_PREFIX = ".tmp-"

# Fault injection for tests (like atomic.fault_hook): called with a stage name at each durable
# write ("event", "version_dir", "versions_index", "state", "json", "text"); it may kill the process.
fault_hook: Callable[[str], None] | None = None


class RunError(SkillgradError):
    """A run directory that is missing, in use, or does not hold what was asked for."""


def _hook(stage: str) -> None:
    if fault_hook is not None:
        fault_hook(stage)


# ------------------------------------------------------------------------------------ primitives


def atomic_write(path: Path, data: bytes) -> None:
    """Readers (and a resumed run) see the old or the new file; temp names start with _TMP_PREFIX."""
    write_file_atomically(path, data, prefix=_TMP_PREFIX)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=1, ensure_ascii=False, default=str).encode("utf-8"))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def default_runs_root(skill_root: Path) -> Path:
    return runs_root(skill_root)


def runs_root(skill_root: Path | None, runs_dir: str | Path = RUNS_SUBDIR) -> Path:
    """Optimiser runs: `runs_dir` (the config's [run] dir) relative to the skill's parent, or to
    the working directory when there is no skill (`skillgrad eval none`)."""
    base = Path(skill_root).resolve().parent if skill_root is not None else Path.cwd().resolve()
    return base / Path(runs_dir).expanduser()


def evals_root(skill_root: Path | None, runs_dir: str | Path = RUNS_SUBDIR) -> Path:
    """Evaluations: a folder of their own beside the runs folder."""
    return runs_root(skill_root, runs_dir).parent / EVALS_NAME


def unique_run_dir(root: Path, skill_hash: str, now: float | None = None) -> Path:
    """A run directory under `root` that does not exist yet: `<run id>`, else `<run id>-2`, ..."""
    run_id = new_run_id(skill_hash, now)
    path, n = root / run_id, 2
    while path.exists():
        path, n = root / f"{run_id}-{n}", n + 1
    return path


def new_run_id(skill_hash: str, now: float | None = None) -> str:
    """`20261121-145501-<hash6>`: sorts by time, and says which skill it started from."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    return f"{stamp}-{skill_hash[:6]}"


def find_runs(runs_root: Path) -> list[Path]:
    """Run directories under a runs folder, oldest first."""
    if not runs_root.is_dir():
        return []
    return sorted(p for p in runs_root.iterdir() if p.is_dir() and (p / EVENTS).exists())


# -------------------------------------------------------------------------------------- versions


@dataclass
class VersionRecord:
    version: int
    skill_hash: str
    step: int  # the step that proposed it (0: the seed skill)
    parent: int | None
    val_score: float | None = None
    train_score: float | None = None  # mean train score of the tasks run with this version
    chars: int = 0  # total characters of its text files
    kept: bool = False  # became (or was) the current skill
    created: float = 0.0
    origin: str = ""  # how the candidate was made (the patcher's note), "" for the seed
    minibatch: float | None = None  # its minibatch score; the parent's is in the step's events
    decision: str = ""  # the gate's sentence: estimate, standard error, kept or why not

    @property
    def dirname(self) -> str:
        return f"{self.version}-{self.skill_hash[:12]}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "VersionRecord":
        names = {f.name for f in fields(VersionRecord)}
        return VersionRecord(**{k: v for k, v in d.items() if k in names})


def text_chars(files: Mapping[str, bytes]) -> int:
    """Characters of the skill's text (SKILL.md, L3 files, scripts' code): the tie-breaker."""
    try:
        texts = text_files(files)
    except SkillError:  # a version that does not load has no text a model reads; count as before
        texts = {rel: data.decode("utf-8", errors="replace") for rel, data in files.items()
                 if rel == "SKILL.md" or rel.split("/", 1)[0] in ("references", "scripts")}
    return sum(len(t) for t in texts.values())


def _read_tree(root: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            full = Path(dirpath) / name
            out[full.relative_to(root).as_posix()] = full.read_bytes()
    return out


# ----------------------------------------------------------------------------------------- events


def _parse_lines(data: bytes) -> Iterator[dict[str, Any]]:
    lines = data.split(b"\n")
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            if i == len(lines) - 1:
                return  # torn last line of a crashed writer: the event never happened
            raise
        if isinstance(obj, dict):
            yield obj


def read_event_dicts(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / EVENTS
    if not path.exists():
        raise RunError("not a run directory (no events.jsonl)", run_dir)
    try:
        return list(_parse_lines(path.read_bytes()))
    except ValueError as exc:
        raise RunError(f"events.jsonl is corrupt: {exc}", path) from None


def replay(run_dir: Path) -> Iterator[Event]:
    """The events of a run in order (for the TUI and `history`); unknown kinds are skipped."""
    for d in read_event_dicts(run_dir):
        try:
            yield Event.from_dict(d)
        except (ValueError, TypeError):
            continue


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
                if p.name.startswith(_TMP_PREFIX):
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
        files = _read_tree(self.version_dir(n))
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
            if inner.is_dir() and content_hash(_read_tree(inner)) == rec.skill_hash:
                return
            shutil.rmtree(final)
        tmp = versions / f"{_TMP_PREFIX}{rec.dirname}-{secrets.token_hex(4)}"
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


# --------------------------------------------------------------------------------- read-only views


def list_versions(run_dir: Path) -> list[VersionRecord]:
    path = Path(run_dir) / VERSIONS_INDEX
    if not path.exists():
        if not (Path(run_dir) / EVENTS).exists():
            raise RunError("not a run directory (no events.jsonl)", run_dir)
        return []
    try:
        return [VersionRecord.from_dict(d) for d in read_json(path)]
    except (ValueError, TypeError) as exc:
        raise RunError(f"versions.json is unreadable: {exc}", path) from None


def _version_files_readonly(run_dir: Path, version: int) -> dict[str, bytes]:
    records = list_versions(run_dir)
    rec = next((r for r in records if r.version == version), None)
    if rec is None:
        known = ", ".join(str(r.version) for r in records) or "none"
        raise RunError(f"no version {version} in this run (versions: {known})", Path(run_dir) / VERSIONS_INDEX)
    first = next(r for r in records if r.skill_hash == rec.skill_hash)
    outer = Path(run_dir) / "versions" / first.dirname
    inner = [p for p in outer.iterdir() if p.is_dir()] if outer.is_dir() else []
    if len(inner) != 1:
        raise RunError(f"version {version} has no stored files", outer)
    files = _read_tree(inner[0])
    if content_hash(files) != rec.skill_hash:
        raise RunError(f"stored files of version {version} do not match its hash", inner[0])
    return files


def version_files(run_dir: Path, version: int) -> dict[str, bytes]:
    """The files of a stored version, checked against its hash (no lock taken: read-only)."""
    return _version_files_readonly(Path(run_dir), version)


SET_ASIDE = "set-aside"


def set_aside_dir(run_dir: Path, version: int) -> Path:
    """Where a rollback keeps the files it removes or overwrites: inside the run, one per rollback."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(run_dir) / SET_ASIDE / f"{stamp}-before-v{version}"
    path, k = base, 2
    while path.exists():
        path, k = base.with_name(f"{base.name}-{k}"), k + 1
    return path


def restore_version(run_dir: Path, version: int, skill_root: Path, *, set_aside: Path | None = None) -> Restored:
    """Make `skill_root` hold exactly version `version` of the run (atomically). Files the version
    does not have, and the old content of files it overwrites, go to `set_aside` (default: a new
    folder under <run>/set-aside/), never nowhere."""
    files = _version_files_readonly(Path(run_dir), version)
    return restore_snapshot(Path(skill_root), files, set_aside=set_aside or set_aside_dir(run_dir, version),
                            writer=f"rollback to version {version} of run {Path(run_dir).name}")


def run_skill_path(run_dir: Path) -> Path | None:
    """The skill folder a run optimised (from its first RunStarted event)."""
    for event in replay(run_dir):
        if event.kind == "run_started":
            return Path(getattr(event, "skill"))
    return None
