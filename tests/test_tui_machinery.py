"""The app on Textual's own machinery (issue 11): a run is a thread worker whose state is the
run's state, quitting never blocks the UI, the review waits on a Future that a decision or a
cancel resolves, and one tracker of the engine's own writes serves the app and watch mode."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerState

from skillgrad_tui.config import Config
from skillgrad_tui.core.engine import CompletionRequest, scripted_backend
from skillgrad_tui.core.errors import Cancelled
from skillgrad_tui.core.events import PatchDecided, StepFinished, VersionSaved
from skillgrad_tui.core.own_writes import OwnWrites
from skillgrad_tui.core.runlog import replay
from skillgrad_tui.core.skill import load_skill
from skillgrad_tui.core.watcher import folder_hash
from skillgrad_tui.tui.app import SkillgradApp
from skillgrad_tui.tui.review_bridge import ReviewBridge, resolve
from skillgrad_tui.tui.screens.main import MainScreen
from skillgrad_tui.tui.screens.review import ReviewScreen
from skillgrad_tui.tui.scripted import respond, scripted_backend_factory
from skillgrad_tui.tui.session import Session
from skillgrad_tui.core.watch_loop import WatchLoop

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "skills" / "suites" / "table-qa"
SIZE = (120, 40)
ONE_STEP = Config(values={"optimize": {"steps": 1}})

pytestmark = pytest.mark.anyio


async def wait_for(pilot: Pilot[object], cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await pilot.pause(0.02)


def blocked_backend(release: threading.Event) -> Callable[[str], Any]:
    """Every model call waits for `release` (up to 30 s): a run that cannot stop by itself."""
    def slow(req: CompletionRequest) -> str:
        release.wait(30)
        return respond(req)

    backend = scripted_backend(slow)
    return lambda role: backend


# -- the run is a worker ------------------------------------------------------------------------


async def test_a_runs_state_is_its_workers_state(skill_dir: Path) -> None:
    release = threading.Event()
    app = SkillgradApp(skill_dir, SUITE, backend_factory=blocked_backend(release), config=ONE_STEP)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.suite is not None)
            assert isinstance(app.screen, MainScreen) and app.current_run is None and not app.running
            await pilot.press("v")
            run = app.current_run
            assert run is not None and run.worker is not None
            worker = run.worker
            assert app.running and not worker.is_finished  # running is the worker, nothing else
            assert not hasattr(app, "_run_done") and not hasattr(app, "_events")  # no flag, no queue
            await wait_for(pilot, lambda: worker.state == WorkerState.RUNNING and app.events_seen > 0)
            await pilot.press("v")  # refused while the worker runs
            assert app.current_run is run
            release.set()
            await wait_for(pilot, lambda: app.last_result is not None)
            assert worker.state == WorkerState.SUCCESS and not app.running
            assert app.progress.outcome != "error"
            # The engine's events reached the panes, merged into fewer messages than events.
            assert app.run_dir is not None and app.events_seen >= len(list(replay(app.run_dir))) > 10
            assert len(app.trajectories.finished) == 10
    finally:
        release.set()


# -- quitting ---------------------------------------------------------------------------------------


async def test_quit_mid_run_keeps_the_ui_responsive_and_exits_once_the_run_stops(skill_dir: Path) -> None:
    release = threading.Event()
    app = SkillgradApp(skill_dir, SUITE, backend_factory=blocked_backend(release), config=ONE_STEP)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.suite is not None)
            await pilot.press("v")
            await wait_for(pilot, lambda: app.current_run is not None and app.current_run.worker is not None
                           and app.current_run.worker.state == WorkerState.RUNNING)
            started = time.monotonic()
            await pilot.press("q")
            assert time.monotonic() - started < 1.0  # the key returns: nothing waits on the UI thread
            assert app.current_run is not None and app.current_run.cancel.cancelled
            assert app.is_running and app.running  # the model call still blocks the worker
            await pilot.press("3")  # a key handled while quitting
            await pilot.pause()
            assert app.main.query_one("#tabs").active == "tab-gradients"  # type: ignore[attr-defined]
            assert app.is_running
            release.set()  # the model call returns; the cancelled run stops; the app exits
            await wait_for(pilot, lambda: not app.is_running, timeout=20)
    finally:
        release.set()
    run = app.current_run
    assert not app.running and run is not None and run.worker is not None
    assert run.worker.state == WorkerState.SUCCESS and run.worker.result is not None
    assert run.worker.result.outcome == "cancelled"  # it stopped by its token before the app exited


async def test_leaving_the_app_mid_run_does_not_wait_for_the_run(skill_dir: Path) -> None:
    """Unmount (here: leaving run_test) cancels the run and returns at once; the models are
    closed by the run thread once it stops, not under it."""
    release = threading.Event()
    app = SkillgradApp(skill_dir, SUITE, backend_factory=blocked_backend(release), config=ONE_STEP)
    closed: list[bool] = []
    real_close = app.session.close
    app.session.close = lambda: (closed.append(release.is_set()), real_close())  # type: ignore[method-assign]
    app._models._close = app.session.close  # what ModelRelease calls
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.suite is not None)
            await pilot.press("v")
            await wait_for(pilot, lambda: app.current_run is not None and app.current_run.worker is not None
                           and app.current_run.worker.state == WorkerState.RUNNING)
            left = time.monotonic()
        assert time.monotonic() - left < 5.0  # was: up to 30 s joined on the UI thread
        assert app.current_run is not None and app.current_run.cancel.cancelled
        assert closed == []  # the run thread still uses the model
    finally:
        release.set()
    deadline = time.monotonic() + 20
    while not closed:
        assert time.monotonic() < deadline, "the models were never closed"
        time.sleep(0.02)
    assert closed == [True]  # closed once the run thread stopped using them


# -- the review bridge ------------------------------------------------------------------------------


def _ask_in_thread(bridge: ReviewBridge, shown: list[Future[Any]]) -> tuple[threading.Thread, dict[str, Any]]:
    """The optimiser's side: ask from a thread, and return once the UI side was shown the request."""
    got: dict[str, Any] = {}

    def ask() -> None:
        try:
            got["decision"] = bridge("request")
        except Cancelled:
            got["cancelled"] = True

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not shown:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return thread, got


def test_the_review_bridge_returns_the_decision_the_ui_resolves() -> None:
    shown: list[Future[Any]] = []
    bridge = ReviewBridge(lambda request, answer: shown.append(answer))
    thread, got = _ask_in_thread(bridge, shown)
    assert thread.is_alive()  # blocked on the future, not answered by a timeout
    assert resolve(shown[0], "accept all")
    thread.join(2)
    assert got == {"decision": "accept all"}
    assert not resolve(shown[0], "again")  # answered once: a late cancel or key changes nothing


def test_the_review_bridge_raises_cancelled_on_cancel_and_refuses_later_reviews() -> None:
    shown: list[Future[Any]] = []
    bridge = ReviewBridge(lambda request, answer: shown.append(answer))
    thread, got = _ask_in_thread(bridge, shown)
    started = time.monotonic()
    bridge.cancel()
    thread.join(2)
    assert got == {"cancelled": True} and time.monotonic() - started < 0.5
    with pytest.raises(Cancelled):
        bridge("next step's request")  # the run is cancelled: no other review is shown
    assert len(shown) == 1


async def test_escape_on_the_review_screen_cancels_the_run_and_decides_nothing(skill_dir: Path) -> None:
    seed = load_skill(skill_dir).hash
    app = SkillgradApp(skill_dir, SUITE, backend_factory=scripted_backend_factory(), config=ONE_STEP)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.running, timeout=10)
        assert not isinstance(app.screen, ReviewScreen)
        assert app.progress.outcome == "cancelled"
        assert app.run_dir is not None
        assert not [e for e in replay(app.run_dir) if isinstance(e, PatchDecided)]  # asked again on resume
    assert load_skill(skill_dir).hash == seed


# -- one tracker of our own writes ------------------------------------------------------------------


def test_the_tracker_takes_the_engines_writes_from_its_events() -> None:
    own = OwnWrites("seed")
    assert own.latest() == "seed" and own.is_own("seed")
    own.observe(VersionSaved(version=1, skill_hash="v1", step=1))
    assert own.is_own("v1") and own.latest() == "seed"  # a version made, not yet the one on disk
    own.observe(StepFinished(step=1, train_loss=0.0, val_score=1.0, kept=True, skill_hash="v2"))
    assert own.is_own("v2") and own.latest() == "v2"
    assert not own.is_own("a person's edit")
    own.reset("edited")
    assert own.latest() == "edited" and own.is_own("v1")


async def test_the_app_ignores_its_runs_writes_and_reacts_to_a_users_edit(skill_dir: Path) -> None:
    app = SkillgradApp(skill_dir, SUITE, backend_factory=scripted_backend_factory(),
                       config=Config(values={"optimize": {"steps": 1}}), gate="all", watch=True,
                       watch_debounce_s=0.15)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.watcher is not None and app.suite is not None)
        await pilot.press("r")
        await wait_for(pilot, lambda: app.last_result is not None and not app.running)
        written = folder_hash(skill_dir)
        assert app.own_writes.is_own(written) and app.own_writes.latest() == written
        # A change seen mid-run is judged once the run stops: the run's own content is ignored ...
        app._pending_change = ("SKILL.md modified", written)
        app._after_run()
        assert app.changes_handled == 0 and not app.running
        # ... and a person's edit is not.
        md = skill_dir / "SKILL.md"
        md.write_text(md.read_text() + "\n- Mine.\n")
        mine = folder_hash(skill_dir)
        assert not app.own_writes.is_own(mine)
        await wait_for(pilot, lambda: app.changes_handled == 1)
        await wait_for(pilot, lambda: not app.running)


def test_watch_mode_ignores_the_optimisers_writes_and_reports_a_users_edit(skill_dir: Path) -> None:
    session = Session(skill_dir, SUITE, ONE_STEP, scripted_backend_factory())
    loop = WatchLoop(session, optimize=True, out=__import__("io").StringIO())
    before = folder_hash(skill_dir)
    loop._optimize()  # the optimiser writes the skill (validation gate), feeding the tracker
    after = folder_hash(skill_dir)
    assert loop.own_writes.is_own(after) and loop.own_writes.latest() == after
    versions = [e.skill_hash for e in replay(next((skill_dir.parent / ".skillgrad" / "runs").iterdir()))
                if isinstance(e, VersionSaved)]
    assert versions and all(loop.own_writes.is_own(h) for h in versions)
    # Changes seen while it optimised, ending on its own content: no evaluation for them.
    assert loop.users_change([("SKILL.md modified", h) for h in versions + [after]]) is None
    md = skill_dir / "SKILL.md"
    md.write_text(md.read_text() + "\n- Mine.\n")
    assert loop.users_change([("SKILL.md modified", after), ("mine", folder_hash(skill_dir))]) == "mine"
    assert before != folder_hash(skill_dir)
