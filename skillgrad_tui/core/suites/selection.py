"""Which suite a skill is evaluated on, and which of its tasks a command runs."""

from __future__ import annotations

from pathlib import Path

from skillgrad_tui.core.errors import SuiteError
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.suites import Suite, load_suite
from skillgrad_tui.core.suites.splits import select_split, split_tasks

SEEDED_SPLITS = ("train", "val", "test", "all")


def default_suite_path(skill_root: Path | None, configured: Path | None = None) -> Path | None:
    """`--suite` is handled by the caller; then skillgrad.toml's [suite] path; then the suite
    bundled beside the skill (`<skill parent>/suites/<skill name>/`)."""
    if configured is not None:
        return configured
    if skill_root is not None:
        bundled = Path(skill_root).resolve().parent / "suites" / Path(skill_root).resolve().name
        if bundled.exists():
            return bundled
    return None


def select_tasks(suite_path: Path, split: str | None, *, seed: int,
                 limit: int | None = None) -> tuple[Suite, list[Task]]:
    """`split` is either the suite's own split (a WTQ TSV name, a JSONL "split" value) or one of
    the seeded splits train/val/test/all drawn from the whole suite."""
    if split in SEEDED_SPLITS:
        suite = load_suite(suite_path)
        tasks = select_split(split_tasks(suite.tasks, seed), split) if split != "all" else suite.tasks
    else:
        suite = load_suite(suite_path, split)
        tasks = suite.tasks
    if limit is not None:
        if limit < 1:
            raise SuiteError("--limit must be at least 1", suite_path)
        tasks = tasks[:limit]
    if not tasks:
        raise SuiteError(f"no tasks selected (split {split or 'default'})", suite_path)
    return suite, tasks
