"""Small modal dialogs: pick one of a list (or type a value), and confirm a change on disk."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option


class ChoiceScreen(ModalScreen[str | None]):
    """Dismisses with the chosen value (enter on a row, or a typed one), None on escape."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="choice.cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]], current: str | None = None, *,
                 typed: str | None = None, integer: bool = False) -> None:
        """`choices` are (value, label); `typed`, when given, is the placeholder of a field where
        any value may be typed (a suite path, a number of steps)."""
        super().__init__()
        self.title_text = title
        self.choices = choices
        self.current = current
        self.typed = typed
        self.integer = integer

    def compose(self) -> ComposeResult:
        with Vertical(id="choice-box"):
            yield Static(Text(self.title_text, style="bold"), id="choice-title")
            yield OptionList(*[Option(Text(("● " if v == self.current else "  ") + label), id=str(i))
                               for i, (v, label) in enumerate(self.choices)], id="choice-list")
            if self.typed is not None:
                yield Input(placeholder=self.typed, type="integer" if self.integer else "text", id="choice-input")
            yield Static(Text("enter picks · tab to type a value · escape cancels" if self.typed is not None
                              else "enter picks · escape cancels", style="dim"))

    def on_mount(self) -> None:
        options = self.query_one("#choice-list", OptionList)
        values = [v for v, _ in self.choices]
        if self.choices:
            options.highlighted = values.index(self.current) if self.current in values else 0
            options.focus()
        elif self.typed is not None:
            self.query_one("#choice-input", Input).focus()

    @on(OptionList.OptionSelected, "#choice-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[int(event.option.id or 0)][0])

    @on(Input.Submitted, "#choice-input")
    def _typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no to a change on disk. Only y says yes: an enter pressed out of habit must not
    roll a skill back."""

    BINDINGS = [Binding("y", "answer(True)", "Yes", id="confirm.yes"),
                Binding("n,escape", "answer(False)", "No", id="confirm.no")]

    def __init__(self, question: str, detail: str = "") -> None:
        super().__init__()
        self.question = question
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text(self.question, style="bold"), id="confirm-question")
            if self.detail:
                yield Static(Text(self.detail, style="dim"))
            yield Static(Text("y yes · n (escape) no", style="bold"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


__all__ = ["ChoiceScreen", "ConfirmScreen"]
