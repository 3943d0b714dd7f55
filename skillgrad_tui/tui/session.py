"""The app's and `skillgrad watch`'s handle on the engine API (core/service.py), built from a Config.

`Session` is the engine with the names the app uses (`optimize(gate, run_dir, ...)`,
`evaluate(skill, run_dir, ...)`); every rule (suite, split, run directory, options, the review
decision) lives in the engine. Nothing here imports textual, so the headless watcher uses it as is.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillgrad_tui.config import Config, backend_factory, load_config
from skillgrad_tui.core.engine import CancelToken
from skillgrad_tui.core.errors import Cancelled
from skillgrad_tui.core.events import EventSink
from skillgrad_tui.core.runlog import runs_root as _runs_root
from skillgrad_tui.core.runlog import unique_run_dir
from skillgrad_tui.core.service import BackendFactory, Engine, resolve_suite_path, reviewed_hash

if TYPE_CHECKING:
    from skillgrad_tui.core.evaluate import EvalResult
    from skillgrad_tui.core.optimizer import OptimizeOptions, ReviewFn, RunResult
    from skillgrad_tui.core.skill import Skill

__all__ = ["BackendFactory", "ReviewBridge", "Session", "default_backend_factory", "default_suite_path",
           "expected_hash", "new_run_dir", "runs_root"]

expected_hash = reviewed_hash  # the app's name for it


def default_suite_path(skill_path: Path, suite: Path | None, config: Config) -> Path | None:
    """`--suite`, else `[suite] path` of skillgrad.toml, else <skill parent>/suites/<skill name>/."""
    return resolve_suite_path(Path(skill_path).expanduser(), suite, config.engine_settings().suite_path)


def default_backend_factory(config: Config, model: str | None, no_cache: bool) -> BackendFactory:
    """The real backends; one instance per distinct model, so task and optimiser share weights."""
    return backend_factory(config, model, no_cache)


def runs_root(skill_path: Path, config: Config) -> Path:
    """Where run directories go: `[run] dir` relative to the skill's parent (design.md)."""
    return _runs_root(skill_path, config.get("run", "dir"))


def new_run_dir(skill_path: Path, config: Config, skill_hash: str) -> Path:
    """A fresh optimiser run directory."""
    return unique_run_dir(runs_root(skill_path, config), skill_hash)


class Session(Engine):
    """One skill + suite + config + lazily built backends."""

    skill_path: Path

    def __init__(self, skill_path: Path, suite_path: Path | None = None, config: Config | None = None,
                 backend_factory: BackendFactory | None = None, model: str | None = None,
                 no_cache: bool = False) -> None:
        self.config = config if config is not None else Config()
        self.model = model
        self.no_cache = no_cache
        super().__init__(Path(skill_path), self.config.engine_settings(),
                         backend_factory or default_backend_factory(self.config, model, no_cache),
                         suite_path=suite_path, owns_backends=backend_factory is None)

    @classmethod
    def from_args(cls, skill: Path, suite: Path | None, config_path: Path | None, model: str | None,
                  no_cache: bool, backend_factory: BackendFactory | None = None) -> "Session":
        config = load_config(Path(skill), explicit=config_path)
        return cls(Path(skill), suite, config, backend_factory, model, no_cache)

    def model_summary(self, model: str | None = None) -> str:
        return super().model_summary(model or self.model)

    def evaluate(self, skill: Skill | None, run_dir: Path | None = None, *, sink: EventSink,
                 cancel: CancelToken | None = None, split: str | None = "val", **more: Any) -> EvalResult:
        """Score `skill` on a seeded split; the result (an EvalResult) as the app reads it."""
        return self.run_evaluation(skill, split=split, sink=sink, cancel=cancel, run_dir=run_dir, **more).result

    def optimize(self, gate: str | OptimizeOptions | None, run_dir: Path | None = None, *, sink: EventSink,
                 cancel: CancelToken | None = None, review: ReviewFn | None = None,
                 resume: Path | None = None) -> RunResult:
        """A new run in run_dir (default: a fresh one), or (resume=...) the continuation of a
        stopped one, whose own options (gate included) then apply. `gate` may also be ready
        OptimizeOptions."""
        from skillgrad_tui.core.optimizer import OptimizeOptions

        options = gate if isinstance(gate, OptimizeOptions) else self.optimize_options(gate, run_dir, resume)
        return self.run_optimization(options, sink=sink, cancel=cancel, review=review)


class ReviewBridge:
    """Turns the UI's asynchronous review into the blocking ReviewFn optimize() calls.

    `show(request, answer)` runs on the worker thread and must hand the request to the UI (the
    app posts a message); the UI calls `answer(decision)` once, from any thread. If the run is
    cancelled while waiting, it raises Cancelled: the step stays undecided in the run log (not
    "rejected"), nothing reaches the disk, and a resumed run asks again.
    """

    def __init__(self, show: Callable[[Any, Callable[[Any], None]], None], cancel: CancelToken) -> None:
        self._show = show
        self._cancel = cancel

    def __call__(self, request: Any) -> Any:
        answers: queue.Queue[Any] = queue.Queue(maxsize=1)

        def answer(decision: Any) -> None:
            try:
                answers.put_nowait(decision)
            except queue.Full:  # answered twice (e.g. cancel raced a key press): first one wins
                pass

        self._show(request, answer)
        while True:
            try:
                return answers.get(timeout=0.05)
            except queue.Empty:
                if self._cancel.cancelled:
                    raise Cancelled()
