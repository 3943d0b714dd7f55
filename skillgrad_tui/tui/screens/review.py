"""Patch review (gate "ask"): every proposed edit as a side-by-side diff, decided by keyboard.

The screen only collects decisions; it writes nothing. It dismisses with a ReviewDecision once
every edit has one, and the optimiser (on its worker thread) applies the accepted edits
atomically and logs the decision. Keys: y accept, n reject, a accept all, r reject all,
e edit the new text, j/k or the arrows move.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import OptionList, Static, TextArea
from textual.widgets.option_list import Option

from skillgrad_tui.tui.diffview import diff_stats, lexer_for, preview_edit, side_by_side
from skillgrad_tui.tui.widgets.footer import StableFooter

STATUS_MARK = {None: ("·", "dim"), "accepted": ("✓", "bold green"), "rejected": ("✗", "bold red"),
               "edited": ("✎", "bold cyan")}


class EditTextScreen(ModalScreen[str | None]):
    """Edit an edit's new text; ctrl+s keeps it, escape drops it."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Keep text", id="edit.save"),
        Binding("escape", "cancel", "Cancel", id="edit.cancel"),
    ]

    def __init__(self, text: str, path: str) -> None:
        super().__init__()
        self.text = text
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-box"):
            yield Static(f"New text for {self.path}  (ctrl+s keep · escape cancel)", id="edit-title")
            area = TextArea(self.text, id="edit-area", soft_wrap=True, show_line_numbers=True,
                            tab_behavior="indent")
            language = lexer_for(self.path)
            if language in area.available_languages:
                area.language = language
            yield area
        yield StableFooter()

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_save(self) -> None:
        self.dismiss(self.query_one(TextArea).text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ReviewScreen(Screen[Any]):
    """Shows a ReviewRequest; dismisses with the ReviewDecision."""

    BINDINGS = [
        Binding("y", "accept", "Accept", id="review.accept"),
        Binding("n", "reject", "Reject", id="review.reject"),
        Binding("a", "accept_all", "Accept all", id="review.accept_all"),
        # N, not r: on the main screen r starts a run, and one key should not mean both.
        Binding("N", "reject_all", "Reject all", id="review.reject_all"),
        Binding("e", "edit", "Edit", id="review.edit"),
        Binding("j", "move(1)", "Next", show=False, id="review.next"),
        Binding("k", "move(-1)", "Previous", show=False, id="review.previous"),
        Binding("pagedown,space", "scroll_diff(1)", "Scroll diff", show=False, id="review.page_down"),
        Binding("pageup", "scroll_diff(-1)", "Scroll diff up", show=False, id="review.page_up"),
    ]

    def __init__(self, request: Any) -> None:
        super().__init__()
        self.request = request
        self.items = list(request.items)
        self.status: dict[int, str] = {}  # item.index -> accepted | rejected | edited
        self.replaced: dict[int, str] = {}
        self.cursor = 0
        self._done = False

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="review-title")
        yield OptionList(*[Option(self._item_prompt(i), id=str(i)) for i in range(len(self.items))],
                         id="review-items")
        yield Static("", id="review-why")
        with VerticalScroll(id="review-diff-scroll"):
            yield Static("", id="review-diff")
        yield StableFooter()

    def on_mount(self) -> None:
        items = self.query_one("#review-items", OptionList)
        items.highlighted = 0 if self.items else None
        items.focus()
        self._show(0)

    # -- rendering ---------------------------------------------------------------------------------

    def _title(self) -> Text:
        decided = len(self.status)
        return Text.assemble(("Patch review", "bold"), f" · step {self.request.step} · ",
                             f"{decided}/{len(self.items)} decided · ", ("j/k", "bold"), " move · ",
                             ("space", "bold"), " scroll")

    def _preview(self, i: int) -> Any:
        item = self.items[i]
        return preview_edit(self.request.skill, item.edit, self.replaced.get(item.index))

    def _item_prompt(self, i: int) -> Text:
        item = self.items[i]
        mark, style = STATUS_MARK[self.status.get(item.index)]
        preview = self._preview(i)
        removed, added = diff_stats(preview.old_text, preview.new_text)
        text = Text.assemble((mark, style), " ", (item.edit.layer, "bold"), " ", item.edit.path,
                             ("  +", "green"), (str(added), "green"), (" −", "red"), (str(removed), "red"), "  ",
                             (item.pattern_label or "", "italic"))
        if preview.error:
            text.append("  ⚠ does not apply", "red")
        return text

    def _show(self, i: int) -> None:
        if not self.items:
            return
        self.cursor = max(0, min(i, len(self.items) - 1))
        item = self.items[self.cursor]
        why = Text()
        why.append(f"Edit {self.cursor + 1}/{len(self.items)}", "bold")
        why.append(f" · {item.edit.layer} {item.edit.path}")
        if item.pattern_label:
            why.append(" · pattern: ")
            why.append(item.pattern_label, "italic")
        if item.rationale:
            why.append(f"\n{item.rationale}")
        if item.gradients:
            why.append("\ngradients: ", "dim")
            why.append("; ".join(item.gradients))
        if item.tasks:
            why.append("\ntasks: ", "dim")
            why.append(", ".join(item.tasks))
        self.query_one("#review-why", Static).update(why)
        self.query_one("#review-diff", Static).update(side_by_side(self._preview(self.cursor)))
        self.query_one("#review-diff-scroll", VerticalScroll).scroll_home(animate=False)

    def _refresh_item(self, i: int) -> None:
        self.query_one("#review-items", OptionList).replace_option_prompt_at_index(i, self._item_prompt(i))
        self.query_one("#review-title", Static).update(self._title())

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option_index != self.cursor:
            self._show(event.option_index)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()  # enter on an item just shows it; decisions take an explicit y/n

    # -- decisions ---------------------------------------------------------------------------------

    def _decide(self, i: int, status: str) -> None:
        index = self.items[i].index
        self.status[index] = status
        if status != "edited":
            self.replaced.pop(index, None)
        self._refresh_item(i)

    def _advance(self) -> None:
        """Next undecided item after the cursor (wrapping), or finish when none is left."""
        n = len(self.items)
        for step in range(1, n + 1):
            j = (self.cursor + step) % n
            if self.items[j].index not in self.status:
                self._move_to(j)
                return
        self._finish()

    def _move_to(self, i: int) -> None:
        self.query_one("#review-items", OptionList).highlighted = i
        self._show(i)

    def decision(self) -> Any:
        from skillgrad_tui.core.optimizer import ReviewDecision

        accepted = [i.index for i in self.items if self.status.get(i.index) in ("accepted", "edited")]
        rejected = [i.index for i in self.items if self.status.get(i.index, "rejected") == "rejected"]
        return ReviewDecision(accepted=accepted, rejected=rejected, replaced=dict(self.replaced))

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self.dismiss(self.decision())

    def action_accept(self) -> None:
        if self.items:
            self._decide(self.cursor, "accepted")
            self._advance()

    def action_reject(self) -> None:
        if self.items:
            self._decide(self.cursor, "rejected")
            self._advance()

    def action_accept_all(self) -> None:
        for i, item in enumerate(self.items):
            if item.index not in self.status:
                self._decide(i, "accepted")
        self._finish()

    def action_reject_all(self) -> None:
        for i, item in enumerate(self.items):
            if item.index not in self.status:
                self._decide(i, "rejected")
        self._finish()

    def action_move(self, delta: int) -> None:
        if self.items:
            self._move_to((self.cursor + delta) % len(self.items))

    def action_scroll_diff(self, pages: int) -> None:
        scroll = self.query_one("#review-diff-scroll", VerticalScroll)
        (scroll.scroll_page_down if pages > 0 else scroll.scroll_page_up)(animate=False)

    def action_edit(self) -> None:
        if not self.items:
            return
        i = self.cursor
        item = self.items[i]
        current = self.replaced.get(item.index, item.edit.new)

        def done(text: str | None) -> None:
            if text is None or text == current:
                return
            preview = preview_edit(self.request.skill, replace(item.edit, new=text))
            if preview.error:
                self.notify(preview.error, title="Edited text does not apply", severity="error", markup=False)
                return
            self.replaced[item.index] = text
            self._decide(i, "edited")
            self._show(i)
            self._advance()

        self.app.push_screen(EditTextScreen(current, item.edit.path), done)

    def cancel(self) -> None:
        """The run was cancelled: close without deciding (the bridge answers 'reject all')."""
        if not self._done:
            self._done = True
            self.dismiss(None)
