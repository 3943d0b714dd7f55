"""The Textual app driven by keys (Pilot), with the scripted stand-in model and real files.

Each test copies skills/table-qa into a temp folder (runs land beside it, in .skillgrad/) and
uses the WikiTableQuestions sample suite in skills/suites/table-qa.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.pilot import Pilot

from skillgrad_tui.config import Config
from skillgrad_tui.core.events import PatchDecided
from skillgrad_tui.core.runlog import replay
from skillgrad_tui.core.skill import load_skill
from skillgrad_tui.tui.app import SkillgradApp
from skillgrad_tui.tui.screens.help import HelpScreen
from skillgrad_tui.tui.screens.main import MainScreen
from skillgrad_tui.tui.screens.review import EditTextScreen, ReviewScreen
from skillgrad_tui.tui.screens.trajectory import TrajectoryScreen, load_trajectory_file
from skillgrad_tui.tui.scripted import THEMES, scripted_backend_factory
from skillgrad_tui.tui.widgets.progress import ProgressPane
from skillgrad_tui.tui.widgets.run_panes import TrajectoriesPane

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "skills" / "suites" / "table-qa"
SIZE = (120, 40)
ONE_STEP = Config(values={"optimize": {"steps": 1}})

pytestmark = pytest.mark.anyio


def make_app(skill_dir: Path, *, delay_s: float = 0.0, config: Config = ONE_STEP, **kw: object) -> SkillgradApp:
    return SkillgradApp(skill_dir, SUITE, backend_factory=scripted_backend_factory(delay_s=delay_s),
                        config=config, watch_debounce_s=0.15, **kw)  # type: ignore[arg-type]


async def wait_for(pilot: Pilot[object], cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)


def run_events(app: SkillgradApp) -> list[object]:
    assert app.run_dir is not None
    return list(replay(app.run_dir))


async def test_first_frame_shows_the_skill_and_the_suite(skill_dir: Path) -> None:
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.suite is not None)
        assert app.skill is not None and app.skill.name == "table-qa"
        assert "suite table-qa (40)" in app.sub_title and "gate ask" in app.sub_title
        leaves = [n.data for n in app.query_one("#skill-tree").root.children]
        assert "SKILL.md" in leaves
        assert not app.running  # nothing, not even the model, was started


async def test_evaluate_then_open_a_trajectory(skill_dir: Path) -> None:
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("v")
        await wait_for(pilot, lambda: app.last_result is not None and not app.running)
        result = app.last_result
        pane = app.query_one(TrajectoriesPane)
        assert pane.table.row_count == result.n == 10
        assert result.passed == sum(e.passed for e in pane.finished.values())
        assert app.query_one(ProgressPane).val[-1] == pytest.approx(result.accuracy)
        await pilot.press("2", "down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TrajectoryScreen))
        screen = app.screen
        assert isinstance(screen, TrajectoryScreen)
        traj = load_trajectory_file(screen.finished, app.run_dir)
        assert traj is not None and traj.task_id == screen.finished.task_id  # type: ignore[union-attr]
        assert [t.kind for t in traj.turns][:2] == ["prompt", "model"] and traj.verdict is not None
        assert screen.suite_task is not None and screen.suite_task.question
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, TrajectoryScreen))


async def test_review_accept_one_edit_and_reject_the_other(skill_dir: Path) -> None:
    before = (skill_dir / "SKILL.md").read_text()
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))
        review = app.screen
        assert isinstance(review, ReviewScreen) and len(review.items) == 2
        assert all(item.tasks and item.gradients for item in review.items)  # the evidence is shown
        # Nothing changes on disk while the review waits.
        assert (skill_dir / "SKILL.md").read_text() == before
        first, second = review.items[0].edit.new, review.items[1].edit.new
        await pilot.press("y", "n")
        await wait_for(pilot, lambda: not app.running)
        after = (skill_dir / "SKILL.md").read_text()
        assert after != before
        assert first in after
        added_by_second = [ln for ln in second.splitlines() if ln not in before]
        assert added_by_second and not any(ln in after for ln in added_by_second)
        decided = [e for e in run_events(app) if isinstance(e, PatchDecided)]
        assert decided and decided[0].accepted == [0] and decided[0].rejected == [1] and decided[0].by == "user"
        load_skill(skill_dir)  # still a valid skill


async def test_review_edit_replaces_the_new_text(skill_dir: Path) -> None:
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))
        review = app.screen
        assert isinstance(review, ReviewScreen)
        item = review.items[0]
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditTextScreen))
        area = app.screen.query_one("#edit-area")
        mine = "- Quote the cell verbatim; never paraphrase it."
        area.text = item.edit.new + "\n" + mine  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen is review and review.status.get(item.index) == "edited")
        await pilot.press("n")
        await wait_for(pilot, lambda: not app.running)
        text = (skill_dir / "SKILL.md").read_text()
        assert mine in text and THEMES["count"]["add"] not in text


async def test_reject_all_leaves_the_skill_untouched(skill_dir: Path) -> None:
    seed_hash = load_skill(skill_dir).hash
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))
        await pilot.press("r")  # on the review screen, r does nothing: it means Optimise on the main one
        await pilot.pause(0.1)
        assert isinstance(app.screen, ReviewScreen)
        await pilot.press("N")  # N rejects everything
        await wait_for(pilot, lambda: not app.running)
        assert load_skill(skill_dir).hash == seed_hash
        decided = [e for e in run_events(app) if isinstance(e, PatchDecided)]
        assert decided[0].accepted == [] and decided[0].rejected == [0, 1]


async def test_watch_reacts_once_to_an_external_edit_and_not_to_our_patch(skill_dir: Path) -> None:
    app = make_app(skill_dir, watch=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.watcher is not None and app.suite is not None)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))
        await pilot.press("a")  # accept all: the app itself writes the skill
        await wait_for(pilot, lambda: not app.running)
        await pilot.pause(1.0)  # several debounce periods
        assert app.changes_handled == 0
        assert not app.running
        # Now the user edits the skill in an editor (with a swap file, as vim does).
        (skill_dir / ".SKILL.md.swp").write_bytes(b"\0vim swap")
        md = skill_dir / "SKILL.md"
        md.write_text(md.read_text() + "\n## Dates\n- Write dates as they appear in the table.\n")
        await wait_for(pilot, lambda: app.changes_handled == 1)
        await wait_for(pilot, lambda: not app.running and hasattr(app.last_result, "accuracy"))
        assert app.last_result.n == 10  # a validation evaluation of the edited skill
        assert app.skill is not None and "## Dates" in app.skill.body
        await pilot.pause(1.0)
        assert app.changes_handled == 1


async def test_watch_shows_a_skill_that_no_longer_loads(skill_dir: Path) -> None:
    app = make_app(skill_dir, watch=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.watcher is not None)
        (skill_dir / "SKILL.md").write_text("no front matter here\n")
        await wait_for(pilot, lambda: app.skill is None)
        assert app.skill_pane.error is not None and "front matter" in str(app.skill_pane.error)
        assert app.changes_handled == 0 and not app.running
        shutil.rmtree(skill_dir / ".." / "table-qa", ignore_errors=False)  # the whole folder goes
        await pilot.pause(0.6)
        assert app.is_running and app.skill is None


async def test_escape_cancels_between_tokens(skill_dir: Path) -> None:
    seed_hash = load_skill(skill_dir).hash
    app = make_app(skill_dir, delay_s=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("v")
        await wait_for(pilot, lambda: len(app.trajectories.finished) >= 1)
        pane = app.query_one(ProgressPane)
        said: list[str] = []  # what the pane says the moment escape is handled: the worker may
        mark = pane.mark_cancelling  # stop before the next frame, so read it there, not after

        def mark_and_read() -> None:
            mark()
            said.append(pane._status().plain)

        pane.mark_cancelling = mark_and_read  # type: ignore[method-assign]
        await pilot.press("escape")
        assert said and "cancelling" in said[0]  # said at once, before the worker stops
        await wait_for(pilot, lambda: not app.running)
        assert pane.outcome == "cancelled"
        assert "cancelling" not in pane._status().plain  # and gone once it has
        assert len(app.trajectories.finished) < 10
        assert load_skill(skill_dir).hash == seed_hash
        table = app.trajectories.table
        cells = [str(table.get_cell_at((i, 2))) for i in range(table.row_count)]
        assert "▸ running" not in cells  # a task cut off by the cancel does not stay "running"


async def test_quit_mid_run_waits_and_leaves_a_resumable_run(skill_dir: Path) -> None:
    seed_hash = load_skill(skill_dir).hash
    app = make_app(skill_dir, delay_s=0.02)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: len(app.trajectories.finished) >= 3)
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, timeout=20)
    assert not app.running
    run_dir = app.run_dir
    assert run_dir is not None
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "running"  # stopped, not finished: resumable
    assert load_skill(skill_dir).hash == seed_hash
    # Resume it from a new session of the app (command palette), to the end.
    app2 = make_app(skill_dir)
    async with app2.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app2.suite is not None)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app2.screen, CommandPalette))
        await pilot.press(*"resume stopped")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app2.screen, ReviewScreen))
        await pilot.press("a")
        await wait_for(pilot, lambda: not app2.running)
        result = app2.last_result
    assert result.reason == "steps" and result.run_dir == run_dir
    assert load_skill(skill_dir).hash == result.final_skill_hash != seed_hash


async def test_command_palette_runs_app_actions(skill_dir: Path) -> None:
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        names = [c.name for c in app.palette_commands()]
        for expected in ("Optimise", "Evaluate", "Cancel run", "Watch mode on", "Help", "Quit", "Change theme"):
            assert expected in names
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"watch mode")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.watcher is not None)
        assert "watch" in app.sub_title


async def test_help_lists_bindings_and_every_binding_has_an_id(skill_dir: Path) -> None:
    for binding in [*SkillgradApp.BINDINGS, *MainScreen.BINDINGS, *ReviewScreen.BINDINGS]:
        assert getattr(binding, "id", None), binding
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        sections = dict(app.screen.sections)  # type: ignore[attr-defined]
        main = [b.description for b in sections["Main screen"]]
        assert set(main) >= {"Optimise", "Evaluate", "Watch", "Quit", "Help", "Zoom pane", "Batch size"}
        assert main.count("Cancel") == 1  # escape is bound on the screen and the app: listed once
        assert {b.description for b in sections["Patch review"]} >= {"Accept", "Reject", "Edit"}
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("ctrl+t")  # themes are in a palette of their own
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))


def test_run_app_reports_a_bad_config(tmp_path: Path) -> None:
    from skillgrad_tui.core.errors import ConfigError
    from skillgrad_tui.tui.app import run_app

    bad = tmp_path / "skillgrad.toml"
    bad.write_text("[optimize]\ngate = 'sometimes'\n")
    with pytest.raises(ConfigError, match="gate"):
        run_app(REPO / "skills" / "table-qa", None, bad, None, False)


def test_headless_parts_do_not_import_textual() -> None:
    # `skillgrad watch` and the session run without the UI toolkit being imported.
    code = ("import sys, skillgrad_tui.commands.watch_cmd, skillgrad_tui.core.watch_loop, skillgrad_tui.tui.session, "
            "skillgrad_tui.core.watcher; "
            "sys.exit(1 if any(m == 'textual' or m.startswith('textual.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


async def test_progress_after_an_early_stop_reads_finished(skill_dir: Path) -> None:
    from skillgrad_tui.core.events import RunFinished, RunStarted, StepFinished, StepStarted

    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(ProgressPane)
        pane.begin("optimise")
        pane.handle(RunStarted(run_id="r", skill="s", suite="x", skill_hash="h", settings={"planned_steps": 6}))
        for step in (1, 2):
            pane.handle(StepStarted(step=step, task_ids=["t1"], skill_hash="h"))
            pane.handle(StepFinished(step=step, train_loss=0.0, val_score=1.0, kept=True, skill_hash="h"))
        assert "33%" in pane._status().plain  # 2 of 6 planned steps
        pane.handle(RunFinished(reason="early_stop"))
        pane.end("early_stop")
        await pilot.pause()
        status = pane._status().plain
        assert "100%" in status and "early_stop" in status


async def test_an_interrupted_write_is_named_and_recovered_with_one_key(skill_dir: Path) -> None:
    """Issue 14: the app refused with "run recovery (skill.recover)"; it now says what to press,
    and R (or the palette) finishes the write and says so."""
    from test_user_safety import crash_after_commit_point

    from skillgrad_tui.core.skill import Edit

    crash_after_commit_point(skill_dir, Edit("L1", "SKILL.md", "name: table-qa", "name: table-qa\nlicense: MIT"))
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.suite is not None)
        assert app.skill is None and "skillgrad recover" in str(app.skill_pane.error)
        messages = [n.message for n in app._notifications]
        assert any("press R" in m for m in messages), messages
        await pilot.press("v")  # a run is refused, with the notice above rather than a traceback
        assert not app.running
        await pilot.press("R")
        await wait_for(pilot, lambda: app.skill is not None)
        assert any("finished an interrupted write" in n.message for n in app._notifications)
        assert app.skill.front_matter.get("license") == "MIT"
        assert "Recover interrupted write" in [c.name for c in app.palette_commands()]


async def test_an_evaluation_where_every_task_errored_is_an_error_not_a_zero(skill_dir: Path) -> None:
    from skillgrad_tui.core.errors import BackendError
    from skillgrad_tui.core.llm.scripted import ScriptedBackend

    def down(req: object) -> str:
        raise BackendError("HTTP 500 from [server] http://127.0.0.1:9/v1/chat/completions")

    backend = ScriptedBackend(down)
    app = SkillgradApp(skill_dir, SUITE, backend_factory=lambda role: backend, config=ONE_STEP)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("v")
        await wait_for(pilot, lambda: app.last_result is not None and not app.running)
        pane = app.query_one(TrajectoriesPane)
        assert all(e.errored for e in pane.finished.values()) and len(pane.finished) == 10
        cells = {str(pane.table.get_cell(k, "result")) for k in pane.finished}
        assert cells == {"⚠ error"}
        summary = str(pane.query_one("#traj-summary").render())
        assert "0/10 passed, 10 errored (HTTP 500 from [server]" in summary  # "[server]" not eaten as markup
        notes = [n.message for n in app._notifications]
        assert any(m.startswith("every task errored (10/10): HTTP 500 from [server]") for m in notes), notes


async def test_key_1_focuses_the_skill_text_so_that_it_scrolls_then_the_tree(skill_dir: Path) -> None:
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.skill is not None)
        await pilot.press("1")
        view = app.query_one("#skill-view")
        assert view.has_focus
        await pilot.press("pagedown")
        await wait_for(pilot, lambda: view.scroll_y > 0)  # SKILL.md is longer than the pane
        await pilot.press("1")
        assert app.query_one("#skill-tree").has_focus


def test_rows_of_tasks_that_never_finished_are_marked_when_a_run_stops() -> None:
    from skillgrad_tui.core.events import TaskStarted

    async def go() -> None:
        from textual.app import App

        class One(App[None]):
            def compose(self):  # type: ignore[no-untyped-def]
                yield TrajectoriesPane()

        app = One()
        async with app.run_test() as pilot:
            pane = app.query_one(TrajectoriesPane)
            pane.task_started(TaskStarted(step=0, task_id="t1", phase="val"))
            pane.stop_unfinished("stopped")
            await pilot.pause()
            assert str(pane.table.get_cell_at((0, 2))) == "■ stopped"

    import asyncio

    asyncio.run(go())


async def test_export_from_the_palette_writes_json_csv_and_html(skill_dir: Path) -> None:
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("v")
        await wait_for(pilot, lambda: app.last_result is not None and not app.running)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"export run")
        await pilot.pause(0.3)
        await pilot.press("enter")
        assert app.run_dir is not None
        out = app.run_dir / "export"
        await wait_for(pilot, lambda: (out / "report.html").is_file())
        assert {p.name for p in out.iterdir()} == {"run.json", "versions.csv", "report.html"}
        assert json.loads((out / "run.json").read_text())["run_dir"] == str(app.run_dir)
