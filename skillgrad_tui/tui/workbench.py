"""The workbench around runs: the gate, the pickers for the next run, history, compare,
rollback and export. Everything that would change what a run uses is refused while one runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import work

from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.gate import GATES as ENGINE_GATES
from skillgrad_tui.tui.screens.compare import CompareScreen
from skillgrad_tui.tui.screens.history import HistoryScreen
from skillgrad_tui.tui.screens.pickers import ChoiceScreen, ConfirmScreen
from skillgrad_tui.tui.watch_mode import WatchingApp

GATES = ("ask", *(g for g in ENGINE_GATES if g != "ask"))  # the names are core's; the cycle starts at "ask"


class WorkbenchApp(WatchingApp):
    def action_cycle_gate(self) -> None:
        self.gate = GATES[(GATES.index(self.gate) + 1) % len(GATES)] if self.gate in GATES else GATES[0]
        self.notify(f"gate: {self.gate}" + (" (takes effect on the next run)" if self.running else ""))
        self._update_subtitle()

    def action_set_gate(self, gate: str) -> None:
        self.gate = gate
        self._update_subtitle()

    def action_export(self) -> None:
        """The last run of this session, else the newest run of the skill."""
        run = self.run_dir if self.run_dir is not None and (self.run_dir / "events.jsonl").is_file() else None
        if run is None:
            runs = self.optimiser_runs()
            run = runs[0] if runs else None
        if run is None:
            self.notify("no run to export yet: optimise (r) or evaluate (v) first", severity="warning")
            return
        self.export_run(run)

    def export_run(self, run_dir: Path) -> None:
        from skillgrad_tui.tui.run_actions import export_run_files

        try:
            out, written = export_run_files(run_dir)
        except (OSError, SkillgradError) as exc:
            self.notify(str(exc), title="Export failed", severity="error")
            return
        self.notify(f"{out}: {', '.join(written)}", title="Exported")

    def optimiser_runs(self) -> list[Path]:
        """This skill's optimiser runs, newest first."""
        from skillgrad_tui.tui.run_actions import runs_of

        return runs_of(self.session.runs_root())

    def _pick(self, title: str, choices: list[tuple[str, str]], current: str | None,
              then: Callable[[str], None], *, typed: str | None = None, integer: bool = False) -> None:
        def picked(value: str | None) -> None:
            if value is None:
                return
            if self._refuse_while_running("the change"):  # a run may have started meanwhile (watch)
                return
            try:
                then(value)
            except (SkillgradError, ValueError) as exc:
                self.notify(str(exc), title="Not changed", severity="error")
                return
            self._update_subtitle()

        self.push_screen(ChoiceScreen(title, choices, current, typed=typed, integer=integer), picked)

    def action_pick_model(self) -> None:
        if self._refuse_while_running("changing the model"):
            return
        self._list_models()

    @work(thread=True, group="models", exit_on_error=False)
    def _list_models(self) -> None:
        from skillgrad_tui.core.engine import model_choices

        choices = model_choices(self.session.config.models)  # reads GGUF headers: off the UI thread
        self.call_from_thread(self._show_models, choices)

    def _show_models(self, models: list[Any]) -> None:
        current = self.session.model or self.session.settings.models.default
        choices = [(m.name, f"{m.name}  ({m.source})" + (f"  unusable: {m.error}" if m.error else ""))
                   for m in models]

        def use(name: str) -> None:
            if name not in {m.name for m in models} and not Path(name).expanduser().is_file():
                raise SkillgradError(f"no such model: {name} (not listed by `skillgrad models`, not a file)")
            self.session.set_model(name)
            self._probe_device()
            self.notify(f"model {name}: loaded on the next run", title="Model")

        self._pick("Model for the next run (task and optimiser)", choices, current, use,
                   typed="or a GGUF path")

    @work(thread=True, group="device", exit_on_error=False)
    def _probe_device(self) -> None:
        self.session.device()
        self.call_from_thread(self._update_subtitle)

    def action_pick_suite(self) -> None:
        if self._refuse_while_running("changing the suite"):
            return
        current = str(self.session.suite_path) if self.session.suite_path else None
        choices = [(str(p), f"{p.name}  ({p})") for p in self.session.suite_choices()]

        def use(raw: str) -> None:
            path = Path(raw).expanduser()
            if not path.exists():
                raise SkillgradError(f"no such suite: {path}")
            self.session.set_suite(path)
            self._reload_suite()

        self._pick("Task suite", choices, current, use, typed="or a suite path (folder or .jsonl)")

    def action_pick_split(self) -> None:
        if self._refuse_while_running("changing the split"):
            return
        splits = self.session.split_choices()
        if not splits:
            self.notify("this suite has no named splits: the seeded train/val/test split of its tasks "
                        "applies", title="Split")
            return
        current = self.session.settings.suite_split or ""
        choices = [("", "default (the suite's own choice)")] + [(name, name) for name in splits]

        def use(split: str) -> None:
            self.session.set_split(split)
            self._reload_suite()

        self._pick("Split of the suite the tasks come from", choices, current, use)

    def _pick_number(self, key: str, label: str, options: tuple[int, ...]) -> None:
        if self._refuse_while_running(f"changing {label}"):
            return
        opts = self.session.settings.optimize  # steps is None unless set: then the default applies
        current = str(opts.default_steps if key == "steps" and opts.steps is None else getattr(opts, key))

        def use(raw: str) -> None:
            self.session.set_option(key, int(raw))
            self.notify(f"{label}: {raw} for the next run", title="Optimiser")

        self._pick(f"{label[0].upper()}{label[1:]} (now {current})", [(str(n), str(n)) for n in options], current,
                   use, typed="or type a number", integer=True)

    def action_pick_steps(self) -> None:
        self._pick_number("steps", "steps", (1, 2, 3, 5, 10, 20, 50))

    def action_pick_batch(self) -> None:
        self._pick_number("batch_size", "batch size", (1, 2, 4, 8, 16, 32))

    def action_history(self) -> None:
        runs = self.optimiser_runs()
        if not runs:
            self.notify("no optimiser run of this skill yet: optimise (r) first", severity="warning")
            return
        index = runs.index(self.run_dir) if self.run_dir in runs else 0
        self.push_screen(HistoryScreen(runs, index))

    def action_compare(self, first: Path | None = None) -> None:
        runs = self.optimiser_runs()
        if len(runs) < 2:
            self.notify("comparing needs two optimiser runs of this skill; there are "
                        f"{len(runs)}", severity="warning")
            return
        choices = [(str(r), r.name) for r in runs]

        def second(a: Path) -> None:
            rest = [c for c in choices if c[0] != str(a)]

            def show(b: str | None) -> None:
                if b:
                    self.push_screen(CompareScreen(a, Path(b)))

            self.push_screen(ChoiceScreen(f"Compare {a.name} (A) with run B", rest, rest[0][0]), show)

        if first is not None:
            second(first)
        else:
            self.push_screen(ChoiceScreen("Compare two runs: run A", choices, choices[0][0]),
                             lambda a: second(Path(a)) if a else None)

    def confirm_rollback(self, run_dir: Path, version: int, done: Callable[[], None] | None = None) -> None:
        if self._refuse_while_running("a rollback"):
            return

        def answered(yes: bool | None) -> None:
            if yes and self.rollback_to(run_dir, version) and done is not None:
                done()

        self.push_screen(ConfirmScreen(f"Roll {self.session.skill_path.name} back to version {version} of run "
                                       f"{run_dir.name}?",
                                       "Files the version lacks, and the old content of files it overwrites, "
                                       f"are kept in {run_dir / 'set-aside'}."), answered)

    def rollback_to(self, run_dir: Path, version: int) -> bool:
        """Write version `version` of the run into the skill; refused while a run is running."""
        from skillgrad_tui.tui.run_actions import rollback

        if self._refuse_while_running("a rollback"):
            return False
        try:
            done = rollback(run_dir, version, self.session.skill_path)
        except SkillgradError as exc:
            self.notify(str(exc), title="Rollback failed", severity="error")
            return False
        self.own_writes.wrote(done.hash)  # our write: watch mode must not take it for an edit
        self.reload_skill()
        kept = len(done.removed) + len(done.replaced)
        self.notify(f"restored version {version} ({done.hash[:12]})" +
                    (f"; {kept} previous file(s) kept in {done.set_aside}" if kept else ""), title="Rolled back")
        return True


__all__ = ["GATES", "WorkbenchApp"]
