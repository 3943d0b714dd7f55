"""Headless view of a run: the same event stream the TUI renders, as lines and a progress bar.

On a terminal a rich progress bar (steps, and tasks of the current phase) stays at the bottom
while step lines scroll above it; elsewhere (pipes, CI logs) only the lines are printed.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from skillgrad_tui.core import events as ev
from skillgrad_tui.core.runlog import VersionRecord


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


class EventPrinter:
    """An EventSink. Call `close()` when the run ends (stops the live bar)."""

    def __init__(self, console: Console | None = None, *, verbose: bool = False) -> None:
        self.console = console or Console()
        self.verbose = verbose
        self._progress: Progress | None = None
        self._steps: TaskID | None = None
        self._tasks: TaskID | None = None
        self._step_info: dict[int, dict[str, Any]] = {}
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=self.console, transient=True)

    # -- plumbing ----------------------------------------------------------------------------------

    def _print(self, *objects: Any) -> None:
        self.console.print(*objects, highlight=False, soft_wrap=True)  # paths stay copyable

    def _start(self, planned: int) -> None:
        if self._progress is None:
            return
        self._progress.start()
        self._steps = self._progress.add_task("steps", total=max(planned, 1))
        self._tasks = self._progress.add_task("tasks", total=1, visible=False)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # -- events ------------------------------------------------------------------------------------

    def __call__(self, event: ev.Event) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event)

    def _on_run_started(self, e: ev.RunStarted) -> None:
        s = e.settings
        resumed = " (resumed)" if s.get("resumed") else ""
        self._print(f"[bold]run {e.run_id}[/]{resumed}: skill {e.skill} @ {e.skill_hash[:12]}, suite {e.suite}")
        self._print(f"  gate {s.get('gate')}, batch {s.get('batch_size')}, up to {s.get('planned_steps')} steps, "
                    f"train {s.get('n_train')} / val {s.get('n_val')} tasks, seed {s.get('seed')}")
        if s.get("sandbox"):
            self._print(f"  agent scripts run in the sandbox mode {s['sandbox']}")
        self._start(int(s.get("planned_steps") or 1))

    def _on_step_started(self, e: ev.StepStarted) -> None:
        self._step_info[e.step] = {"tasks": e.task_ids}
        if self.verbose:
            self._print(f"step {e.step}: {', '.join(e.task_ids)}")

    def _on_progress(self, e: ev.Progress) -> None:
        if e.phase == "steps":  # the optimiser's plan, known once the seed evaluation is done
            if self._progress is not None and self._steps is not None:
                self._progress.update(self._steps, completed=e.done, total=max(e.total, 1))
            return
        if self._progress is not None and self._tasks is not None:
            self._progress.update(self._tasks, description=e.phase or "tasks", completed=e.done,
                                  total=max(e.total, 1), visible=e.done < e.total)

    def _on_task_finished(self, e: ev.TaskFinished) -> None:
        if self.verbose:
            mark = "[green]pass[/]" if e.passed else "[red]fail[/]"
            self._print(f"  {e.phase} {e.task_id}: {mark} {e.score:.2f}")

    def _on_gradient_computed(self, e: ev.GradientComputed) -> None:
        info = self._step_info.setdefault(e.step, {})
        info["labels"] = [g.get("label", "") for g in e.gradients]
        info["preserve"] = len(e.contrastive)
        info["invalid"] = e.invalid_outputs

    def _on_patch_proposed(self, e: ev.PatchProposed) -> None:
        info = self._step_info.setdefault(e.step, {})
        layers = sorted({str(x.get("layer")) for x in e.edits})
        info["edits"] = len(e.edits)
        info["patch"] = f"{len(e.edits)} edit(s) {'/'.join(layers)}".strip() if e.edits else "no edit"
        if e.rejected:
            info["patch"] += f", {len(e.rejected)} rejected"

    def _on_candidate_proposed(self, e: ev.CandidateProposed) -> None:
        info = self._step_info.setdefault(e.step, {})
        info["candidates"] = info.get("candidates", 0) + 1

    def _on_candidate_decided(self, e: ev.CandidateDecided) -> None:
        if self.verbose:
            mark = "[green]kept[/]" if e.kept else f"[yellow]{e.reason}[/]"
            self._print(f"  candidate v{e.version}: {mark} [dim]{e.sentence}[/]")

    def _on_validation_scored(self, e: ev.ValidationScored) -> None:
        self._step_info.setdefault(e.step, {})["val"] = e.score

    def _on_warning(self, e: ev.Warning_) -> None:
        where = f"step {e.step}: " if e.step is not None else ""
        self._print(f"[yellow]warning:[/] {where}{e.message}")

    def _on_step_finished(self, e: ev.StepFinished) -> None:
        info = self._step_info.pop(e.step, {})
        labels = info.get("labels") or []
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        named = [f"{lb} x{n}" if n > 1 else lb for lb, n in counts.items()]
        grads = "; ".join(named[:3]) + (f" (+{len(named) - 3} more)" if len(named) > 3 else "")
        decided = "[green]kept[/]" if e.kept else ("[yellow]rolled back[/]" if info.get("candidates") else "no patch")
        pool = f" | {info['candidates']} candidate(s)" if info.get("candidates") else ""
        self._print(
            f"step {e.step}: loss {e.train_loss:.2f} | gradients {len(labels)}"
            + (f" [dim]({grads})[/]" if grads else "")
            + f" | {info.get('patch', 'no edits')}{pool} | val {_fmt(e.val_score)} | {decided}"
            + f" | {e.prompt_tokens + e.completion_tokens} tok {e.seconds:.1f}s")
        if e.summary:
            self._print(f"  [dim]{e.summary}[/]")
        if self._progress is not None and self._steps is not None:
            self._progress.advance(self._steps)

    def _on_run_finished(self, e: ev.RunFinished) -> None:
        self.close()
        best = f", best version {e.best_version} (val {_fmt(e.best_score)})" if e.best_version is not None else ""
        self._print(f"[bold]finished[/]: {e.reason}{best}")
        if e.summary:
            self._print(e.summary)


def versions_table(versions: list[VersionRecord], *, best: int | None = None,
                   current_hash: str | None = None, lineage: bool = False) -> Table:
    """The run's versions; with `lineage`, the candidate columns too (how it was made, its
    minibatch score, the gate's decision with its estimate and standard error)."""
    table = Table(title="Skill versions")
    cols = ["version", "step", "parent", "val", "train", "chars", "kept", "hash"]
    if lineage:
        cols = ["version", "step", "parent", "origin", "minibatch", "val", "chars", "kept"]
    for col in cols:
        numeric = col in ("version", "step", "val", "train", "chars", "minibatch", "parent", "kept")
        table.add_column(col, justify="right" if numeric else "left", no_wrap=numeric or col == "hash",
                         overflow="fold")
    for v in versions:
        marks = (" *" if v.version == best else "") + (" (on disk)" if v.skill_hash == current_hash else "")
        cells = {"version": f"{v.version}{marks}", "step": str(v.step),
                 "parent": "-" if v.parent is None else str(v.parent), "val": _fmt(v.val_score),
                 "train": _fmt(v.train_score), "chars": str(v.chars), "kept": "yes" if v.kept else "no",
                 "hash": v.skill_hash[:12], "origin": v.origin or ("seed" if v.parent is None else ""),
                 "minibatch": _fmt(v.minibatch)}
        table.add_row(*(cells[c] for c in cols))
    return table


def decision_lines(versions: list[VersionRecord]) -> list[str]:
    """One line per candidate: what the gate decided, with its estimate and standard error."""
    return [f"v{v.version} (step {v.step}, from v{v.parent}): {v.decision}" for v in versions if v.decision]
