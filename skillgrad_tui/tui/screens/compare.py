"""Two runs of the skill side by side: their figures (scores, steps, tokens, kept versions) and
the diff between the skills they ended with."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.lineage import RunFacts, run_facts
from skillgrad_tui.tui.run_actions import version_changes
from skillgrad_tui.tui.screens.history import render_changes
from skillgrad_tui.tui.widgets.footer import StableFooter


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def facts_table(a: RunFacts, b: RunFacts) -> Table:
    table = Table(title="Two runs", title_justify="left", title_style="bold", expand=True)
    table.add_column("")
    table.add_column(f"A  {a.run_dir.name}", overflow="fold")
    table.add_column(f"B  {b.run_dir.name}", overflow="fold")

    def final(f: RunFacts) -> str:
        return "-" if f.final is None else f"v{f.final.version} · val {_score(f.final.val_score)}"

    def best(f: RunFacts) -> str:
        return "-" if f.best_version is None else f"v{f.best_version} · {_score(f.best_score)}"

    rows = [("gate", a.gate or "-", b.gate or "-"),
            ("steps", str(a.steps), str(b.steps)),
            ("seed val score", _score(a.seed_score), _score(b.seed_score)),
            ("final skill", final(a), final(b)),
            ("best version", best(a), best(b)),
            ("versions", str(len(a.versions)), str(len(b.versions))),
            ("kept versions", ", ".join(f"v{n}" for n in a.kept) or "none",
             ", ".join(f"v{n}" for n in b.kept) or "none"),
            ("tokens", f"{a.tokens:,}", f"{b.tokens:,}"),
            ("seconds", f"{a.seconds:.1f}", f"{b.seconds:.1f}"),
            ("stopped by", a.reason or "not finished", b.reason or "not finished")]
    for name, x, y in rows:
        style = "bold" if x != y and name in ("final skill", "best version", "kept versions") else ""
        table.add_row(name, Text(x, style=style), Text(y, style=style))
    return table


def compare_runs(run_a: Path, run_b: Path) -> RenderableType:
    """The figures of both runs and the diff of their final skills (A's on the left)."""
    try:
        a, b = run_facts(run_a), run_facts(run_b)
    except SkillgradError as exc:
        return Text(str(exc), style="red")
    parts: list[RenderableType] = [facts_table(a, b)]
    if a.final is None or b.final is None:
        parts.append(Text("a run has no final version yet: nothing to diff", style="dim"))
    else:
        try:
            changes = version_changes(run_a, a.final.version, run_b, b.final.version)
            parts.append(render_changes(changes, f"final skills, A v{a.final.version} → B v{b.final.version}"))
        except SkillgradError as exc:
            parts.append(Text(str(exc), style="red"))
    return Group(*parts)


class CompareScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "close", "Back", id="compare.close"),
        Binding("j", "scroll(1)", "Down", show=False, id="compare.down"),
        Binding("k", "scroll(-1)", "Up", show=False, id="compare.up"),
    ]

    def __init__(self, run_a: Path, run_b: Path) -> None:
        super().__init__()
        self.run_a = run_a
        self.run_b = run_b

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="compare-scroll"):
            yield Static(compare_runs(self.run_a, self.run_b), id="compare-body")
        yield StableFooter()

    def on_mount(self) -> None:
        self.query_one("#compare-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll(self, lines: int) -> None:
        self.query_one("#compare-scroll", VerticalScroll).scroll_relative(y=lines * 3, animate=False)


__all__ = ["CompareScreen", "compare_runs", "facts_table"]
