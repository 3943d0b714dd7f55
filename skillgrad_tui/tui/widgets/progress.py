"""The progress pane: where the run is, what it cost, when it ends, and how scores moved.

The score chart is drawn with block characters (one column per step, train and validation on
their own rows), which reads well at 80 columns and needs no plotting library.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static

from skillgrad_tui.core.events import (Event, Progress, RunFinished, RunStarted, StepFinished, StepStarted,
                                       TaskFinished, ValidationScored)

BLOCKS = " ▁▂▃▄▅▆▇█"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "–"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def fmt_tokens(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def spark(values: list[float | None], width: int) -> str:
    """One block per value in [0, 1]; None (not measured) is a gap."""
    shown = values[-width:] if width > 0 else []
    out = []
    for v in shown:
        if v is None:
            out.append("·")
        else:
            out.append(BLOCKS[max(1, min(8, round(v * 8)))] if v > 0 else "▁")
    return "".join(out)


class ProgressPane(Vertical):
    """Reads run events; owns no state the app needs."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reset()

    def reset(self) -> None:
        self.label = "idle"
        self.running = False
        self.cancelling = False
        self.started: float | None = None
        self.finished_s: float | None = None
        self.total_steps: int | None = None
        self.step: int | None = None
        self.steps_done = 0
        self.phase = ""
        self.done = 0
        self.total = 0
        self.tokens = 0
        self.step_tokens = 0
        self.train: list[float | None] = []
        self.val: list[float | None] = []
        self.outcome = ""

    def compose(self) -> ComposeResult:
        yield Static(self._status(), id="progress-status")
        yield ProgressBar(total=1, show_eta=False, show_percentage=False, id="progress-bar")
        yield Static(self._chart(), id="progress-chart")

    def on_mount(self) -> None:
        self._ticker = self.set_interval(1.0, self._tick, pause=True)

    # -- events ------------------------------------------------------------------------------------

    def begin(self, label: str) -> None:
        self.label = label
        self.running = True
        self.cancelling = False
        self.started = time.monotonic()
        self.finished_s = None
        self.step = None
        self.steps_done = 0
        self.total_steps = None
        self.phase, self.done, self.total, self.tokens, self.outcome = "", 0, 0, 0, ""
        self._ticker.resume()
        self.refresh_all()

    def mark_cancelling(self) -> None:
        """Shown from the key press until the worker stops (it stops between tokens)."""
        self.cancelling = True
        self.refresh_all()

    def end(self, outcome: str) -> None:
        self.running = False
        self.cancelling = False
        self.outcome = outcome
        if self.started is not None:
            self.finished_s = time.monotonic() - self.started
        self._ticker.pause()
        self.refresh_all()

    def handle(self, event: Event, refresh: bool = True) -> None:
        if isinstance(event, RunStarted):
            settings = event.settings or {}
            steps = settings.get("planned_steps") or settings.get("steps")
            self.total_steps = int(steps) if isinstance(steps, (int, float)) and steps > 0 else None
        elif isinstance(event, StepStarted):
            self.step = event.step
            self.step_tokens = 0
        elif isinstance(event, Progress):
            self.phase, self.done, self.total = event.phase, event.done, event.total
        elif isinstance(event, TaskFinished):
            n = event.prompt_tokens + event.completion_tokens
            self.tokens += n
            self.step_tokens += n
        elif isinstance(event, StepFinished):
            self.steps_done += 1
            total = event.prompt_tokens + event.completion_tokens
            if total > self.step_tokens:  # the step's own count includes the optimiser roles
                self.tokens += total - self.step_tokens
            self.step_tokens = 0
            self.train.append(max(0.0, 1.0 - event.train_loss))
            self.val.append(event.val_score)
        elif isinstance(event, ValidationScored) and event.step == 0:
            self.train.append(None)  # the seed skill's baseline, or a standalone evaluation
            self.val.append(event.score)
        elif isinstance(event, RunFinished):
            self.outcome = event.reason
            if event.reason == "early_stop" and self.steps_done:
                self.total_steps = self.steps_done  # it finished: the bar should say so
        if refresh:
            self.refresh_all()

    # -- rendering ---------------------------------------------------------------------------------

    def _fraction(self) -> tuple[float, float] | None:
        """(progress, total) for the bar: steps when known, else the current phase."""
        if self.total_steps:
            part = self.done / self.total if self.total else 0.0
            return min(self.total_steps, self.steps_done + (part if self.running else 0.0)), self.total_steps
        if self.total:
            return self.done, self.total
        return None

    def _eta(self, elapsed: float) -> float | None:
        frac = self._fraction()
        if not self.running or frac is None or frac[0] <= 0:
            return None
        return elapsed * (frac[1] - frac[0]) / frac[0]

    def _status(self) -> Text:
        if self.started is None:
            return Text.assemble(("idle", "bold"), "  r optimise · v evaluate · w watch · F1 help")
        elapsed = self.finished_s if not self.running else time.monotonic() - self.started
        mark = ("● ", "bold yellow") if self.running else ("■ ", "bold green" if self.outcome in
                                                            ("steps", "early_stop", "done") else "bold red")
        text = Text.assemble(mark, (self.label, "bold"))
        if self.running and self.cancelling:
            text.append(" (cancelling…)", "italic")
        if self.step is not None:
            text.append(f" · step {self.step}" + (f"/{self.total_steps}" if self.total_steps else ""))
        if self.phase:
            text.append(f" · {self.phase} {self.done}/{self.total}")
        frac = self._fraction()
        if frac is not None and frac[1]:
            text.append(f" · {100 * frac[0] / frac[1]:.0f}%")
        text.append(f" · {fmt_tokens(self.tokens)} tok · {fmt_duration(elapsed)}")
        if self.running:
            text.append(f" · ETA {fmt_duration(self._eta(elapsed or 0.0))}")
        elif self.outcome:
            text.append(f" · {self.outcome}", "italic")
        return text

    def _chart(self) -> Text:
        width = max(8, (self.size.width or 80) - 24)
        text = Text()
        for name, values, style in (("train", self.train, "cyan"), ("val  ", self.val, "magenta")):
            last = next((v for v in reversed(values) if v is not None), None)
            best = max((v for v in values if v is not None), default=None)
            text.append(f"{name} ", "bold")
            text.append(spark(values, width) or "–", style)
            if last is not None:
                text.append(f"  {last:.2f}", style)
                text.append(f" best {best:.2f}", "dim")
            if name == "train":
                text.append("\n")
        return text

    def refresh_all(self) -> None:
        if not self.is_mounted:
            return
        # Fixed-size lines: no layout pass needed (keeps per-event cost low).
        self.query_one("#progress-status", Static).update(self._status(), layout=False)
        self.query_one("#progress-chart", Static).update(self._chart(), layout=False)
        bar = self.query_one("#progress-bar", ProgressBar)
        frac = self._fraction()
        if frac is None:
            if self.running:
                bar.update(total=None)  # indeterminate until the first Progress event
            else:
                bar.update(total=1, progress=1 if self.outcome else 0)
        else:
            bar.update(total=frac[1], progress=frac[0])

    def _tick(self) -> None:
        self.query_one("#progress-status", Static).update(self._status(), layout=False)
