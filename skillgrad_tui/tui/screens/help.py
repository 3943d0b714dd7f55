"""F1 / ?: every key binding, grouped by where it applies, from the bindings themselves."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def _bindings(source: Iterable[BindingType]) -> list[Binding]:
    return [b for b in source if isinstance(b, Binding) and b.description]


def keys_table(title: str, bindings: list[Binding]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=None, expand=True,
                  padding=(0, 2, 0, 0))
    table.add_column("keys", style="bold cyan", no_wrap=True)
    table.add_column("action")
    for b in bindings:
        keys = b.key_display or " / ".join(k.strip() for k in b.key.split(","))
        table.add_row(keys.replace("question_mark", "?"), b.description)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,question_mark,q", "close", "Close", id="help.close")]

    def __init__(self, sections: list[tuple[str, list[Binding]]], notes: str = "") -> None:
        super().__init__()
        self.sections = sections
        self.notes = notes

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(Text("SkillGrad · keys  (escape closes)", style="bold"), id="help-title")
            with VerticalScroll(id="help-scroll"):
                for title, bindings in self.sections:
                    yield Static(keys_table(title, bindings))
                if self.notes:
                    yield Static(Text(self.notes, style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)


__all__ = ["HelpScreen", "_bindings", "keys_table"]
