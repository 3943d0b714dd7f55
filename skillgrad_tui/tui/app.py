"""The terminal app: `skillgrad tui SKILL [--suite DIR]`.

The app holds what outlives a screen (the session, the skill and suite, the run worker, the
watcher) and the app-wide keys; `MainScreen` holds the panes and the keys that act on them. The
layers below are one module each: `app_base` (state, skill, suite, header), `runs` (the thread
worker, its events, the review, quit), `watch_mode` and `workbench` (pickers, history, rollback,
compare, export).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from skillgrad_tui.config import load_config
from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.watcher import folder_hash
from skillgrad_tui.tui.commands import PaletteCommand, SkillgradCommands
from skillgrad_tui.tui.screens.help import HelpScreen, _bindings
from skillgrad_tui.tui.screens.history import HistoryScreen
from skillgrad_tui.tui.screens.main import MainScreen, main_bindings
from skillgrad_tui.tui.screens.review import ReviewScreen
from skillgrad_tui.tui.screens.trajectory import TrajectoryScreen, task_lookup
from skillgrad_tui.tui.widgets.run_panes import TrajectoriesPane
from skillgrad_tui.tui.workbench import GATES, WorkbenchApp

__all__ = ["GATES", "SkillgradApp", "run_app"]


class SkillgradApp(WorkbenchApp):
    CSS_PATH = "app.tcss"
    TITLE = "SkillGrad"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (150, "-wide")]
    COMMANDS = App.COMMANDS | {SkillgradCommands}
    # Keys of every screen; the main screen's own are MainScreen.BINDINGS. Escape is bound there
    # too (for the footer's order); here it cancels a run from the review screen.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="run.cancel"),
        Binding("f1,question_mark", "help", "Help", key_display="F1", id="app.help"),
        Binding("ctrl+t", "change_theme", "Theme", show=False, id="app.theme"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def get_default_screen(self) -> Screen[None]:
        return MainScreen(self.session.skill_path)

    @on(MainScreen.Ready)
    def _main_ready(self) -> None:
        self.reload_skill()
        self.own_writes.reset(folder_hash(self.session.skill_path))
        self._load_suite()
        self._update_subtitle()
        if self.watch_on_start:
            self.action_toggle_watch()

    def on_ready(self) -> None:
        self.first_frame_at = time.perf_counter()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Cancel is greyed out when nothing runs."""
        if action == "cancel" and not self.running:
            return None
        return True

    def action_show_pane(self, pane: str) -> None:
        self.main.action_show_pane(pane)

    def action_zoom(self) -> None:
        self.main.action_zoom()

    @on(TrajectoriesPane.Open)
    def _open_trajectory(self, message: TrajectoriesPane.Open) -> None:
        task_id = message.key.split(":", 1)[1]
        self.push_screen(TrajectoryScreen(message.key, message.finished, task_lookup(self.suite, task_id),
                                          self.run_dir))

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        sections = [("Main screen", _bindings(main_bindings(self.BINDINGS))
                     + [Binding("ctrl+p", "", "Command palette"), Binding("enter", "", "Open trajectory")])]
        sections.append(("Patch review", _bindings(ReviewScreen.BINDINGS)))
        sections.append(("History", _bindings(HistoryScreen.BINDINGS)))
        notes = ("Every action is also in the command palette (ctrl+p). Escape cancels a run between "
                 "tokens; q quits (mid-run it cancels and waits, so the skill and the run log stay "
                 "consistent and the run can be resumed). Gate 'ask' shows each patch for review; "
                 "nothing changes on disk without a key press. Model, suite, split, steps and batch size "
                 "apply to the next run and cannot change during one. In the history (h), space marks a "
                 "version and d diffs it against the one under the cursor; b rolls back after a yes.")
        self.push_screen(HelpScreen(sections, notes))

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
