"""The history of one run: its versions as a family tree, the scores per step as a plot, the diff
between any two versions, and a rollback of the skill to one of them.

Keys: move with the arrows; space marks a version (A); d (or enter) diffs the marked version
against the one under the cursor (with no mark, the cursor's parent against it); b rolls the
skill back to the version under the cursor, after a confirmation; [ and ] step to an older or a
newer run; e exports the run; c compares it with another run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Static

from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.export import RunReport, load_report
from skillgrad_tui.core.lineage import lineage_rows
from skillgrad_tui.core.runlog import VersionRecord
from skillgrad_tui.tui.diffview import EditPreview, side_by_side
from skillgrad_tui.tui.run_actions import FileChange, version_changes
from skillgrad_tui.tui.widgets.footer import StableFooter
from skillgrad_tui.tui.widgets.score_plot import ScorePlot, Series

if TYPE_CHECKING:
    from skillgrad_tui.tui.app import SkillgradApp


def score_series(report: RunReport) -> dict[str, Series]:
    """Validation score per step (the seed's at step 0) and the train loss of each step."""
    seed = next((v for v in report.versions if v.parent is None and v.val_score is not None), None)
    val: Series = [(0, float(seed.val_score))] if seed is not None and seed.val_score is not None else []
    val += [(int(s["step"]), float(s["val_score"])) for s in report.steps if s.get("val_score") is not None]
    loss: Series = [(int(s["step"]), float(s["train_loss"])) for s in report.steps
                    if s.get("train_loss") is not None]
    return {"validation": val, "train loss": loss}


def render_changes(changes: list[FileChange], title: str) -> RenderableType:
    if not changes:
        return Text(f"{title}: no file differs", style="dim")
    parts: list[RenderableType] = [Text(f"{title}: {len(changes)} file(s) differ", style="bold")]
    for change in changes:
        if change.binary:
            parts.append(Text(f"{change.path}: binary file differs", style="yellow"))
        else:
            state = " (new)" if not change.old else " (removed)" if not change.new else ""
            parts.append(Text(f"── {change.path}{state}", style="bold cyan"))
            parts.append(side_by_side(EditPreview(change.path, change.old, change.new)))
    return Group(*parts)


ORIGIN_W = 18  # the patcher's note, clipped: the table shares the width with the plot


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


class HistoryScreen(Screen[None]):
    # Under 110 columns the plot goes below the versions instead of beside them (app.tcss).
    HORIZONTAL_BREAKPOINTS = [(0, "-stacked"), (110, "-side-by-side")]
    BINDINGS = [
        Binding("escape", "close", "Back", id="history.close"),
        Binding("space", "mark", "Mark A", id="history.mark"),
        Binding("d,enter", "diff", "Diff", key_display="d", id="history.diff"),
        Binding("b", "rollback", "Roll back", id="history.rollback"),
        Binding("e", "export", "Export", id="history.export"),
        Binding("c", "compare", "Compare", id="history.compare"),
        Binding("left_square_bracket", "other_run(1)", "Older run", key_display="[", id="history.older"),
        Binding("right_square_bracket", "other_run(-1)", "Newer run", key_display="]", id="history.newer"),
    ]

    def __init__(self, runs: list[Path], index: int = 0) -> None:
        """`runs` newest first; the screen shows runs[index]."""
        super().__init__()
        self.runs = runs
        self.index = index
        self.marked: int | None = None
        self.report: RunReport | None = None
        self.diffed: tuple[int, int] | None = None  # (A, B) of the diff on show

    @property
    def workbench(self) -> "SkillgradApp":
        return self.app  # type: ignore[return-value]

    @property
    def run_dir(self) -> Path:
        return self.runs[self.index]

    def compose(self) -> ComposeResult:
        yield Static("", id="history-title")
        with Horizontal(id="history-top"):
            yield DataTable(id="history-versions", cursor_type="row", zebra_stripes=True)
            yield ScorePlot({}, id="history-plot")
        with VerticalScroll(id="history-diff-scroll"):
            yield Static(Text("space marks a version, d diffs it against the one under the cursor "
                              "(no mark: against its parent), b rolls the skill back to it", style="dim"),
                         id="history-diff")
        yield StableFooter()

    def on_mount(self) -> None:
        self.query_one("#history-plot").border_title = "scores per step"
        self.query_one("#history-versions").border_title = "versions (lineage)"
        self.load()
        self.query_one("#history-versions", DataTable).focus()

    # -- the run -----------------------------------------------------------------------------------

    def load(self) -> None:
        self._show_run(marked=None, diffed=None)

    def reload(self) -> None:
        """Read the run again (the run on show has written a step): the cursor, the mark and the
        diff on show stay where they were."""
        at = self.selected()
        self._show_run(self.marked, self.diffed)
        if self.report is not None and at is not None and any(v.version == at.version for v in self.report.versions):
            self.select(at.version)

    def _show_run(self, marked: int | None, diffed: tuple[int, int] | None) -> None:
        try:
            self.report = load_report(self.run_dir)
        except SkillgradError as exc:
            self.report = None
            self.query_one("#history-title", Static).update(Text(f"{self.run_dir.name}: {exc}", style="red"))
            return
        self.marked = marked if any(v.version == marked for v in self.report.versions) else None
        self.diffed = diffed
        self._title()
        self._table()
        self.query_one(ScorePlot).set_series(score_series(self.report))

    def _title(self) -> None:
        assert self.report is not None
        finished, started = self.report.finished, self.report.started
        gate = (started.get("settings") or {}).get("gate", "?")
        stopped = finished.get("reason") or "not finished"
        text = Text.assemble((f"run {self.run_dir.name}", "bold"), f"  ({self.index + 1} of {len(self.runs)}; "
                             f"[ older, ] newer) · gate {gate} · {len(self.report.steps)} step(s) · "
                             f"stopped by {stopped}")
        if finished.get("summary"):
            text.append("\n" + str(finished["summary"]), style="dim")
        self.query_one("#history-title", Static).update(text)

    def _table(self) -> None:
        assert self.report is not None
        table = self.query_one("#history-versions", DataTable)
        table.clear(columns=True)
        for col in ("version", "step", "origin", "batch", "val", "kept", ""):
            table.add_column(col, key=col or "mark")
        on_disk = self.workbench.skill.hash if self.workbench.skill is not None else None
        best = self.report.finished.get("best_version")
        for guide, v in lineage_rows(self.report.versions):
            marks = " ".join(m for m in ("A" if v.version == self.marked else "",
                                         "best" if v.version == best else "",
                                         "on disk" if v.skill_hash == on_disk else "") if m)
            origin = v.origin or ("seed" if v.parent is None else "")
            table.add_row(Text(f"{guide}v{v.version}"), str(v.step), _clip(origin, ORIGIN_W), _fmt(v.minibatch),
                          _fmt(v.val_score), "✓" if v.kept else "", marks, key=str(v.version))

    def selected(self) -> VersionRecord | None:
        table = self.query_one("#history-versions", DataTable)
        if self.report is None or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((v for v in self.report.versions if str(v.version) == key), None)

    def select(self, version: int) -> None:
        """Move the cursor to `version` (tests and the keyboard reach the same state)."""
        table = self.query_one("#history-versions", DataTable)
        table.move_cursor(row=table.get_row_index(str(version)))

    # -- actions -----------------------------------------------------------------------------------

    def action_close(self) -> None:
        self.dismiss(None)

    def action_mark(self) -> None:
        v = self.selected()
        if v is None:
            return
        self.marked = None if self.marked == v.version else v.version
        row = self.query_one("#history-versions", DataTable).cursor_row
        self._table()
        self.query_one("#history-versions", DataTable).move_cursor(row=row)

    def action_diff(self) -> None:
        v = self.selected()
        if v is None:
            return
        base = self.marked if self.marked is not None else v.parent
        if base is None:
            self.notify("the seed has no parent: mark another version (space) to diff against", severity="warning")
            return
        try:
            changes = version_changes(self.run_dir, base, self.run_dir, v.version)
        except SkillgradError as exc:
            self.notify(str(exc), title="Diff failed", severity="error")
            return
        self.diffed = (base, v.version)
        self.query_one("#history-diff", Static).update(render_changes(changes, f"v{base} → v{v.version}"))
        self.query_one("#history-diff-scroll", VerticalScroll).scroll_home(animate=False)

    def action_rollback(self) -> None:
        v = self.selected()
        if v is not None:
            self.workbench.confirm_rollback(self.run_dir, v.version, done=self._table)

    def action_export(self) -> None:
        self.workbench.export_run(self.run_dir)

    def action_compare(self) -> None:
        self.workbench.action_compare(first=self.run_dir)

    def action_other_run(self, delta: int) -> None:
        index = self.index + delta
        if 0 <= index < len(self.runs):
            self.index = index
            self.load()
        else:
            self.notify("no " + ("older" if delta > 0 else "newer") + " run of this skill")


__all__ = ["HistoryScreen", "render_changes", "score_series"]
