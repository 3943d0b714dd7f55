"""What the app does to a run outside the optimiser: roll the skill back to one of its versions,
export it, diff two of its versions. No textual here (the screens render the results), so the
same calls can be tested and reused headless."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skillgrad_tui.core.file_write import write_file_atomically
from skillgrad_tui.core.export import load_report, to_csv, to_html, to_json
from skillgrad_tui.core.runlog import find_runs, restore_version, version_files
from skillgrad_tui.core.skill import Restored
from skillgrad_tui.core.skill_lock import SkillLock

EXPORT_FILES = (("run.json", to_json), ("versions.csv", to_csv), ("report.html", to_html))


def rollback(run_dir: Path, version: int, skill_root: Path) -> Restored:
    """Make the skill version `version` of the run, as `skillgrad rollback` does: under the skill's
    lock (never while a run or another rollback writes it), atomically, with what it removes or
    overwrites set aside inside the run."""
    with SkillLock(skill_root, command="skillgrad tui (rollback)"):
        return restore_version(run_dir, version, skill_root)


def export_run_files(run_dir: Path) -> tuple[Path, list[str]]:
    """The run as JSON, CSV and a self-contained HTML report in <run>/export/ (each written
    atomically); returns the folder and the names written."""
    report = load_report(run_dir)  # read once for the three formats
    out = Path(run_dir) / "export"
    out.mkdir(exist_ok=True)
    for name, render in EXPORT_FILES:
        write_file_atomically(out / name, render(report).encode("utf-8"))
    return out, [name for name, _ in EXPORT_FILES]


@dataclass(frozen=True)
class FileChange:
    path: str
    old: str  # "" when the file is new
    new: str  # "" when it was removed
    binary: bool = False


def _text(data: bytes | None) -> tuple[str, bool]:
    if data is None:
        return "", False
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return "", True


def file_changes(old: dict[str, bytes], new: dict[str, bytes]) -> list[FileChange]:
    """Every file that differs between two versions' files, in path order."""
    changes = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        (old_text, bin_a), (new_text, bin_b) = _text(a), _text(b)
        changes.append(FileChange(path, old_text, new_text, binary=bin_a or bin_b))
    return changes


def version_changes(run_a: Path, version_a: int, run_b: Path, version_b: int) -> list[FileChange]:
    """The diff between version_a of run_a and version_b of run_b (the same run for a history)."""
    return file_changes(version_files(run_a, version_a), version_files(run_b, version_b))


def runs_of(runs_root: Path) -> list[Path]:
    """Optimiser runs under the skill's runs folder, newest first."""
    return [r for r in reversed(find_runs(runs_root)) if (r / "versions.json").is_file()]


__all__ = ["EXPORT_FILES", "FileChange", "export_run_files", "file_changes", "rollback", "runs_of",
           "version_changes"]
