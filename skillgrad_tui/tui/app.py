"""The terminal app: `skillgrad tui SKILL [--suite DIR]`.

Threading model: every run (optimise, resume, evaluate) happens in one thread worker. Its event
sink queues each core event (the same stream the CLI prints and the run log stores); the UI
thread drains the queue ten times a second and only renders, so a key press is never stuck
behind a model call or a burst of events. The human gate is the one place the worker waits on
the UI: the ReviewBridge blocks it until the review screen answers; cancelling (escape, q) makes
it raise Cancelled instead, so an unanswered review changes nothing and is asked again on
resume. The model is built inside the worker, on first use: the first frame never waits for it.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import DataTable, Header, TabbedContent, TabPane, Tree

from skillgrad_tui.config import Config, load_config
from skillgrad_tui.core.engine import Backend, CancelToken
from skillgrad_tui.core.errors import Cancelled, SkillgradError
from skillgrad_tui.core.gate import GATES as ENGINE_GATES
from skillgrad_tui.core.events import (CandidateDecided, CandidateProposed, CandidateScored, Event,
                                       GradientComputed, MemoryUpdated, PatchDecided, RunFinished, StepAccount,
                                       StepFinished, StepStarted, TaskFinished, TaskStarted, VersionSaved,
                                       Warning_)
from skillgrad_tui.core.skill import PendingWrite, Skill, load_skill
from skillgrad_tui.core.watcher import SkillWatcher, folder_hash
from skillgrad_tui.tui.commands import PaletteCommand, SkillgradCommands
from skillgrad_tui.tui.screens.compare import CompareScreen
from skillgrad_tui.tui.screens.help import HelpScreen, _bindings
from skillgrad_tui.tui.screens.history import HistoryScreen
from skillgrad_tui.tui.screens.pickers import ChoiceScreen, ConfirmScreen
from skillgrad_tui.tui.screens.review import ReviewScreen
from skillgrad_tui.tui.screens.trajectory import TrajectoryScreen, task_lookup
from skillgrad_tui.tui.session import ReviewBridge, Session, expected_hash, new_run_dir
from skillgrad_tui.tui.widgets.footer import StableFooter
from skillgrad_tui.tui.widgets.progress import ProgressPane
from skillgrad_tui.tui.widgets.run_panes import CandidatesPane, GradientsPane, MemoryPane, TrajectoriesPane
from skillgrad_tui.tui.widgets.skill_pane import SkillPane

GATES = ("ask", *(g for g in ENGINE_GATES if g != "ask"))  # the names are core's; the cycle starts at "ask"


class ReviewRequested(Message):
    def __init__(self, request: Any, answer: Callable[[Any], None]) -> None:
        super().__init__()
        self.request = request
        self.answer = answer


class SkillChanged(Message):
    def __init__(self, summary: str) -> None:
        super().__init__()
        self.summary = summary


class SuiteLoaded(Message):
    def __init__(self, suite: Any, error: str | None) -> None:
        super().__init__()
        self.suite = suite
        self.error = error


class WorkDone(Message):
    def __init__(self, kind: str, outcome: str, detail: str = "", result: Any = None) -> None:
        super().__init__()
        self.kind = kind  # "optimize" | "resume" | "evaluate"
        self.outcome = outcome  # "done" | "cancelled" | "error"
        self.detail = detail
        self.result = result


class SkillgradApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "SkillGrad"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (150, "-wide")]
    COMMANDS = App.COMMANDS | {SkillgradCommands}
    BINDINGS = [
        Binding("r,o", "optimize", "Optimise", key_display="r", id="run.optimize"),
        Binding("v", "evaluate", "Evaluate", id="run.evaluate"),
        Binding("escape", "cancel", "Cancel", id="run.cancel"),
        Binding("w", "toggle_watch", "Watch", id="watch.toggle"),
        Binding("g", "cycle_gate", "Gate", show=False, id="run.gate"),
        Binding("R", "recover", "Recover", show=False, id="skill.recover"),
        Binding("f1,question_mark", "help", "Help", key_display="F1", id="app.help"),
        Binding("ctrl+t", "change_theme", "Theme", show=False, id="app.theme"),
        Binding("z", "zoom", "Zoom pane", show=False, id="app.zoom"),
        Binding("1", "show_pane('skill')", "Skill pane", show=False, id="pane.skill"),
        Binding("2", "show_pane('trajectories')", "Trajectories", show=False, id="pane.trajectories"),
        Binding("3", "show_pane('gradients')", "Gradients", show=False, id="pane.gradients"),
        Binding("4", "show_pane('memory')", "Memory", show=False, id="pane.memory"),
        Binding("5", "show_pane('candidates')", "Candidates", show=False, id="pane.candidates"),
        Binding("h", "history", "History", show=False, id="run.history"),
        Binding("c", "compare", "Compare runs", show=False, id="run.compare"),
        Binding("e", "export", "Export run", show=False, id="run.export"),
        Binding("m", "pick_model", "Model", show=False, id="pick.model"),
        Binding("s", "pick_suite", "Suite", show=False, id="pick.suite"),
        Binding("S", "pick_split", "Split", show=False, id="pick.split"),
        Binding("n", "pick_steps", "Steps", show=False, id="pick.steps"),
        Binding("b", "pick_batch", "Batch size", show=False, id="pick.batch"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Plain text unless asked: messages carry TOML sections ("[suite]"), paths and errors."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def __init__(self, skill_path: Path, suite_path: Path | None = None, *,
                 backend_factory: Callable[[str], Backend] | None = None, config: Config | None = None,
                 model: str | None = None, no_cache: bool = False, watch: bool = False,
                 gate: str | None = None, watch_debounce_s: float = 0.5) -> None:
        super().__init__()
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            # The tab underline's 0.3 s slide costs ~20 full repaints per pane switch; on 2 busy
            # cores that doubled key-to-render p95 (bench_tui). Users can opt back in by env.
            self.animation_level = "none"
        skill_path = Path(skill_path).expanduser().resolve()
        config = config if config is not None else load_config(skill_path)
        self.session = Session(skill_path, suite_path, config, backend_factory, model, no_cache)
        explicit_gate = config.values.get("optimize", {}).get("gate")
        # The app is where a person is present, so it asks unless the config says otherwise.
        self.gate = gate or explicit_gate or "ask"
        self.watch_on_start = watch
        self.watch_debounce_s = watch_debounce_s
        self.watch_optimize = False  # watch mode re-optimises (not just re-evaluates) when set
        self.skill: Skill | None = None
        self.suite: Any = None
        self.suite_error: str | None = None
        self.watcher: SkillWatcher | None = None
        self.cancel_token: CancelToken | None = None
        self.run_kind: str | None = None
        self.run_dir: Path | None = None
        self.last_result: Any = None
        # Our own writes, for watch mode: the hash the folder has after the last write the app or
        # its run made, and every version hash the run produced (a change seen mid-run is judged
        # against these once the run stops).
        self._own_hash: str | None = None
        self._own_hashes: set[str] = set()
        self._run_done = threading.Event()
        self._run_done.set()
        self._pending_change: tuple[str, str] | None = None  # (summary, folder hash) seen mid-run
        self._resume_dir: Path | None = None
        self._review_screen: ReviewScreen | None = None
        self.events_seen = 0
        # The worker appends events here and the UI drains them in batches a few times a second:
        # a burst of events costs one repaint, and never queues up in front of a key press.
        self._events: collections.deque[Event] = collections.deque()
        self.first_frame_at: float | None = None  # time.perf_counter() of the first frame (bench)
        self.changes_handled = 0  # watch-mode re-evaluations started (for tests and the status)
        self._suite_picked = False  # the suite loading now was picked in the app (its error is notified)

    # -- layout ------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="∇")
        with Horizontal(id="main"):
            yield SkillPane(self.session.skill_path, id="skill")
            with TabbedContent(id="tabs", initial="tab-trajectories"):
                with TabPane("Trajectories", id="tab-trajectories"):
                    yield TrajectoriesPane(id="trajectories")
                with TabPane("Gradients", id="tab-gradients"):
                    yield GradientsPane(id="gradients")
                with TabPane("Memory", id="tab-memory"):
                    yield MemoryPane(id="memory")
                with TabPane("Candidates", id="tab-candidates"):
                    yield CandidatesPane(id="candidates")
        yield ProgressPane(id="progress")
        yield StableFooter()

    def on_mount(self) -> None:
        self.main.query_one("#progress").border_title = "progress"
        self.reload_skill()
        self._own_hash = folder_hash(self.session.skill_path)
        self._load_suite()
        self.set_interval(self.DRAIN_EVERY_S, self._drain_events)
        self._update_subtitle()
        self.main.query_one("#traj-table").focus()
        if self.watch_on_start:
            self.action_toggle_watch()

    def on_ready(self) -> None:
        self.first_frame_at = time.perf_counter()

    @property
    def main(self) -> Screen[Any]:
        """The main screen. App.query_one would search the active screen, which may be the
        review or a trajectory screen while events keep arriving."""
        return self.screen_stack[0]

    @property
    def skill_pane(self) -> SkillPane:
        return self.main.query_one(SkillPane)

    @property
    def progress(self) -> ProgressPane:
        return self.main.query_one(ProgressPane)

    @property
    def trajectories(self) -> TrajectoriesPane:
        return self.main.query_one(TrajectoriesPane)

    def _update_subtitle(self) -> None:
        if self.suite is not None:
            suite = f"suite {self.suite.name} ({len(self.suite.tasks)})"
        elif self.suite_error:
            suite = "no suite"
        else:
            suite = "suite …"
        watch = "watch+opt" if self.watcher and self.watch_optimize else "watch" if self.watcher else "watch off"
        self.sub_title = (f"{self.session.skill_path.name} · {suite} · {self.session.model_summary()} · "
                          f"gate {self.gate} · {watch}")

    # -- skill and suite ---------------------------------------------------------------------------

    def reload_skill(self) -> Skill | None:
        try:
            skill = load_skill(self.session.skill_path)
            if self.skill is None or skill.hash != self.skill.hash or self.skill_pane.error is not None:
                self.skill_pane.show_skill(skill)  # re-highlighting is the costly part: only on change
            self.skill = skill
        except SkillgradError as exc:
            fresh = not isinstance(self.skill_pane.error, PendingWrite)  # say it once, not on every reload
            self.skill = None
            self.skill_pane.show_skill(None, exc)
            if isinstance(exc, PendingWrite) and fresh:
                self.notify("an interrupted write of the skill is pending: press R (or 'Recover' in ctrl+p) "
                            "to finish it", title="Recovery needed", severity="warning", timeout=15)
        return self.skill

    def action_recover(self) -> None:
        """Finish or undo a write of the skill that a crash interrupted, and say which."""
        from skillgrad_tui.core.recovery import recover_skill

        if self.running:
            self.notify("a run is in progress; it finishes its own writes", severity="warning")
            return
        try:
            account = recover_skill(self.session.skill_path, command="skillgrad tui (recover)")
        except SkillgradError as exc:
            self.notify(str(exc), title="Recovery failed", severity="error", timeout=15)
            return
        self.notify(account, title="Recover")
        self.reload_skill()

    @work(thread=True, group="suite", exit_on_error=False)
    def _load_suite(self) -> None:
        try:
            message = SuiteLoaded(self.session.suite(), None)
        except SkillgradError as exc:
            message = SuiteLoaded(None, str(exc))
        self.session.device()  # probes llama.cpp here, off the UI thread, for the header
        self.post_message(message)

    @on(SuiteLoaded)
    def _suite_loaded(self, message: SuiteLoaded) -> None:
        self.suite, self.suite_error = message.suite, message.error
        self._update_subtitle()
        if message.error and self._suite_picked:  # a suite just picked that does not load: say why
            self.notify(message.error, title="No task suite", severity="error", timeout=15)
        self._suite_picked = False
        # Start-up is over: everything alive now (Textual, the widgets, the suite) lives as long as
        # the app. Freezing it keeps the cyclic GC from re-scanning it in every full collection,
        # which were 75-107 ms pauses mid-run (measured with gc.callbacks), now at most ~60 ms.
        gc.collect()
        gc.freeze()

    # -- runs --------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return not self._run_done.is_set()

    def _start(self, kind: str, gate: str | None = None) -> bool:
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
        self.cancel_token = CancelToken()
        self.run_kind = kind
        self.run_dir = None
        self._run_done.clear()
        label = {"optimize": f"optimise (gate {gate})", "resume": "resume run"}.get(kind, "evaluate val")
        self.progress.begin(label)
        self.trajectories.clear(f"{label}: starting (the model loads on first use)…",
                                "evaluation" if kind == "evaluate" else "seed evaluation")
        self._run_worker(kind, gate or self.gate, self.cancel_token)
        self.refresh_bindings()
        return True

    def _sink(self, event: Event) -> None:
        """Runs on the worker thread: note the versions the run writes, then hand the event to the UI."""
        if isinstance(event, VersionSaved):
            self._own_hashes.add(event.skill_hash)
        elif isinstance(event, StepFinished):
            self._own_hashes.add(event.skill_hash)
            self._own_hash = event.skill_hash  # the version on disk once the step is done
        self._events.append(event)  # deque.append is atomic: no lock needed

    @work(thread=True, exclusive=True, group="run", exit_on_error=False)
    def _run_worker(self, kind: str, gate: str, cancel: CancelToken) -> None:
        done: WorkDone
        try:
            if kind == "optimize":
                result = self._optimize(gate, cancel)
            elif kind == "resume":
                result = self._optimize(gate, cancel, resume=self._resume_dir)
            else:
                result = self._evaluate(cancel)
            final = getattr(result, "final_skill_hash", None)
            if final:
                self._own_hashes.add(final)
                self._own_hash = final
            done = WorkDone(kind, "done", result=result)
        except Cancelled:
            done = WorkDone(kind, "cancelled")
        except SkillgradError as exc:
            done = WorkDone(kind, "error", str(exc))
        except Exception as exc:  # a bug: keep the app alive, show it, log the traceback
            self.log.error(traceback.format_exc())
            done = WorkDone(kind, "error", f"{type(exc).__name__}: {exc}")
        finally:
            # Before WorkDone is handled, so its handler sees no run in progress (and may start one).
            self._run_done.set()
        self.post_message(done)

    def _optimize(self, gate: str, cancel: CancelToken, resume: Path | None = None) -> Any:
        if resume is None:
            skill = load_skill(self.session.skill_path)
            self.run_dir = new_run_dir(self.session.skill_path, self.session.config, skill.hash)
        else:
            self.run_dir = resume
        # A resumed run keeps its own gate, which may be "ask": the bridge is only called then.
        review = ReviewBridge(self._request_review, cancel)
        return self.session.optimize(gate, None if resume else self.run_dir, sink=self._sink, cancel=cancel,
                                     review=review, resume=resume)

    def _evaluate(self, cancel: CancelToken) -> Any:
        skill = load_skill(self.session.skill_path)
        self.run_dir = self.session.eval_run_dir(skill.hash)
        return self.session.evaluate(skill, self.run_dir, sink=self._sink, cancel=cancel)

    def _request_review(self, request: Any, answer: Callable[[Any], None]) -> None:
        """Worker thread: ask the UI to show the review screen."""
        self.post_message(ReviewRequested(request, answer))

    @on(ReviewRequested)
    def _show_review(self, message: ReviewRequested) -> None:
        if self.cancel_token is not None and self.cancel_token.cancelled:
            return  # the bridge answers "reject everything" by itself
        screen = ReviewScreen(message.request)
        self._review_screen = screen

        def decided(decision: Any) -> None:
            self._review_screen = None
            if decision is not None:
                own = expected_hash(message.request, decision)
                if own is not None:  # recorded before the optimiser writes it
                    self._own_hashes.add(own)
                    self._own_hash = own
                message.answer(decision)

        self.push_screen(screen, decided)

    DRAIN_EVERY_S = 0.1  # how often queued run events are rendered
    DRAIN_MAX = 500  # events per batch; the rest wait for the next tick

    def _drain_events(self, limit: int | None = DRAIN_MAX) -> None:
        if not self._events or not self.is_running:
            return
        batch: list[Event] = []
        while self._events and (limit is None or len(batch) < limit):
            batch.append(self._events.popleft())
        reload = False
        progress = self.progress
        for event in batch:
            reload = self._on_run_event(event) or reload
        progress.refresh_all()
        if reload:
            self.reload_skill()

    def _on_run_event(self, event: Event) -> bool:
        """Route one event to the panes; True when the skill on disk may have changed."""
        self.events_seen += 1
        self.progress.handle(event, refresh=False)
        if isinstance(event, StepStarted):
            self.trajectories.start_step(event)
        elif isinstance(event, TaskStarted):
            self.trajectories.task_started(event)
        elif isinstance(event, TaskFinished):
            self.trajectories.task_finished(event)
        elif isinstance(event, GradientComputed):
            self.main.query_one(GradientsPane).show(event)
        elif isinstance(event, MemoryUpdated):
            self.main.query_one(MemoryPane).show(event)
        elif isinstance(event, CandidateProposed):
            self.main.query_one(CandidatesPane).proposed(event)
        elif isinstance(event, CandidateScored):
            self.main.query_one(CandidatesPane).scored(event)
        elif isinstance(event, CandidateDecided):
            self.main.query_one(CandidatesPane).decided(event)
        elif isinstance(event, StepAccount):
            self.main.query_one(CandidatesPane).summary(f"step {event.step}: {event.summary}")
        elif isinstance(event, RunFinished) and event.summary:
            self.main.query_one(CandidatesPane).summary(f"run: {event.summary}")
        elif isinstance(event, (PatchDecided, StepFinished)):
            return True
        elif isinstance(event, Warning_):
            self.notify(event.message, severity="warning")
        return False

    @on(WorkDone)
    def _on_work_done(self, message: WorkDone) -> None:
        self.last_result = message.result
        if not self.is_running:
            return
        self._drain_events(limit=None)  # every event of the run is shown before its outcome
        if self._review_screen is not None:
            self._review_screen.cancel()
        if message.outcome != "done":  # rows of tasks that never finished must not read "running"
            self.trajectories.stop_unfinished("cancelled" if message.outcome == "cancelled" else "stopped")
        if message.outcome == "done":
            reason = getattr(message.result, "reason", None) or "done"
            self.progress.end(reason)
            if message.kind == "evaluate" and message.result is not None:
                r = message.result
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
                summary = getattr(message.result, "summary", "")
                self.notify(f"run finished: {reason}" + (f"\n{summary}" if summary else ""), title="Optimised",
                            timeout=12 if summary.startswith("no change") else 5)
        elif message.outcome == "cancelled":
            self.progress.end("cancelled")
            self.notify("cancelled; the skill on disk and the run log are consistent", title="Cancelled")
        else:
            self.progress.end("error")
            self.notify(message.detail, title=f"{message.kind} failed", severity="error", timeout=15)
        self.run_kind = None
        self._update_subtitle()  # the header names the device once the model has loaded
        self.refresh_bindings()
        self.reload_skill()
        if self._pending_change is not None:
            (summary, seen), self._pending_change = self._pending_change, None
            if seen not in self._own_hashes:
                self._react_to_change(summary)

    # -- watch mode --------------------------------------------------------------------------------

    def _watch_changed(self, summary: str) -> None:
        """Watcher thread: a burst of real changes ended."""
        self.post_message(SkillChanged(summary))

    @on(SkillChanged)
    def _on_skill_changed(self, message: SkillChanged) -> None:
        if self.watcher is None or not self.is_running:
            return
        if self.running:
            # Maybe the run's own patch (its version event comes later): judged when the run stops.
            self._pending_change = (message.summary, folder_hash(self.session.skill_path))
            return
        self._react_to_change(message.summary)

    def _react_to_change(self, summary: str) -> None:
        skill = self.reload_skill()
        if skill is None:
            self.notify(f"{summary}: the skill no longer loads", title="Watch", severity="error")
            return
        self.changes_handled += 1
        self.notify(summary, title="Skill changed: re-" + ("optimising" if self.watch_optimize else "evaluating"))
        self._start("optimize" if self.watch_optimize else "evaluate", self.gate)

    def action_toggle_watch(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
            self.notify("watch mode off")
        else:
            self._own_hash = folder_hash(self.session.skill_path) if not self.running else self._own_hash
            watcher = SkillWatcher(self.session.skill_path, self._watch_changed,
                                   debounce_s=self.watch_debounce_s, ignore_hash=lambda: self._own_hash)
            try:
                watcher.start()
            except OSError as exc:  # folder gone, or out of inotify watches
                self.notify(f"cannot watch {self.session.skill_path}: {exc}", severity="error")
                return
            self.watcher = watcher
            self.notify("watch mode on: saving the skill re-" +
                        ("optimises" if self.watch_optimize else "evaluates") + " it")
        self._update_subtitle()

    def action_toggle_watch_optimize(self) -> None:
        self.watch_optimize = not self.watch_optimize
        self.notify("watch mode re-" + ("optimises" if self.watch_optimize else "evaluates") + " on change")
        self._update_subtitle()

    # -- actions -----------------------------------------------------------------------------------

    MAIN_ONLY = frozenset({"optimize", "evaluate", "resume", "toggle_watch", "cycle_gate", "zoom", "show_pane",
                           "recover", "history", "compare", "export", "pick_model", "pick_suite", "pick_split",
                           "pick_steps", "pick_batch"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Main-screen actions are hidden on the review, trajectory and help screens (where
        their keys mean something else); cancel is greyed out when nothing runs."""
        if action in self.MAIN_ONLY and len(self.screen_stack) > 1:
            return False
        if action == "cancel" and not self.running:
            return None
        return True

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
        self._resume_dir = runs[0]
        self._start("resume", self.gate)

    def action_cancel(self) -> None:
        if not self.running or self.cancel_token is None:
            return
        self.cancel_token.cancel()
        if self._review_screen is not None:
            self._review_screen.cancel()
        self.progress.mark_cancelling()

    def action_cycle_gate(self) -> None:
        self.gate = GATES[(GATES.index(self.gate) + 1) % len(GATES)] if self.gate in GATES else GATES[0]
        self.notify(f"gate: {self.gate}" + (" (takes effect on the next run)" if self.running else ""))
        self._update_subtitle()

    def action_set_gate(self, gate: str) -> None:
        self.gate = gate
        self._update_subtitle()

    def action_show_pane(self, pane: str) -> None:
        if pane == "skill":  # the file's text first, so that it scrolls; pressed again, the file tree
            view = self.main.query_one("#skill-view")
            (self.main.query_one("#skill-tree", Tree) if view.has_focus else view).focus()
            return
        self.main.query_one(TabbedContent).active = f"tab-{pane}"
        table = {"trajectories": "#traj-table", "gradients": "#grad-table", "memory": "#mem-table",
                 "candidates": "#cand-table"}[pane]
        self.main.query_one(table, DataTable).focus()

    def action_export(self) -> None:
        """The last run of this session, else the newest run of the skill."""
        run = self.run_dir if self.run_dir is not None and (self.run_dir / "events.jsonl").is_file() else None
        if run is None:
            runs = self.optimiser_runs()
            run = runs[0] if runs else None
        if run is None:
            self.notify("no run to export yet: optimise (r) or evaluate (v) first", severity="warning")
            return
        self.export_run(run)

    def export_run(self, run_dir: Path) -> None:
        from skillgrad_tui.tui.run_actions import export_run_files

        try:
            out, written = export_run_files(run_dir)
        except (OSError, SkillgradError) as exc:
            self.notify(str(exc), title="Export failed", severity="error")
            return
        self.notify(f"{out}: {', '.join(written)}", title="Exported")

    # -- the workbench: pickers, history, rollback, compare -----------------------------------------

    def _refuse_while_running(self, what: str) -> bool:
        if self.running:
            self.notify(f"a run is in progress: {what} waits until it ends (escape cancels it)",
                        title="Not now", severity="warning")
            return True
        return False

    def optimiser_runs(self) -> list[Path]:
        """This skill's optimiser runs, newest first."""
        from skillgrad_tui.tui.run_actions import runs_of
        from skillgrad_tui.tui.session import runs_root

        return runs_of(runs_root(self.session.skill_path, self.session.config))

    def _pick(self, title: str, choices: list[tuple[str, str]], current: str | None,
              then: Callable[[str], None], *, typed: str | None = None, integer: bool = False) -> None:
        def picked(value: str | None) -> None:
            if value is None:
                return
            if self._refuse_while_running("the change"):  # a run may have started meanwhile (watch)
                return
            try:
                then(value)
            except (SkillgradError, ValueError) as exc:
                self.notify(str(exc), title="Not changed", severity="error")
                return
            self._update_subtitle()

        self.push_screen(ChoiceScreen(title, choices, current, typed=typed, integer=integer), picked)

    def action_pick_model(self) -> None:
        if self._refuse_while_running("changing the model"):
            return
        self._list_models()

    @work(thread=True, group="models", exit_on_error=False)
    def _list_models(self) -> None:
        from skillgrad_tui.core.engine import model_choices

        choices = model_choices(self.session.config.models)  # reads GGUF headers: off the UI thread
        self.call_from_thread(self._show_models, choices)

    def _show_models(self, models: list[Any]) -> None:
        current = self.session.model or self.session.config.get("model", "default")
        choices = [(m.name, f"{m.name}  ({m.source})" + (f"  unusable: {m.error}" if m.error else ""))
                   for m in models]

        def use(name: str) -> None:
            if name not in {m.name for m in models} and not Path(name).expanduser().is_file():
                raise SkillgradError(f"no such model: {name} (not listed by `skillgrad models`, not a file)")
            self.session.set_model(name)
            self._probe_device()
            self.notify(f"model {name}: loaded on the next run", title="Model")

        self._pick("Model for the next run (task and optimiser)", choices, current, use,
                   typed="or a GGUF path")

    @work(thread=True, group="device", exit_on_error=False)
    def _probe_device(self) -> None:
        self.session.device()
        self.call_from_thread(self._update_subtitle)

    def action_pick_suite(self) -> None:
        if self._refuse_while_running("changing the suite"):
            return
        current = str(self.session.suite_path) if self.session.suite_path else None
        choices = [(str(p), f"{p.name}  ({p})") for p in self.session.suite_choices()]

        def use(raw: str) -> None:
            path = Path(raw).expanduser()
            if not path.exists():
                raise SkillgradError(f"no such suite: {path}")
            self.session.set_suite(path)
            self._reload_suite()

        self._pick("Task suite", choices, current, use, typed="or a suite path (folder or .jsonl)")

    def action_pick_split(self) -> None:
        if self._refuse_while_running("changing the split"):
            return
        splits = self.session.split_choices()
        if not splits:
            self.notify("this suite has no named splits: the seeded train/val/test split of its tasks "
                        "applies", title="Split")
            return
        current = self.session.config.get("suite", "split") or ""
        choices = [("", "default (the suite's own choice)")] + [(name, name) for name in splits]

        def use(split: str) -> None:
            self.session.set_split(split)
            self._reload_suite()

        self._pick("Split of the suite the tasks come from", choices, current, use)

    def _reload_suite(self) -> None:
        self.suite, self.suite_error = None, None
        self._suite_picked = True
        self._load_suite()

    def _pick_number(self, key: str, label: str, options: tuple[int, ...]) -> None:
        if self._refuse_while_running(f"changing {label}"):
            return
        current = str(self.session.config.get("optimize", key))

        def use(raw: str) -> None:
            self.session.set_option(key, int(raw))
            self.notify(f"{label}: {raw} for the next run", title="Optimiser")

        self._pick(f"{label[0].upper()}{label[1:]} (now {current})", [(str(n), str(n)) for n in options], current,
                   use, typed="or type a number", integer=True)

    def action_pick_steps(self) -> None:
        self._pick_number("steps", "steps", (1, 2, 3, 5, 10, 20, 50))

    def action_pick_batch(self) -> None:
        self._pick_number("batch_size", "batch size", (1, 2, 4, 8, 16, 32))

    def action_history(self) -> None:
        runs = self.optimiser_runs()
        if not runs:
            self.notify("no optimiser run of this skill yet: optimise (r) first", severity="warning")
            return
        index = runs.index(self.run_dir) if self.run_dir in runs else 0
        self.push_screen(HistoryScreen(runs, index))

    def action_compare(self, first: Path | None = None) -> None:
        runs = self.optimiser_runs()
        if len(runs) < 2:
            self.notify("comparing needs two optimiser runs of this skill; there are "
                        f"{len(runs)}", severity="warning")
            return
        choices = [(str(r), r.name) for r in runs]

        def second(a: Path) -> None:
            rest = [c for c in choices if c[0] != str(a)]

            def show(b: str | None) -> None:
                if b:
                    self.push_screen(CompareScreen(a, Path(b)))

            self.push_screen(ChoiceScreen(f"Compare {a.name} (A) with run B", rest, rest[0][0]), show)

        if first is not None:
            second(first)
        else:
            self.push_screen(ChoiceScreen("Compare two runs: run A", choices, choices[0][0]),
                             lambda a: second(Path(a)) if a else None)

    def confirm_rollback(self, run_dir: Path, version: int, done: Callable[[], None] | None = None) -> None:
        if self._refuse_while_running("a rollback"):
            return

        def answered(yes: bool | None) -> None:
            if yes and self.rollback_to(run_dir, version) and done is not None:
                done()

        self.push_screen(ConfirmScreen(f"Roll {self.session.skill_path.name} back to version {version} of run "
                                       f"{run_dir.name}?",
                                       "Files the version lacks, and the old content of files it overwrites, "
                                       f"are kept in {run_dir / 'set-aside'}."), answered)

    def rollback_to(self, run_dir: Path, version: int) -> bool:
        """Write version `version` of the run into the skill; refused while a run is running."""
        from skillgrad_tui.tui.run_actions import rollback

        if self._refuse_while_running("a rollback"):
            return False
        try:
            done = rollback(run_dir, version, self.session.skill_path)
        except SkillgradError as exc:
            self.notify(str(exc), title="Rollback failed", severity="error")
            return False
        self._own_hash = done.hash  # our write: watch mode must not take it for an edit
        self._own_hashes.add(done.hash)
        self.reload_skill()
        kept = len(done.removed) + len(done.replaced)
        self.notify(f"restored version {version} ({done.hash[:12]})" +
                    (f"; {kept} previous file(s) kept in {done.set_aside}" if kept else ""), title="Rolled back")
        return True

    def action_zoom(self) -> None:
        if self.screen.maximized is not None:
            self.screen.minimize()
        else:
            self.screen.action_maximize()

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        sections = [("Main screen", _bindings(self.BINDINGS) + [Binding("ctrl+p", "", "Command palette"),
                                                                 Binding("enter", "", "Open trajectory")])]
        sections.append(("Patch review", _bindings(ReviewScreen.BINDINGS)))
        sections.append(("History", _bindings(HistoryScreen.BINDINGS)))
        notes = ("Every action is also in the command palette (ctrl+p). Escape cancels a run between "
                 "tokens; q quits (mid-run it cancels and waits, so the skill and the run log stay "
                 "consistent and the run can be resumed). Gate 'ask' shows each patch for review; "
                 "nothing changes on disk without a key press. Model, suite, split, steps and batch size "
                 "apply to the next run and cannot change during one. In the history (h), space marks a "
                 "version and d diffs it against the one under the cursor; b rolls back after a yes.")
        self.push_screen(HelpScreen(sections, notes))

    async def action_quit(self) -> None:
        if self.running and self.cancel_token is not None:
            self.cancel_token.cancel()
            if self._review_screen is not None:
                self._review_screen.cancel()
            self.notify("cancelling the run before quitting…")
            deadline = time.monotonic() + 60
            while self.running and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        self._stop_services()
        self.exit(0)

    def _stop_services(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if self.cancel_token is not None:
            self.cancel_token.cancel()
        # The model must outlive the worker that uses it (closing llama.cpp under a running
        # generation would crash): a cancelled worker stops within a token.
        if self._run_done.wait(timeout=30):
            self.session.close()

    def on_unmount(self) -> None:
        """However the app ends (q, ctrl+q, a test leaving run_test): no worker is left blocked."""
        self._stop_services()

    @on(TrajectoriesPane.Open)
    def _open_trajectory(self, message: TrajectoriesPane.Open) -> None:
        task_id = message.key.split(":", 1)[1]
        self.push_screen(TrajectoryScreen(message.key, message.finished, task_lookup(self.suite, task_id),
                                          self.run_dir))

    # -- command palette ---------------------------------------------------------------------------

    def palette_commands(self) -> list[PaletteCommand]:
        watch = "off" if self.watcher else "on"
        c = self.session.config
        cmds = [
            PaletteCommand("Optimise", f"Run the optimiser with gate '{self.gate}' (r)", self.action_optimize),
            PaletteCommand("Optimise, reviewing each patch", "Gate 'ask': every edit goes through the diff review",
                           lambda: self.action_optimize("ask")),
            PaletteCommand("Optimise, validation gate", "Keep a patch only if validation does not drop",
                           lambda: self.action_optimize("validation")),
            PaletteCommand("Optimise, accept all patches", "The paper's behaviour: every patch is kept",
                           lambda: self.action_optimize("all")),
            PaletteCommand("Evaluate", "Score the skill on the validation split (v)", self.action_evaluate),
            PaletteCommand("Resume stopped run", "Continue the newest run that was cancelled or quit",
                           self.action_resume),
            PaletteCommand("Cancel run", "Stop the run between tokens (escape)", self.action_cancel),
            PaletteCommand(f"Watch mode {watch}", "Re-evaluate when the skill folder changes (w)",
                           self.action_toggle_watch),
            PaletteCommand("Watch: " + ("re-evaluate only" if self.watch_optimize else "re-optimise on change"),
                           "What a change in watch mode starts", self.action_toggle_watch_optimize),
            PaletteCommand("Cycle gate", f"Now '{self.gate}'; ask → validation → all (g)", self.action_cycle_gate),
            PaletteCommand("Reload skill", "Read the skill folder again", self.reload_skill),
            PaletteCommand("Recover interrupted write", "Finish or undo a write of the skill that a crash "
                           "interrupted, and say which (R)", self.action_recover),
            PaletteCommand("Show skill pane", "(1)", lambda: self.action_show_pane("skill")),
            PaletteCommand("Show trajectories", "(2)", lambda: self.action_show_pane("trajectories")),
            PaletteCommand("Show gradients", "(3)", lambda: self.action_show_pane("gradients")),
            PaletteCommand("Show momentum memory", "(4)", lambda: self.action_show_pane("memory")),
            PaletteCommand("Show candidates", "The pool, its lineage and the gate's decisions (5)",
                           lambda: self.action_show_pane("candidates")),
            PaletteCommand("Export run", "The last run as JSON, CSV and a self-contained HTML report, in its "
                           "folder's export/ (e)", self.action_export),
            PaletteCommand("History of runs", "Versions' lineage, scores per step, diff and rollback (h)",
                           self.action_history),
            PaletteCommand("Rollback to a version", "Open the history; b rolls the skill back to the selected "
                           "version", self.action_history),
            PaletteCommand("Compare two runs", "Scores, steps, tokens, kept versions and the final skills' diff (c)",
                           self.action_compare),
            PaletteCommand("Pick model", f"Now {self.session.model_summary()} (m)", self.action_pick_model),
            PaletteCommand("Pick suite", f"Now {self.session.suite_path} (s)", self.action_pick_suite),
            PaletteCommand("Pick split", f"Now '{c.get('suite', 'split') or 'default'}' (S)", self.action_pick_split),
            PaletteCommand("Set steps", f"Optimiser steps, now {c.get('optimize', 'steps')} (n)",
                           self.action_pick_steps),
            PaletteCommand("Set batch size", f"Tasks per step, now {c.get('optimize', 'batch_size')} (b)",
                           self.action_pick_batch),
            PaletteCommand("Zoom pane", "Maximise or restore the focused pane (z)", self.action_zoom),
            PaletteCommand("Change theme", "Pick a Textual theme (ctrl+t)", self.action_change_theme),
            PaletteCommand("Help", "All keys (F1 or ?)", self.action_help),
            PaletteCommand("Quit", "Cancel any run, wait for it, and exit (q)", self.action_quit),
        ]
        return cmds


def run_app(skill: Path, suite: Path | None, config_path: Path | None, model: str | None, no_cache: bool,
            watch: bool = False) -> int:
    """Entry point for `skillgrad tui`; SkillgradError (bad config, ...) propagates to the CLI."""
    config = load_config(Path(skill), explicit=config_path)
    if not (Path(skill) / "SKILL.md").is_file():  # else the app would scan whatever folder this is
        raise SkillgradError(f"not a skill folder (no SKILL.md): {Path(skill).resolve()}; "
                             "give one, e.g. `skillgrad tui skills/table-qa`")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):  # escape codes into a pipe, waiting for keys
        raise SkillgradError("the terminal app needs a terminal; in scripts use `skillgrad eval`, "
                             "`skillgrad optimize --json` or `skillgrad watch`")
    app = SkillgradApp(Path(skill), suite, config=config, model=model, no_cache=no_cache, watch=watch)
    code = app.run()
    return int(code or 0)
