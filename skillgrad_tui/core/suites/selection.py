"""Which suite a skill is evaluated on (the engine, core/service.py, selects its tasks)."""

from __future__ import annotations

from pathlib import Path

SEEDED_SPLITS = ("train", "val", "test", "all")  # drawn from the whole suite with the run's seed


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
