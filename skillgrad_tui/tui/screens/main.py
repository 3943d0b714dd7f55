"""The main screen: the skill, the run panes and the progress, with the keys that act on them.

Its bindings name the app's actions (`app.optimize`, ...): the run, the watcher and the
workbench belong to the app, which other screens and the command palette reach too. Being the
screen's bindings, they apply only here; on the review, trajectory and help screens the same
keys mean something else. The pane actions (switching, zooming, opening a trajectory) are the
screen's own, and so is routing the engine's events to the panes.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, TabbedContent, TabPane, Tree

from skillgrad_tui.core.events import (CandidateDecided, CandidateProposed, CandidateScored, Event,
                                       GradientComputed, MemoryUpdated, PatchDecided, RunFinished, StepAccount,
                                       StepFinished, StepStarted, TaskFinished, TaskStarted)
from skillgrad_tui.tui.widgets.footer import StableFooter
from skillgrad_tui.tui.widgets.progress import ProgressPane
from skillgrad_tui.tui.widgets.run_panes import CandidatesPane, GradientsPane, MemoryPane, TrajectoriesPane
from skillgrad_tui.tui.widgets.skill_pane import SkillPane

PANE_TABLES = {"trajectories": "#traj-table", "gradients": "#grad-table", "memory": "#mem-table",
               "candidates": "#cand-table"}


class MainScreen(Screen[None]):
    # The order is the footer's: r, v, escape, w here, then the app's F1 and q. Escape is the
    # app's too, so that it cancels a run from the review screen as well.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r,o", "app.optimize", "Optimise", key_display="r", id="run.optimize"),
        Binding("v", "app.evaluate", "Evaluate", id="run.evaluate"),
        Binding("escape", "app.cancel", "Cancel", id="run.cancel"),
        Binding("w", "app.toggle_watch", "Watch", id="watch.toggle"),
        Binding("g", "app.cycle_gate", "Gate", show=False, id="run.gate"),
        Binding("R", "app.recover", "Recover", show=False, id="skill.recover"),
        Binding("z", "zoom", "Zoom pane", show=False, id="app.zoom"),
        Binding("1", "show_pane('skill')", "Skill pane", show=False, id="pane.skill"),
        Binding("2", "show_pane('trajectories')", "Trajectories", show=False, id="pane.trajectories"),
        Binding("3", "show_pane('gradients')", "Gradients", show=False, id="pane.gradients"),
        Binding("4", "show_pane('memory')", "Memory", show=False, id="pane.memory"),
        Binding("5", "show_pane('candidates')", "Candidates", show=False, id="pane.candidates"),
        Binding("h", "app.history", "History", show=False, id="run.history"),
        Binding("c", "app.compare", "Compare runs", show=False, id="run.compare"),
        Binding("e", "app.export", "Export run", show=False, id="run.export"),
        Binding("m", "app.pick_model", "Model", show=False, id="pick.model"),
        Binding("s", "app.pick_suite", "Suite", show=False, id="pick.suite"),
        Binding("S", "app.pick_split", "Split", show=False, id="pick.split"),
        Binding("n", "app.pick_steps", "Steps", show=False, id="pick.steps"),
        Binding("b", "app.pick_batch", "Batch size", show=False, id="pick.batch"),
    ]

    class Ready(Message):
        """The panes exist: the app loads the skill and the suite into them."""

    def __init__(self, skill_path: Path) -> None:
        super().__init__()
        self.skill_path = skill_path

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="∇")
        with Horizontal(id="main"):
            yield SkillPane(self.skill_path, id="skill")
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
        self.query_one("#progress").border_title = "progress"
        self.query_one("#traj-table").focus()
        self.post_message(self.Ready())

    # -- panes -------------------------------------------------------------------------------------

    @property
    def skill_pane(self) -> SkillPane:
        return self.query_one(SkillPane)

    @property
    def progress(self) -> ProgressPane:
        return self.query_one(ProgressPane)

    @property
    def trajectories(self) -> TrajectoriesPane:
        return self.query_one(TrajectoriesPane)

    def action_show_pane(self, pane: str) -> None:
        if pane == "skill":  # the file's text first, so that it scrolls; pressed again, the file tree
            view = self.query_one("#skill-view")
            (self.query_one("#skill-tree", Tree) if view.has_focus else view).focus()
            return
        self.query_one(TabbedContent).active = f"tab-{pane}"
        self.query_one(PANE_TABLES[pane], DataTable).focus()

    def action_zoom(self) -> None:
        if self.maximized is not None:
            self.minimize()
        else:
            self.action_maximize()

    # -- the engine's events -----------------------------------------------------------------------

    def show_events(self, events: list[Event]) -> bool:
        """Route a batch of events to the panes with one repaint of the progress; True when the
        skill on disk may have changed."""
        reload = False
        for event in events:
            reload = self._show(event) or reload
        self.progress.refresh_all()
        return reload

    def _show(self, event: Event) -> bool:
        self.progress.handle(event, refresh=False)
        if isinstance(event, StepStarted):
            self.trajectories.start_step(event)
        elif isinstance(event, TaskStarted):
            self.trajectories.task_started(event)
        elif isinstance(event, TaskFinished):
            self.trajectories.task_finished(event)
        elif isinstance(event, GradientComputed):
            self.query_one(GradientsPane).show(event)
        elif isinstance(event, MemoryUpdated):
            self.query_one(MemoryPane).show(event)
        elif isinstance(event, CandidateProposed):
            self.query_one(CandidatesPane).proposed(event)
        elif isinstance(event, CandidateScored):
            self.query_one(CandidatesPane).scored(event)
        elif isinstance(event, CandidateDecided):
            self.query_one(CandidatesPane).decided(event)
        elif isinstance(event, StepAccount):
            self.query_one(CandidatesPane).summary(f"step {event.step}: {event.summary}")
        elif isinstance(event, RunFinished) and event.summary:
            self.query_one(CandidatesPane).summary(f"run: {event.summary}")
        elif isinstance(event, (PatchDecided, StepFinished)):
            return True
        return False


def main_bindings(app_bindings: list[BindingType]) -> list[BindingType]:
    """Every key of the main screen, the app's included, for the help screen."""
    keys = {b.key for b in MainScreen.BINDINGS if isinstance(b, Binding)}
    return [*MainScreen.BINDINGS, *(b for b in app_bindings if not (isinstance(b, Binding) and b.key in keys))]


__all__ = ["MainScreen", "main_bindings"]

