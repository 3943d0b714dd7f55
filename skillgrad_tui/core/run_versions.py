"""The skill versions a run stores: their record, reading their checked files back, and restoring
one into the user's skill folder (through skill.restore_snapshot, journalled and atomic).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from skillgrad_tui.core.errors import SkillError
from skillgrad_tui.core.run_dirs import EVENTS, VERSIONS_INDEX, RunError, read_json
from skillgrad_tui.core.skill import Restored, content_hash, restore_snapshot, text_files


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


def read_tree(root: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            full = Path(dirpath) / name
            out[full.relative_to(root).as_posix()] = full.read_bytes()
    return out


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


def stored_version_files(run_dir: Path, version: int) -> dict[str, bytes]:
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
    files = read_tree(inner[0])
    if content_hash(files) != rec.skill_hash:
        raise RunError(f"stored files of version {version} do not match its hash", inner[0])
    return files


def version_files(run_dir: Path, version: int) -> dict[str, bytes]:
    """The files of a stored version, checked against its hash (no lock taken: read-only)."""
    return stored_version_files(Path(run_dir), version)


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
    files = stored_version_files(Path(run_dir), version)
    return restore_snapshot(Path(skill_root), files, set_aside=set_aside or set_aside_dir(run_dir, version),
                            writer=f"rollback to version {version} of run {Path(run_dir).name}")
