"""Where runs live and how they are named, the files of a run directory, its atomic writes, and
reading its event log back (`replay`). runlog.py's RunLog is the writer that uses these.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from skillgrad_tui.core.file_write import write_file_atomically
from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.events import Event

# Where runs live and how they are named are defined here only: optimiser runs in
# <skill parent>/<[run] dir> (default .skillgrad/runs), evaluations in "evals" beside that folder,
# so that an evaluation never looks like a resumable optimiser run.
RUNS_SUBDIR = Path(".skillgrad") / "runs"
EVALS_NAME = "evals"
EVENTS = "events.jsonl"
VERSIONS_INDEX = "versions.json"
STATE = "state.json"
TMP_PREFIX = ".tmp-"


class RunError(SkillgradError):
    """A run directory that is missing, in use, or does not hold what was asked for."""


def atomic_write(path: Path, data: bytes) -> None:
    """Readers (and a resumed run) see the old or the new file; temp names start with TMP_PREFIX."""
    write_file_atomically(path, data, prefix=TMP_PREFIX)


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


def parse_event_lines(data: bytes) -> Iterator[dict[str, Any]]:
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
        return list(parse_event_lines(path.read_bytes()))
    except ValueError as exc:
        raise RunError(f"events.jsonl is corrupt: {exc}", path) from None


def replay(run_dir: Path) -> Iterator[Event]:
    """The events of a run in order (for the TUI and `history`); unknown kinds are skipped."""
    for d in read_event_dicts(run_dir):
        try:
            yield Event.from_dict(d)
        except (ValueError, TypeError):
            continue


def run_skill_path(run_dir: Path) -> Path | None:
    """The skill folder a run optimised (from its first RunStarted event)."""
    for event in replay(run_dir):
        if event.kind == "run_started":
            return Path(getattr(event, "skill"))
    return None
