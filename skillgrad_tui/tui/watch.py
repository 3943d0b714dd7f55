"""`skillgrad watch SKILL`: re-evaluate (optionally re-optimise) a skill each time it is saved.

Headless and line-oriented: one line per evaluation, so it can run in a spare terminal beside an
editor. No textual import: it uses the same Session and SkillWatcher as the app. Ctrl-C cancels
the evaluation in flight (between tokens) and stops.
"""

from __future__ import annotations

import argparse
import queue
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from skillgrad_tui.core.engine import Backend, CancelToken
from skillgrad_tui.core.errors import Cancelled, SkillgradError
from skillgrad_tui.core.events import Event, null_sink
from skillgrad_tui.core.skill import load_skill
from skillgrad_tui.core.skill_lock import SkillLock
from skillgrad_tui.core.watcher import SkillWatcher, folder_hash
from skillgrad_tui.tui.session import Session


def add_watch_arguments(p: argparse.ArgumentParser) -> None:
    """The options `watch_command` reads (the CLI may add --config/--model/--no-cache itself)."""
    p.add_argument("skill", type=Path, help="skill folder to watch")
    p.add_argument("--suite", type=Path, help="task suite (default: [suite] path, else "
                   "<skill parent>/suites/<skill name>/)")
    p.add_argument("--split", default="val", help="split to evaluate on each change (default: val)")
    p.add_argument("--optimize", action="store_true",
                   help="after each evaluation, also run the optimiser (validation gate)")
    p.add_argument("--debounce", type=float, default=0.5, help="seconds of quiet before reacting")


class WatchLoop:
    """The loop behind `skillgrad watch`, separated from argparse so tests can drive it."""

    def __init__(self, session: Session, *, split: str = "val", optimize: bool = False,
                 debounce_s: float = 0.5, out: TextIO | None = None) -> None:
        self.session = session
        self.split = split
        self.optimize = optimize
        self.debounce_s = debounce_s
        self.out = out or sys.stdout
        self.changes: queue.Queue[str] = queue.Queue()
        self.cancel = CancelToken()
        self.last_score: float | None = None
        self.evaluations = 0
        self._own_hash: str | None = None

    def say(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')}  {text}", file=self.out, flush=True)

    def evaluate(self, reason: str) -> None:
        try:
            skill = load_skill(self.session.skill_path)
        except SkillgradError as exc:
            self.say(f"✗ does not load: {exc}")
            return
        run_dir = self.session.eval_run_dir(skill.hash)
        result = self.session.evaluate(skill, run_dir, sink=null_sink, cancel=self.cancel, split=self.split)
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
        skill = load_skill(self.session.skill_path)
        run_dir = self.session.new_run_dir(skill.hash)
        kept: list[int] = []

        def sink(event: Event) -> None:
            if event.kind == "step_finished" and getattr(event, "kept", False):
                kept.append(getattr(event, "step", 0))

        result = self.session.optimize("validation", run_dir, sink=sink, cancel=self.cancel)
        self._own_hash = folder_hash(self.session.skill_path)
        self.say(f"optimised: {result.reason}, {len(kept)} step(s) kept, skill now "
                 f"{self._own_hash[:8]}  run {result.run_dir}")

    def run(self, *, initial: bool = True, stop: Callable[[], bool] = lambda: False) -> int:
        self.session.suite()  # fail fast on a missing or broken suite
        # A session that re-optimises writes the skill: it is the one writer for as long as it runs.
        lock = SkillLock(self.session.skill_path).acquire() if self.optimize else None
        try:
            return self._run(initial, stop)
        finally:
            if lock is not None:
                lock.release()

    def _run(self, initial: bool, stop: Callable[[], bool]) -> int:
        watcher = SkillWatcher(self.session.skill_path, self.changes.put, debounce_s=self.debounce_s,
                               ignore_hash=lambda: self._own_hash)
        self.say(f"watching {self.session.skill_path} (suite {self.session.suite_path}, split {self.split}); "
                 "Ctrl-C stops")
        watcher.start()
        try:
            if initial:
                self.evaluate("start")
            while not stop():
                try:
                    reason = self.changes.get(timeout=0.2)
                except queue.Empty:
                    continue
                while True:  # changes that queued up while we evaluated: one evaluation for all
                    try:
                        reason = self.changes.get_nowait()
                    except queue.Empty:
                        break
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


def watch_command(args: argparse.Namespace, backend_factory: Callable[[str], Backend] | None = None) -> int:
    """Handler for `skillgrad watch`; reads args.skill, suite, config, model, no_cache, split,
    optimize, debounce (missing ones take their defaults)."""
    session = Session.from_args(args.skill, getattr(args, "suite", None), getattr(args, "config", None),
                                getattr(args, "model", None), bool(getattr(args, "no_cache", False)),
                                backend_factory=backend_factory)
    loop = WatchLoop(session, split=getattr(args, "split", None) or "val",
                     optimize=bool(getattr(args, "optimize", False)),
                     debounce_s=float(getattr(args, "debounce", 0.5) or 0.5))
    return loop.run()


__all__ = ["WatchLoop", "add_watch_arguments", "watch_command"]
