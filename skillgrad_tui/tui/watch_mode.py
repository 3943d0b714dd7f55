"""Watch mode in the app: a saved skill is re-evaluated (or re-optimised) by itself.

The watcher runs on its own thread and posts `SkillChanged`. What the app and its runs wrote is
in `own_writes` (fed by the run's events and by rollbacks and reviews): the watcher ignores a
burst that ends on the last of them, and a change seen while a run writes is judged against all
of them once the run has stopped (the run's version events may come after the watcher fires).
"""

from __future__ import annotations

from typing import Any

from textual import on

from skillgrad_tui.core.watcher import SkillWatcher, folder_hash
from skillgrad_tui.tui.messages import SkillChanged
from skillgrad_tui.tui.runs import RunsApp


class WatchingApp(RunsApp):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending_change: tuple[str, str] | None = None  # (summary, folder hash) seen mid-run

    def _watch_changed(self, summary: str) -> None:
        """Watcher thread: a burst of real changes ended."""
        self.post_message(SkillChanged(summary, folder_hash(self.session.skill_path)))

    @on(SkillChanged)
    def _on_skill_changed(self, message: SkillChanged) -> None:
        if self.watcher is None or not self.is_running:
            return
        if self.running:
            # Maybe the run's own patch (its version event comes later): judged when the run stops.
            self._pending_change = (message.summary, message.folder_hash)
            return
        self._react_to_change(message.summary)

    def _after_run(self) -> None:
        if self._pending_change is not None:
            (summary, seen), self._pending_change = self._pending_change, None
            if not self.own_writes.is_own(seen):
                self._react_to_change(summary)

    def _react_to_change(self, summary: str) -> None:
        skill = self.reload_skill()
        if skill is None:
            self.notify(f"{summary}: the skill no longer loads", title="Watch", severity="error")
            return
        self.changes_handled += 1
        self.notify(summary, title="Skill changed: re-" + ("optimising" if self.watch_optimize else "evaluating"))
        self._start("optimize" if self.watch_optimize else "evaluate", self.gate)

    def action_toggle_watch(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
            self.notify("watch mode off")
        else:
            if not self.running:  # mid-run, the run's events keep the tracker current
                self.own_writes.reset(folder_hash(self.session.skill_path))
            watcher = SkillWatcher(self.session.skill_path, self._watch_changed,
                                   debounce_s=self.watch_debounce_s, ignore_hash=self.own_writes.latest)
            try:
                watcher.start()
            except OSError as exc:  # folder gone, or out of inotify watches
                self.notify(f"cannot watch {self.session.skill_path}: {exc}", severity="error")
                return
            self.watcher = watcher
            self.notify("watch mode on: saving the skill re-" +
                        ("optimises" if self.watch_optimize else "evaluates") + " it")
        self._update_subtitle()

    def action_toggle_watch_optimize(self) -> None:
        self.watch_optimize = not self.watch_optimize
        self.notify("watch mode re-" + ("optimises" if self.watch_optimize else "evaluates") + " on change")
        self._update_subtitle()


__all__ = ["WatchingApp"]
