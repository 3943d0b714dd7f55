"""Watch mode: re-evaluate (optionally re-optimise) a skill each time it is saved.

Headless and line-oriented: one line per evaluation, so it can run in a spare terminal beside an
editor (`skillgrad watch`). It runs on the engine API, like every other command. Ctrl-C cancels
the evaluation in flight (between tokens) and stops.
"""

from __future__ import annotations

import queue
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from skillgrad_tui.core.engine import CancelToken
from skillgrad_tui.core.errors import Cancelled, SkillgradError
from skillgrad_tui.core.events import Event, null_sink
from skillgrad_tui.core.own_writes import OwnWrites
from skillgrad_tui.core.service import Engine
from skillgrad_tui.core.skill import load_skill
from skillgrad_tui.core.skill_lock import SkillLock
from skillgrad_tui.core.watcher import SkillWatcher, folder_hash


class WatchLoop:
    """The loop behind `skillgrad watch`, separated from argparse so tests can drive it; it runs
    on any Engine (the app's Session is one)."""

    def __init__(self, session: Engine, *, split: str = "val", optimize: bool = False,
                 debounce_s: float = 0.5, out: TextIO | None = None) -> None:
        self.session = session
        self.split = split
        self.optimize = optimize
        self.debounce_s = debounce_s
        self.out = out or sys.stdout
        self.changes: queue.Queue[tuple[str, str]] = queue.Queue()  # (summary, folder hash)
        self.cancel = CancelToken()
        self.last_score: float | None = None
        self.evaluations = 0
        self.own_writes = OwnWrites()  # what the optimiser wrote: not a person's edit
        if session.skill_path is None:
            raise SkillgradError("watch needs a skill folder")
        self.skill_path: Path = session.skill_path

    def say(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')}  {text}", file=self.out, flush=True)

    def evaluate(self, reason: str) -> None:
        try:
            skill = load_skill(self.skill_path)
        except SkillgradError as exc:
            self.say(f"✗ does not load: {exc}")
            return
        result = self.session.run_evaluation(skill, split=self.split, sink=null_sink, cancel=self.cancel).result
        self.evaluations += 1
        delta = "" if self.last_score is None else f" ({result.accuracy - self.last_score:+.3f})"
        self.last_score = result.accuracy
        tokens = result.prompt_tokens + result.completion_tokens
        self.say(f"{skill.short_hash[:8]}  {self.split} {result.passed}/{result.n} = {result.accuracy:.3f}{delta}"
                 f"  {tokens} tok  {result.seconds:.1f}s  [{reason}]")
        counts = result.outcomes
        if counts.errored:  # not part of the score: say so, or a dead server reads as a bad skill
            self.say(f"  {'every task' if counts.all_errored else f'{counts.errored} task(s)'} errored: "
                     f"{counts.top_error}")
        if self.optimize:
            self._optimize()

    def _optimize(self) -> None:
        kept: list[int] = []

        def sink(event: Event) -> None:
            self.own_writes.observe(event)
            if event.kind == "step_finished" and getattr(event, "kept", False):
                kept.append(getattr(event, "step", 0))

        result = self.session.run_optimization(self.session.optimize_options("validation"), sink=sink,
                                               cancel=self.cancel)
        now = folder_hash(self.skill_path)
        self.own_writes.produced(result.final_skill_hash)
        self.own_writes.wrote(now)
        self.say(f"optimised: {result.reason}, {len(kept)} step(s) kept, skill now "
                 f"{now[:8]}  run {result.run_dir}")

    def _changed(self, summary: str) -> None:
        """Watcher thread: a burst ended; the content it ended on is judged when it is taken."""
        self.changes.put((summary, folder_hash(self.skill_path)))

    def users_change(self, seen: list[tuple[str, str]]) -> str | None:
        """The summary of the last change a person made, of those seen; None when every one
        ended on content the optimiser wrote (its patches, seen while it was writing them)."""
        mine = [summary for summary, content in seen if not self.own_writes.is_own(content)]
        return mine[-1] if mine else None

    def run(self, *, initial: bool = True, stop: Callable[[], bool] = lambda: False) -> int:
        self.session.suite()  # fail fast on a missing or broken suite
        # A session that re-optimises writes the skill: it is the one writer for as long as it runs.
        lock = SkillLock(self.skill_path).acquire() if self.optimize else None
        try:
            return self._run(initial, stop)
        finally:
            if lock is not None:
                lock.release()

    def _run(self, initial: bool, stop: Callable[[], bool]) -> int:
        watcher = SkillWatcher(self.skill_path, self._changed, debounce_s=self.debounce_s,
                               ignore_hash=self.own_writes.latest)
        self.say(f"watching {self.skill_path} (suite {self.session.suite_path}, split {self.split}); "
                 "Ctrl-C stops")
        watcher.start()
        try:
            if initial:
                self.evaluate("start")
            while not stop():
                try:
                    seen = [self.changes.get(timeout=0.2)]
                except queue.Empty:
                    continue
                while True:  # changes that queued up while we evaluated: one evaluation for all
                    try:
                        seen.append(self.changes.get_nowait())
                    except queue.Empty:
                        break
                reason = self.users_change(seen)
                if reason is not None:
                    self.evaluate(reason)
        except (KeyboardInterrupt, Cancelled) as exc:
            self.cancel.cancel()
            self.say("stopped")
            if isinstance(exc, KeyboardInterrupt):
                return 130  # Ctrl-C: what a shell expects of a program stopped by SIGINT
        finally:
            watcher.stop()
            self.session.close()
        return 0


__all__ = ["WatchLoop"]
