"""One task's whole trajectory: prompt, turns, tool calls, answer, and the verdict's diff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from skillgrad_tui.core.events import TaskFinished
from skillgrad_tui.core.records import Task, Trajectory, Verdict
from skillgrad_tui.tui.widgets.footer import StableFooter

TURN_STYLE = {"prompt": "blue", "model": "green", "tool_call": "yellow", "tool_result": "magenta",
              "error": "red"}
MAX_TURN_CHARS = 8000


def load_trajectory_file(finished: TaskFinished | None, run_dir: Path | None) -> Trajectory | None:
    from skillgrad_tui.core.evaluate import load_trajectory

    if finished is None or not finished.trajectory:
        return None
    path = Path(finished.trajectory)
    if not path.is_absolute() and run_dir is not None:
        path = run_dir / path
    return load_trajectory(path)


def verdict_table(verdict: Verdict) -> RenderableType:
    table = Table(title="verdict: expected vs got", title_justify="left", expand=True, show_lines=False)
    table.add_column("", width=2)
    table.add_column("where", no_wrap=True)
    table.add_column("expected", ratio=1, overflow="fold")
    table.add_column("got", ratio=1, overflow="fold")
    table.add_column("note", ratio=1, overflow="fold", style="dim")
    for e in verdict.diff:
        table.add_row(Text("✓", "green") if e.ok else Text("✗", "red"), e.where, repr(e.expected),
                      repr(e.got), e.note)
    parts: list[RenderableType] = []
    if verdict.error:
        parts.append(Text(f"error: {verdict.error}", "bold red"))
    parts.append(table if verdict.diff else Text("(no per-item diff)", "dim"))
    return Group(*parts)


def render_trajectory(finished: TaskFinished | None, task: Task | None, traj: Trajectory | None,
                      key: str) -> RenderableType:
    parts: list[RenderableType] = []
    head = Text()
    head.append(task.id if task else key, "bold")
    if finished is not None:
        head.append(f" · {finished.phase} · ")
        head.append("✓ pass" if finished.passed else "✗ fail", "bold green" if finished.passed else "bold red")
        head.append(f" · score {finished.score:.2f} · {finished.prompt_tokens + finished.completion_tokens} tokens"
                    f" · {finished.seconds:.1f}s · skill {finished.skill_hash[:8]}")
    else:
        head.append(" · still running or not run yet", "yellow")
    parts.append(head)
    if task is not None:
        parts.append(Panel(Text(task.question), title="question", title_align="left", border_style="cyan"))
    if traj is None:
        if finished is not None:
            parts.append(Text(f"(trajectory file not available: {finished.trajectory or 'not saved'})", "dim"))
            parts.append(Text(f"answer:   {finished.answer!r}\nexpected: {finished.expected!r}"))
            if finished.error:
                parts.append(Text(f"error: {finished.error}", "red"))
        return Group(*parts)
    # The outcome first (answer and the verdict's diff), then how the model got there.
    answer = traj.answer if not isinstance(traj.answer, list) else "\n".join(map(str, traj.answer))
    parts.append(Panel(Text(str(answer) if answer not in (None, "") else "(no answer)"), title="answer",
                       title_align="left", border_style="bold green"))
    if traj.error:
        parts.append(Text(f"error: {traj.error}", "bold red"))
    if traj.verdict is not None:
        parts.append(verdict_table(traj.verdict))
    if traj.sandbox:
        weak = not traj.sandbox.startswith("bwrap")
        parts.append(Text(f"scripts ran in the sandbox mode {traj.sandbox}", "yellow" if weak else "dim"))
    for n, turn in enumerate(traj.turns, start=1):
        title = turn.kind + (f" {turn.name}" if turn.name else "")
        if turn.usage is not None:
            title += f" · {turn.usage.prompt_tokens}+{turn.usage.completion_tokens} tok"
        content = turn.content if len(turn.content) <= MAX_TURN_CHARS else (
            turn.content[:MAX_TURN_CHARS] + f"\n… ({len(turn.content) - MAX_TURN_CHARS} more characters)")
        parts.append(Panel(Text(content), title=f"{n}. {title}", title_align="left",
                           border_style=TURN_STYLE.get(turn.kind, "white")))
    return Group(*parts)


class TrajectoryScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "close", "Back", id="trajectory.close"),
        Binding("j", "scroll(1)", "Down", show=False, id="trajectory.down"),
        Binding("k", "scroll(-1)", "Up", show=False, id="trajectory.up"),
    ]

    def __init__(self, key: str, finished: TaskFinished | None, task: Task | None,
                 run_dir: Path | None) -> None:
        super().__init__()
        self.key = key
        self.finished = finished
        self.suite_task = task
        self.run_dir = run_dir

    def compose(self) -> ComposeResult:
        traj = load_trajectory_file(self.finished, self.run_dir)
        with VerticalScroll(id="trajectory-scroll"):
            yield Static(render_trajectory(self.finished, self.suite_task, traj, self.key), id="trajectory-body")
        yield StableFooter()

    def on_mount(self) -> None:
        self.query_one("#trajectory-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll(self, lines: int) -> None:
        self.query_one("#trajectory-scroll", VerticalScroll).scroll_relative(y=lines * 3, animate=False)


def task_lookup(suite: Any, task_id: str) -> Task | None:
    try:
        return suite.by_id().get(task_id) if suite is not None else None
    except Exception:  # a suite that no longer loads must not stop the screen from opening
        return None
