"""The app's state and the parts every other part uses: the skill, the suite, the header.

`SkillgradApp` is built in layers, one module each: this base (state, skill, suite, header),
`runs` (the run worker, review and quit), `watch_mode`, `workbench` (pickers, history,
rollback, compare, export) and `app` (screens, bindings, help, palette).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App
from textual.notifications import SeverityLevel

from skillgrad_tui.config import Config, load_config
from skillgrad_tui.core.engine import Backend
from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.own_writes import OwnWrites
from skillgrad_tui.core.skill import PendingWrite, Skill, load_skill
from skillgrad_tui.core.watcher import SkillWatcher
from skillgrad_tui.tui.messages import SuiteLoaded
from skillgrad_tui.tui.screens.main import MainScreen
from skillgrad_tui.tui.session import Session
from skillgrad_tui.tui.widgets.progress import ProgressPane
from skillgrad_tui.tui.widgets.run_panes import TrajectoriesPane
from skillgrad_tui.tui.widgets.skill_pane import SkillPane


class AppBase(App[int]):
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
        self.gate: str = gate or explicit_gate or "ask"
        self.watch_on_start = watch
        self.watch_debounce_s = watch_debounce_s
        self.watch_optimize = False  # watch mode re-optimises (not just re-evaluates) when set
        self.skill: Skill | None = None
        self.suite: Any = None
        self.suite_error: str | None = None
        self.watcher: SkillWatcher | None = None
        self.run_dir: Path | None = None
        self.last_result: Any = None
        self.own_writes = OwnWrites()  # what the app and its runs wrote: watch mode ignores it
        self.events_seen = 0
        self.first_frame_at: float | None = None  # time.perf_counter() of the first frame (bench)
        self.changes_handled = 0  # watch-mode re-evaluations started (for tests and the status)
        self._suite_picked = False  # the suite loading now was picked in the app (its error is notified)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Plain text unless asked: messages carry TOML sections ("[suite]"), paths and errors."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # -- the main screen ---------------------------------------------------------------------------

    @property
    def main(self) -> MainScreen:
        """The main screen. App.query_one would search the active screen, which may be the
        review or a trajectory screen while events keep arriving."""
        screen = self.screen_stack[0]
        assert isinstance(screen, MainScreen)
        return screen

    @property
    def skill_pane(self) -> SkillPane:
        return self.main.skill_pane

    @property
    def progress(self) -> ProgressPane:
        return self.main.progress

    @property
    def trajectories(self) -> TrajectoriesPane:
        return self.main.trajectories

    @property
    def running(self) -> bool:
        """Whether a run is in progress; the runs layer derives it from its worker."""
        return False

    def _refuse_while_running(self, what: str) -> bool:
        if self.running:
            self.notify(f"a run is in progress: {what} waits until it ends (escape cancels it)",
                        title="Not now", severity="warning")
            return True
        return False

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

    def _reload_suite(self) -> None:
        self.suite, self.suite_error = None, None
        self._suite_picked = True
        self._load_suite()

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
