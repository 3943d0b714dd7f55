"""Regenerate the README screenshots (docs/screenshots/*.svg) from the real app.

The app runs headless (Textual's run_test) on a copy of skills/table-qa with the scripted
stand-in model that the tests use, so the pictures are reproducible and need no model:
one optimisation step with the `ask` gate, the patch review it opens, the main screen after
the first edit is accepted and the second rejected, a trajectory opened with Enter, then a
second run's history (lineage, scores per step, a diff) and the comparison of the two runs.

    .venv/bin/python docs/make_screenshots.py
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textual.pilot import Pilot  # noqa: E402

from skillgrad_tui.config import Config  # noqa: E402
from skillgrad_tui.core import run_dirs  # noqa: E402
from skillgrad_tui.tui.app import SkillgradApp  # noqa: E402
from skillgrad_tui.tui.screens.compare import CompareScreen  # noqa: E402
from skillgrad_tui.tui.screens.history import HistoryScreen  # noqa: E402
from skillgrad_tui.tui.screens.review import ReviewScreen  # noqa: E402
from skillgrad_tui.tui.screens.trajectory import TrajectoryScreen  # noqa: E402
from skillgrad_tui.tui.scripted import scripted_backend_factory  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
SUITE = ROOT / "skills" / "suites" / "table-qa"
SIZE = (120, 36)
_RUN_CLOCK = itertools.count()


def _pinned_run_id(skill_hash: str, now: float | None = None) -> str:
    """Run folders named by a fixed clock: the pictures show run names, and a picture that
    changes with the time of day would be rewritten (and committed) on every regeneration."""
    return f"20260101-0900{next(_RUN_CLOCK):02d}-{skill_hash[:6]}"


async def _wait(pilot: Pilot[object], cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"make_screenshots: {what} did not happen within {timeout:.0f} s")
        await pilot.pause(0.05)


async def shoot(skill: Path) -> list[Path]:
    app = SkillgradApp(skill, SUITE, backend_factory=scripted_backend_factory(),
                       config=Config(values={"optimize": {"steps": 1}}))
    saved: list[Path] = []

    def save(name: str) -> None:
        saved.append(Path(app.save_screenshot(filename=f"{name}.svg", path=str(OUT))))

    async with app.run_test(size=SIZE) as pilot:
        await _wait(pilot, lambda: app.suite is not None, "loading the suite")
        await pilot.press("r")
        await _wait(pilot, lambda: isinstance(app.screen, ReviewScreen), "the patch review")
        await pilot.pause(0.3)
        save("review")
        await pilot.press("y")  # accept the first edit: the cursor moves on to the second
        await pilot.pause(0.1)
        await pilot.press("n")  # reject the second: the review closes and the run goes on
        await _wait(pilot, lambda: not isinstance(app.screen, ReviewScreen) and not app.running,
                    "the end of the run")
        await pilot.pause(0.3)
        save("main")
        await pilot.press("2", "down", "enter")
        await _wait(pilot, lambda: isinstance(app.screen, TrajectoryScreen), "the trajectory view")
        await pilot.pause(0.3)
        save("trajectory")
        await pilot.press("escape")
        await _wait(pilot, lambda: not isinstance(app.screen, TrajectoryScreen), "back to the main screen")
        await pilot.press("r")  # a second run, every edit accepted, so that there are two to compare
        await _wait(pilot, lambda: isinstance(app.screen, ReviewScreen), "the second patch review")
        await pilot.press("a")
        await _wait(pilot, lambda: not isinstance(app.screen, ReviewScreen) and not app.running,
                    "the end of the second run")
        await pilot.press("h")
        await _wait(pilot, lambda: isinstance(app.screen, HistoryScreen), "the history")
        await pilot.press("down", "d")  # the step's candidate against the seed
        await pilot.pause(0.3)
        save("history")
        await pilot.press("c", "enter")  # compare this run (A) with the one picked next (B)
        await _wait(pilot, lambda: isinstance(app.screen, CompareScreen), "the comparison")
        await pilot.pause(0.3)
        save("compare")
    return saved


def main() -> int:
    run_dirs.new_run_id = _pinned_run_id  # unique_run_dir looks it up at call time
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="skillgrad-shots-") as tmp:
        skill = Path(tmp) / "table-qa"
        shutil.copytree(ROOT / "skills" / "table-qa", skill)
        for path in asyncio.run(shoot(skill)):
            print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
