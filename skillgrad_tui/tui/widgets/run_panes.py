"""Panes fed by run events: trajectories, gradients, momentum memory, the candidate pool.

Each pane takes plain event objects (core/events.py) and only renders; the app routes events to
them on the UI thread. Rows are keyed, so an event updates its row in place instead of
rebuilding the table (cheap enough to keep up with a scripted backend's event rate).
"""

from __future__ import annotations

from typing import Any, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowDoesNotExist

from skillgrad_tui.core.events import (CandidateDecided, CandidateProposed, CandidateScored, GradientComputed,
                                       MemoryUpdated, StepStarted, TaskFinished, TaskStarted)
from skillgrad_tui.core.outcomes import group_errors
from skillgrad_tui.core.payloads import GradientPayload, PreservationPayload


def clip(value: Any, n: int = 40) -> str:
    if isinstance(value, (list, tuple)):
        value = " | ".join(str(v) for v in value)
    s = "" if value is None else str(value).replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"


def verdict_cell(passed: bool | None, error: str | None = None, errored: bool = False) -> Text:
    if passed is None:
        return Text("…", style="dim")
    if errored:  # could not run (server error, prompt too long): not the skill's failure
        return Text("⚠ error", style="bold yellow")
    if error and not passed:
        return Text("✗ err", style="bold red")
    return Text("✓ pass", style="bold green") if passed else Text("✗ fail", style="bold red")


def _top_error(done: list[TaskFinished]) -> str:
    return clip(group_errors(e.error or "unknown error" for e in done if e.errored)[0].example, 60)


# ------------------------------------------------------------------------------------ trajectories


class TrajectoriesPane(Vertical):
    """This step's tasks (train minibatch and validation) with their verdicts."""

    class Open(Message):
        """The user asked to see one task's whole trajectory."""

        def __init__(self, key: str, finished: TaskFinished | None) -> None:
            super().__init__()
            self.key = key
            self.finished = finished

    COLUMNS = ("phase", "task", "result", "score", "answer", "expected", "tokens")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.finished: dict[str, TaskFinished] = {}
        self.running: set[str] = set()  # rows whose task started (finished ones are in `finished`)
        self.head = ""  # what the rows are: "seed evaluation", "step 3", "evaluation"

    def compose(self) -> ComposeResult:
        yield Static("no run yet: press r to optimise, v to evaluate", id="traj-summary")
        table: DataTable[Any] = DataTable(id="traj-table", cursor_type="row", zebra_stripes=True)
        for col in self.COLUMNS:
            table.add_column(col, key=col)
        yield table

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#traj-table", DataTable)

    @staticmethod
    def key(phase: str, task_id: str) -> str:
        return f"{phase}:{task_id}"

    def clear(self, title: str, head: str = "") -> None:
        self.table.clear()
        self.finished.clear()
        self.running.clear()
        self.head = head
        self.query_one("#traj-summary", Static).update(title, layout=False)

    def start_step(self, event: StepStarted) -> None:
        self.clear(f"step {event.step}: {len(event.task_ids)} training tasks", f"step {event.step}")
        for task_id in event.task_ids:
            self._ensure_row("train", task_id)

    def _ensure_row(self, phase: str, task_id: str) -> str:
        key = self.key(phase, task_id)
        try:
            self.table.get_row_index(key)
        except RowDoesNotExist:
            self.table.add_row(phase, task_id, verdict_cell(None), "", "", "", "", key=key)
        return key

    def task_started(self, event: TaskStarted) -> None:
        key = self._ensure_row(event.phase, event.task_id)
        self.running.add(key)
        self.table.update_cell(key, "result", Text("▸ running", style="yellow"))

    def stop_unfinished(self, label: str) -> None:
        """The run ended (cancelled, an error): tasks that started and never finished say so."""
        for key in sorted(self.running - set(self.finished)):
            try:
                self.table.update_cell(key, "result", Text(f"■ {label}", style="dim"))
            except Exception:  # the row went with a cleared table: nothing to mark
                pass
        self.running.clear()

    def task_finished(self, event: TaskFinished) -> None:
        key = self._ensure_row(event.phase, event.task_id)
        self.finished[key] = event
        t = self.table
        t.update_cell(key, "result", verdict_cell(event.passed, event.error, event.errored))
        t.update_cell(key, "score", f"{event.score:.2f}")
        # Rows are created before their answers exist: let these columns grow to fit.
        t.update_cell(key, "answer", clip(event.answer if not event.error or event.answer else event.error, 28),
                      update_width=True)
        t.update_cell(key, "expected", clip(event.expected, 28), update_width=True)
        t.update_cell(key, "tokens", str(event.prompt_tokens + event.completion_tokens))
        self._summarise()

    def _summarise(self) -> None:
        parts = []
        for phase in ("train", "minibatch", "val", "eval", "test"):
            done = [e for e in self.finished.values() if e.phase == phase]
            if done:
                passed = sum(e.passed for e in done)
                errored = sum(e.errored for e in done)
                parts.append(f"{phase} {passed}/{len(done)} passed"
                             + (f", {errored} errored ({_top_error(done)})" if errored else ""))
        head = f"{self.head}: " if self.head else ""
        # Text, not markup: an error message may hold "[server]" or "[/v1]".
        self.query_one("#traj-summary", Static).update(Text(head + " · ".join(parts) + "  (enter opens)"),
                                                        layout=False)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = str(event.row_key.value)
        self.post_message(self.Open(key, self.finished.get(key)))


# --------------------------------------------------------------------------------------- gradients


def _table_with_detail(prefix: str, empty: str, columns: tuple[str, ...], detail: str) -> ComposeResult:
    """A summary line, a keyed table and a scrolling detail below it (ids `<prefix>-...`)."""
    yield Static(empty, id=f"{prefix}-summary")
    table: DataTable[Any] = DataTable(id=f"{prefix}-table", cursor_type="row", zebra_stripes=True)
    for col in columns:
        table.add_column(col, key=col)
    yield table
    with VerticalScroll(id=f"{prefix}-{detail}-scroll"):
        yield Static("", id=f"{prefix}-{detail}")


class _LazyPane(Vertical):
    """Keeps only the latest event while its tab is hidden and renders it when shown: a run
    emits these once per step, and rebuilding an unseen table would cost a layout each time."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pending: Any = None

    def show(self, event: Any) -> None:
        self._pending = event
        if self._visible():
            self.flush()

    def _visible(self) -> bool:
        node: Any = self
        while node is not None and hasattr(node, "display"):
            if not node.display:
                return False
            node = node.parent
        return True

    def on_show(self) -> None:
        self.flush()

    def flush(self) -> None:
        event, self._pending = self._pending, None
        if event is not None and self.is_mounted:
            self.render_event(event)

    def render_event(self, event: Any) -> None:
        raise NotImplementedError


class GradientsPane(_LazyPane):
    """The step's text gradients (failures) and preservation signals (contrastive)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows: dict[str, GradientPayload | PreservationPayload] = {}

    def compose(self) -> ComposeResult:
        yield from _table_with_detail("grad", "no gradients yet", ("kind", "label", "layer", "anchor", "evidence"),
                                      "detail")

    def render_event(self, event: GradientComputed) -> None:
        table = self.query_one("#grad-table", DataTable)
        table.clear()
        self.rows.clear()
        for i, g in enumerate(event.gradients):
            key = f"g{i}"
            self.rows[key] = g
            table.add_row(Text("∇ fail", "red"), clip(g.get("label"), 36), g.get("layer", ""),
                          clip(g.get("anchor"), 24), clip(g.get("evidence") or g.get("task_id"), 24), key=key)
        for i, c in enumerate(event.contrastive):
            key = f"c{i}"
            self.rows[key] = c
            kind = Text("+ keep", "green") if c.get("robust") else Text("~ lucky", "yellow")
            table.add_row(kind, clip(c.get("what_helped") or c.get("label"), 36), c.get("layer", ""),
                          clip(c.get("anchor"), 24), clip(c.get("task_id") or c.get("evidence"), 24), key=key)
        extra = f" · {event.invalid_outputs} invalid model outputs skipped" if event.invalid_outputs else ""
        self.query_one("#grad-summary", Static).update(
            f"step {event.step}: {len(event.gradients)} gradients, {len(event.contrastive)} preservation "
            f"signals{extra}", layout=False)
        if not self.rows:
            self._detail(None)  # otherwise the table's highlight of row 0 fills the detail

    def _detail(self, key: str | None) -> None:
        g = self.rows.get(key or "")
        detail = self.query_one("#grad-detail", Static)
        if g is None:
            detail.update("")
            return
        if getattr(self, "_detail_key", None) == (key, id(g)):
            return
        self._detail_key = (key, id(g))
        text = Text()
        if "what_helped" in g:  # a preservation signal: what made a fail pass, and whether it holds
            p = cast(PreservationPayload, g)
            text.append(str(p.get("what_helped") or ""), "bold")
            text.append(f"  [{p.get('anchor', '')}] {'robust' if p.get('robust') else 'may be luck'}\n", "dim")
        else:  # .get throughout: a log written by an older version may lack a field
            f = g
            text.append(str(f.get("label") or ""), "bold")
            text.append(f"  [{f.get('layer', '')} · {f.get('anchor', '')}]\n", "dim")
            if f.get("diagnosis"):
                text.append(str(f["diagnosis"]) + "\n")
            if f.get("diff"):
                text.append(str(f["diff"]) + "\n", "italic")
        detail.update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._detail(str(event.row_key.value) if event.row_key is not None else None)


# ---------------------------------------------------------------------------------------- memory


def weight_bar(weight: float, top: float, width: int = 8) -> Text:
    filled = 0 if top <= 0 else max(1, round(width * weight / top)) if weight > 0 else 0
    return Text.assemble(("█" * filled, "magenta"), ("·" * (width - filled), "dim"), f" {weight:.2f}")


class MemoryPane(_LazyPane):
    """Momentum memory: patterns by weight (strongest first) and this step's overlay."""

    def compose(self) -> ComposeResult:
        yield from _table_with_detail("mem", "momentum memory is empty", ("weight", "pattern", "anchor", "seen",
                                                                          "action"), "overlay")

    def render_event(self, event: MemoryUpdated) -> None:
        table = self.query_one("#mem-table", DataTable)
        table.clear()
        patterns = sorted(event.patterns, key=lambda p: -float(p.get("weight", 0.0) or 0.0))
        top = max((float(p.get("weight", 0.0) or 0.0) for p in patterns), default=0.0)
        for i, p in enumerate(patterns):
            rec = p.get("recurrence", p.get("iterations", []))
            seen = f"{len(rec)}× {clip(rec, 12)}" if isinstance(rec, list) else str(rec)
            table.add_row(weight_bar(float(p.get("weight", 0.0) or 0.0), top),
                          clip(p.get("label") or p.get("description"), 34), clip(p.get("anchor"), 20), seen,
                          clip(p.get("latest_action"), 40), key=str(p.get("id", i)))
        self.query_one("#mem-summary", Static).update(
            f"step {event.step}: {len(patterns)} patterns, strongest first", layout=False)
        from rich.markdown import Markdown  # imported on first use: keeps start-up light

        self.query_one("#mem-overlay", Static).update(Markdown(event.overlay) if event.overlay.strip() else "")


# ------------------------------------------------------------------------------------ candidates


class CandidatesPane(Vertical):
    """The candidate pool, step by step: which version came from which, how it was made, its
    minibatch and validation scores, and the gate's decision. The summary line says what the
    last step (or the run) changed, or why nothing changed."""

    COLUMNS = ("version", "step", "parent", "origin", "minibatch", "val", "decision")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield from _table_with_detail("cand", "no candidates yet", self.COLUMNS, "detail")

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#cand-table", DataTable)

    def summary(self, text: str) -> None:
        self.query_one("#cand-summary", Static).update(text, layout=False)

    def proposed(self, event: CandidateProposed) -> None:
        key = f"v{event.version}"
        self.rows[key] = {"edits": event.edits, "origin": event.origin, "decision": ""}
        if key in self.table.rows:
            return  # a resumed run proposes it again
        self.table.add_row(str(event.version), str(event.step), str(event.parent), clip(event.origin, 28),
                           "…", "", "", key=key)

    def scored(self, event: CandidateScored) -> None:
        key = f"v{event.version}"
        if key not in self.table.rows:
            return
        if event.phase == "minibatch":
            mark = " ↑" if event.improved else ""
            self.table.update_cell(key, "minibatch", f"{event.score:.2f}{mark}")
        else:
            self.table.update_cell(key, "val", f"{event.score:.2f}")

    def decided(self, event: CandidateDecided) -> None:
        key = f"v{event.version}"
        if key not in self.table.rows:
            return
        self.rows[key]["decision"] = event.sentence
        cell = Text("✓ kept", "bold green") if event.kept else Text(f"✗ {event.reason}", "red")
        self.table.update_cell(key, "decision", cell, update_width=True)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        row = self.rows.get(str(event.row_key.value) if event.row_key is not None else "")
        detail = self.query_one("#cand-detail", Static)
        if row is None:
            detail.update("")
            return
        text = Text()
        text.append(row["origin"] + "\n", "bold")
        if row["decision"]:
            text.append(row["decision"] + "\n", "italic")
        for e in row["edits"]:
            text.append(f"{e.get('layer')} {e.get('path')} · {e.get('pattern_label', '')}\n", "dim")
            text.append(str(e.get("new", "")).strip()[-300:] + "\n")
        detail.update(text)
