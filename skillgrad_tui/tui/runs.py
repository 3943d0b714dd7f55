"""Runs (optimise, resume, evaluate) in a Textual thread worker, and the way out of them.

Each run is one `@work(thread=True)` worker: whether a run is in progress is the worker's state,
and its outcome comes back with Textual's `Worker.StateChanged`. The engine's events are posted
from the worker thread as `RunEvents` messages, a burst per message, so the UI thread only renders
and a key press never waits behind a model call. The human gate is the one place the worker
waits on the UI (review_bridge.py). Cancelling (escape, q) sets the engine's CancelToken and
resolves a review that waits: the worker stops between tokens. (Not `Worker.cancel()`: for a
thread worker it marks the worker cancelled at once while its thread still runs, and the state
would no longer say whether the run is in progress. Textual cancels it at shutdown; the sink
then stops the engine too.) Quitting never blocks the UI: it
cancels and exits once the worker has stopped, from an async worker of its own; the models are
closed when no run thread uses them any more (closing llama.cpp under a generation would crash).
The model is built inside the worker, on first use: the first frame never waits for it.
"""

from __future__ import annotations

import asyncio
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual import on, work
from textual.worker import Worker, WorkerCancelled, WorkerFailed, WorkerState

from skillgrad_tui.core.engine import CancelToken
from skillgrad_tui.core.errors import Cancelled, SkillgradError
from skillgrad_tui.core.events import Event, RunFinished, StepFinished, Warning_
from skillgrad_tui.core.skill import PendingWrite, load_skill
from skillgrad_tui.tui.app_base import AppBase
from skillgrad_tui.tui.messages import EventOutbox, ReviewRequested, RunEvents, RunKind, RunOutcome
from skillgrad_tui.tui.review_bridge import ReviewBridge, resolve
from skillgrad_tui.tui.screens.history import HistoryScreen
from skillgrad_tui.tui.screens.main import MainScreen
from skillgrad_tui.tui.screens.review import ReviewScreen
from skillgrad_tui.tui.session import expected_hash

QUIT_WAIT_S = 60.0  # how long q waits for a cancelled run to stop before exiting anyway


@dataclass
class Run:
    """One run: what it is, how to stop it, and the worker that does it."""

    kind: RunKind
    gate: str
    cancel: CancelToken = field(default_factory=CancelToken)
    bridge: ReviewBridge | None = None
    resume: Path | None = None
    worker: "Worker[RunOutcome] | None" = None
    ended: bool = False  # the UI thread has handled the finished worker's outcome

    def stop(self) -> None:
        """Any thread: the engine stops between tokens; a review that waits raises Cancelled."""
        self.cancel.cancel()
        if self.bridge is not None:
            self.bridge.cancel()


class ModelRelease:
    """Closes the session's models once no run thread uses them: now, or when the last ends."""

    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close
        self._lock = threading.Lock()
        self._users = 0
        self._wanted = False

    def acquire(self) -> None:
        with self._lock:
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            go = self._wanted and self._users == 0
        if go:
            self._close()

    def close_when_idle(self) -> None:
        with self._lock:
            self._wanted = True
            go = self._users == 0
        if go:
            self._close()


class RunsApp(AppBase):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.current_run: Run | None = None  # the last run started (App.run is Textual's)
        self._outbox = EventOutbox(self.post_message)
        self._models = ModelRelease(self.session.close)
        self._review_screen: ReviewScreen | None = None

    @property
    def running(self) -> bool:
        """A run is in progress until its outcome has been handled. The worker's own state turns
        finished in its thread, before Worker.StateChanged reaches the UI: a run started (or a
        result read) in between would miss the outcome, which the handler then drops."""
        run = self.current_run
        return run is not None and run.worker is not None and not run.ended

    def _start(self, kind: RunKind, gate: str | None = None, resume: Path | None = None) -> bool:
        if self.running:
            self.notify("a run is already in progress (escape cancels it)", severity="warning")
            return False
        if self.suite_error:
            self.notify(self.suite_error, title="No task suite", severity="error")
            return False
        if self.reload_skill() is None:
            if not isinstance(self.skill_pane.error, PendingWrite):  # that one has its own notice
                self.notify("the skill does not load; fix it first (see the skill pane)", severity="error")
            return False
        run = Run(kind, gate or self.gate, resume=resume)
        self.run_dir = None
        label = {"optimize": f"optimise (gate {run.gate})", "resume": "resume run"}.get(kind, "evaluate val")
        self.progress.begin(label)
        self.trajectories.clear(f"{label}: starting (the model loads on first use)…",
                                "evaluation" if kind == "evaluate" else "seed evaluation")
        self.current_run = run
        run.worker = self._run_work(run)
        self.refresh_bindings()
        return True

    # -- the worker thread -------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="run", exit_on_error=False)
    def _run_work(self, run: Run) -> RunOutcome:
        self._models.acquire()
        try:
            return self._outcome_of(run)
        finally:
            self._models.release()

    def _outcome_of(self, run: Run) -> RunOutcome:
        try:
            if run.kind == "evaluate":
                skill = load_skill(self.session.skill_path)
                self.run_dir = self.session.eval_run_dir(skill.hash)
                result = self.session.evaluate(skill, self.run_dir, sink=self._sink, cancel=run.cancel)
            else:
                result = self._optimize(run)
            final = getattr(result, "final_skill_hash", None)
            if final:
                self.own_writes.wrote(final)
            return RunOutcome(run.kind, "done", result=result)
        except Cancelled:
            return RunOutcome(run.kind, "cancelled")
        except SkillgradError as exc:
            return RunOutcome(run.kind, "error", str(exc))
        except Exception as exc:  # a bug: keep the app alive, show it, log the traceback
            self.log.error(traceback.format_exc())
            return RunOutcome(run.kind, "error", f"{type(exc).__name__}: {exc}")

    def _optimize(self, run: Run) -> Any:
        if run.resume is None:
            skill = load_skill(self.session.skill_path)
            self.run_dir = self.session.new_run_dir(skill.hash)
        else:
            self.run_dir = run.resume
        # A resumed run keeps its own gate, which may be "ask": the bridge is only called then.
        run.bridge = ReviewBridge(self._request_review)
        if run.cancel.cancelled:  # cancelled before the bridge existed: nothing else would stop it
            raise Cancelled()
        return self.session.optimize(run.gate, None if run.resume else self.run_dir, sink=self._sink,
                                     cancel=run.cancel, review=run.bridge, resume=run.resume)

    def _sink(self, event: Event) -> None:
        """Worker thread: note what the engine wrote, then hand the event to the UI."""
        run = self.current_run  # not get_current_worker(): concurrent evaluation calls from pool threads
        if run is not None and run.worker is not None and run.worker.is_cancelled:
            run.stop()  # Textual cancelled the worker (the app is closing): stop the engine too
        self.own_writes.observe(event)
        self._outbox.put(event)

    def _request_review(self, request: Any, answer: "Future[Any]") -> None:
        self.post_message(ReviewRequested(request, answer))

    # -- the UI thread -----------------------------------------------------------------------------

    @on(RunEvents)
    def _show_events(self, message: RunEvents) -> None:
        events = message.take()
        if not events or not self.is_running:
            return
        self.events_seen += len(events)
        main: MainScreen = self.main
        if main.show_events(events):
            self.reload_skill()
        screen = self.screen
        if (isinstance(screen, HistoryScreen) and screen.run_dir == self.run_dir
                and any(isinstance(e, (StepFinished, RunFinished)) for e in events)):
            screen.reload()  # the history of the run in progress follows it
        for event in events:
            if isinstance(event, Warning_):
                self.notify(event.message, severity="warning")

    @on(ReviewRequested)
    def _show_review(self, message: ReviewRequested) -> None:
        if self.current_run is None or self.current_run.cancel.cancelled:
            resolve(message.answer, error=Cancelled())
            return
        screen = ReviewScreen(message.request)
        self._review_screen = screen

        def decided(decision: Any) -> None:
            self._review_screen = None
            if decision is None:  # closed by a cancel: the step stays undecided
                resolve(message.answer, error=Cancelled())
                return
            own = expected_hash(message.request, decision)
            if own is not None:  # recorded before the optimiser writes it
                self.own_writes.wrote(own)
            resolve(message.answer, decision)

        self.push_screen(screen, decided)

    @on(Worker.StateChanged)
    def _run_state_changed(self, event: Worker.StateChanged) -> None:
        run = self.current_run
        if run is None or event.worker is not run.worker or not event.worker.is_finished:
            return
        if event.state == WorkerState.SUCCESS:
            outcome = event.worker.result
            assert isinstance(outcome, RunOutcome)
        elif event.state == WorkerState.CANCELLED:
            outcome = RunOutcome(run.kind, "cancelled")
        else:
            outcome = RunOutcome(run.kind, "error", str(event.worker.error))
        run.ended = True
        self._run_ended(outcome)

    def _run_ended(self, outcome: RunOutcome) -> None:
        self.last_result = outcome.result
        if not self.is_running:
            return
        if self._review_screen is not None:
            self._review_screen.cancel()
        if outcome.outcome != "done":  # rows of tasks that never finished must not read "running"
            self.trajectories.stop_unfinished("cancelled" if outcome.outcome == "cancelled" else "stopped")
        if outcome.outcome == "done":
            self._report_done(outcome)
        elif outcome.outcome == "cancelled":
            self.progress.end("cancelled")
            self.notify("cancelled; the skill on disk and the run log are consistent", title="Cancelled")
        else:
            self.progress.end("error")
            self.notify(outcome.detail, title=f"{outcome.kind} failed", severity="error", timeout=15)
        self._update_subtitle()  # the header names the device once the model has loaded
        self.refresh_bindings()
        self.reload_skill()
        self._after_run()

    def _report_done(self, outcome: RunOutcome) -> None:
        reason = getattr(outcome.result, "reason", None) or "done"
        self.progress.end(reason)
        r = outcome.result
        if outcome.kind == "evaluate" and r is not None:
            counts = r.outcomes
            if counts.all_errored:  # nothing was measured: an error, not a score of zero
                self.progress.end("error")
                self.notify(f"every task errored ({counts.errored}/{counts.n}): {counts.top_error}",
                            title="Evaluation errored", severity="error", timeout=15)
            else:
                self.notify(f"validation: {r.passed}/{r.n} passed ({r.accuracy:.2f})"
                            + (f"; {counts.errored} errored: {counts.top_error}" if counts.errored else ""),
                            title="Evaluated", severity="warning" if counts.errored else "information")
        else:
            summary = getattr(r, "summary", "")
            self.notify(f"run finished: {reason}" + (f"\n{summary}" if summary else ""), title="Optimised",
                        timeout=12 if summary.startswith("no change") else 5)

    def _after_run(self) -> None:
        """Called once a run has ended and been shown (watch mode judges changes it saw meanwhile)."""

    # -- actions -----------------------------------------------------------------------------------

    def action_optimize(self, gate: str | None = None) -> None:
        self._start("optimize", gate or self.gate)

    def action_evaluate(self) -> None:
        self._start("evaluate")

    def action_resume(self) -> None:
        """Continue the newest run of this skill that stopped before finishing (e.g. after q)."""
        if self.running:
            self.notify("a run is already in progress", severity="warning")
            return
        runs = self.session.stopped_runs()
        if not runs:
            self.notify("no stopped run of this skill to resume")
            return
        self._start("resume", self.gate, resume=runs[0])

    def _cancel_run(self) -> bool:
        if not self.running or self.current_run is None:
            return False
        self.current_run.stop()
        if self._review_screen is not None:
            self._review_screen.cancel()
        return True

    def action_cancel(self) -> None:
        if self._cancel_run():
            self.progress.mark_cancelling()

    async def action_quit(self) -> None:
        """Cancel a run and exit once it has stopped, so that the skill and the run log stay
        consistent and the run can be resumed. Nothing here waits: the UI keeps handling keys."""
        run = self.current_run
        if self._cancel_run() and run is not None and run.worker is not None:
            self.progress.mark_cancelling()
            self.notify("cancelling the run before quitting…")
            self._exit_when_stopped(run.worker)
            return
        self.exit(0)

    @work(group="quit", exclusive=True, exit_on_error=False)
    async def _exit_when_stopped(self, worker: "Worker[RunOutcome]") -> None:
        try:  # shielded: a timeout leaves the run worker alone (it stops by its cancel token)
            await asyncio.wait_for(asyncio.shield(worker.wait()), QUIT_WAIT_S)
        except (asyncio.TimeoutError, WorkerCancelled, WorkerFailed):
            pass
        self.exit(0)

    def on_unmount(self) -> None:
        """However the app ends (q, ctrl+q, a test leaving run_test): no run keeps going, no UI
        thread waits for one, and the models close once no run thread uses them."""
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if self.current_run is not None:
            self.current_run.stop()
        self._models.close_when_idle()


__all__ = ["ModelRelease", "QUIT_WAIT_S", "Run", "RunsApp"]
