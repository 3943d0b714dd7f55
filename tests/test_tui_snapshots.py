"""Snapshot tests (pytest-textual-snapshot): the main screen and the patch review, at small sizes.

Regenerate after an intended visual change with
    .venv/bin/python -m pytest tests/test_tui_snapshots.py --snapshot-update
and look at the SVGs under tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from textual.pilot import Pilot

from skillgrad_tui.config import Config
from skillgrad_tui.tui.app import SkillgradApp
from skillgrad_tui.tui.screens.review import ReviewScreen
from skillgrad_tui.tui.scripted import scripted_backend_factory

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "skills" / "suites" / "table-qa"


@pytest.fixture()
def app(tmp_path: Path) -> SkillgradApp:
    if not (SUITE / "data").is_dir():
        pytest.skip(f"sample suite missing at {SUITE}")
    skill = tmp_path / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", skill)
    return SkillgradApp(skill, SUITE, backend_factory=scripted_backend_factory(),
                        config=Config(values={"optimize": {"steps": 1}}))


async def _settle(pilot: Pilot[object]) -> None:
    app = pilot.app
    deadline = time.monotonic() + 20
    while getattr(app, "suite", None) is None and time.monotonic() < deadline:
        await pilot.pause(0.02)
    await pilot.pause()


async def _open_review(pilot: Pilot[object]) -> None:
    await _settle(pilot)
    await pilot.press("r")
    deadline = time.monotonic() + 30
    while not isinstance(pilot.app.screen, ReviewScreen):
        assert time.monotonic() < deadline, "the review screen never opened"
        await pilot.pause(0.02)
    await pilot.pause()


def test_main_screen_80x24(snap_compare, app: SkillgradApp) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app, terminal_size=(80, 24), run_before=_settle)


def test_main_screen_wide_160x44(snap_compare, app: SkillgradApp) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app, terminal_size=(160, 44), run_before=_settle)


def test_diff_review_100x30(snap_compare, app: SkillgradApp) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app, terminal_size=(100, 30), run_before=_open_review)


def test_diff_review_second_edit_80x24(snap_compare, app: SkillgradApp) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot[object]) -> None:
        await _open_review(pilot)
        await pilot.press("y")  # decided, so the cursor moves to the second edit
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.fixture()
def app_with_run(tmp_path: Path) -> SkillgradApp:
    """A finished 2-step run (gate 'all'), under a fixed name so that the picture is stable."""
    from skillgrad_tui.core.skill import load_skill
    from skillgrad_tui.tui.session import Session

    if not (SUITE / "data").is_dir():
        pytest.skip(f"sample suite missing at {SUITE}")
    skill = tmp_path / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", skill)
    config = Config(values={"optimize": {"steps": 2}})
    session = Session(skill, SUITE, config, scripted_backend_factory())
    run = session.new_run_dir(load_skill(skill).hash)
    session.optimize("all", run, sink=lambda e: None, cancel=None)
    run.rename(run.with_name("20260101-120000-723366"))
    return SkillgradApp(skill, SUITE, backend_factory=scripted_backend_factory(),
                        config=Config(values={"optimize": {"steps": 1}}))


async def _history_diff(pilot: Pilot[object]) -> None:
    from skillgrad_tui.tui.screens.history import HistoryScreen

    await _settle(pilot)
    await pilot.press("h")
    deadline = time.monotonic() + 20
    while not isinstance(pilot.app.screen, HistoryScreen):
        assert time.monotonic() < deadline, "the history never opened"
        await pilot.pause(0.02)
    await pilot.press("down", "down", "d")  # v4 against its parent v1
    await pilot.pause()


def test_history_with_a_diff_120x36(snap_compare, app_with_run: SkillgradApp) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app_with_run, terminal_size=(120, 36), run_before=_history_diff)


def test_history_stacked_80x24(snap_compare, app_with_run: SkillgradApp) -> None:  # type: ignore[no-untyped-def]
    """Under 110 columns the plot sits below the versions."""
    assert snap_compare(app_with_run, terminal_size=(80, 24), run_before=_history_diff)
