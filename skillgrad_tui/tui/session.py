"""The app's and `skillgrad watch`'s handle on the engine API (core/service.py), built from a Config.

`Session` is the engine with the names the app uses (`optimize(gate, run_dir, ...)`,
`evaluate(skill, run_dir, ...)`); every rule (suite, split, run directory, options, the review
decision) lives in the engine. Nothing here imports textual, so the headless watcher uses it as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillgrad_tui.config import Config, backend_factory, load_config
from skillgrad_tui.core.engine import CancelToken
from skillgrad_tui.core.events import EventSink
from skillgrad_tui.core.service import BackendFactory, Engine, resolve_suite_path, reviewed_hash

if TYPE_CHECKING:
    from skillgrad_tui.core.evaluate import EvalResult
    from skillgrad_tui.core.optimizer import OptimizeOptions, ReviewFn, RunResult
    from skillgrad_tui.core.skill import Skill

__all__ = ["BackendFactory", "Session", "default_backend_factory", "default_suite_path",
           "expected_hash"]

expected_hash = reviewed_hash  # the app's name for it


def default_suite_path(skill_path: Path, suite: Path | None, config: Config) -> Path | None:
    """`--suite`, else `[suite] path` of skillgrad.toml, else <skill parent>/suites/<skill name>/."""
    return resolve_suite_path(Path(skill_path).expanduser(), suite, config.engine_settings().suite_path)


def default_backend_factory(config: Config, model: str | None, no_cache: bool) -> BackendFactory:
    """The real backends; one instance per distinct model, so task and optimiser share weights."""
    return backend_factory(config, model, no_cache)


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

    def model_summary(self, model: str | None = None, device: str | None = None) -> str:
        return super().model_summary(model or self.model, device)

    # -- the app's pickers: what the next run uses --------------------------------------------------

    def _reload_settings(self) -> None:
        """The engine reads typed settings: after a change to the config, build them again."""
        self.settings = self.config.engine_settings()

    def set_model(self, name: str) -> None:
        """Use model `name` from now on: the backends of the old one are closed (their memory is
        freed) and the factory rebuilt. An injected factory is kept (it answers for any model);
        only its cached backends are dropped, which their owner closes."""
        self.model = name or None
        self._device = None
        self.close()
        if self._owns_backends:
            self.backend_factory = default_backend_factory(self.config, self.model, self.no_cache)

    def set_suite(self, path: Path) -> None:
        """Evaluate on the suite at `path` from now on (loaded again on next use). A split names
        one of the old suite's files, so another suite starts at its default split."""
        path = Path(path).expanduser().resolve()
        if path != self.suite_path:
            self.config.set("suite", "split", "")
            self._reload_settings()
        self.suite_path = path
        self._suite = None

    def set_split(self, split: str) -> None:
        """The suite's own split (a WTQ TSV name); "" for the suite's default. Checked by Config."""
        self.config.set("suite", "split", split)
        self._reload_settings()
        self._suite = None

    def set_option(self, key: str, value: int) -> None:
        """`[optimize] key = value` for the next run (steps, batch_size), checked by Config."""
        self.config.set("optimize", key, value)
        self._reload_settings()

    def suite_choices(self) -> list[Path]:
        """Suites a person is likely to pick: the current one and every folder of the skill's
        `suites/` neighbour (where the bundled suites live)."""
        found: list[Path] = [self.suite_path] if self.suite_path is not None else []
        bundled = self.skill_path.parent / "suites"
        if bundled.is_dir():
            found += sorted(p.resolve() for p in bundled.iterdir() if p.is_dir() and not p.name.startswith("."))
        return list(dict.fromkeys(found))

    def split_choices(self) -> list[str]:
        """The named splits of the current suite (WikiTableQuestions' data/*.tsv); [] when it has none."""
        from skillgrad_tui.core.suites import wtq_splits
        from skillgrad_tui.core.suites.wtq import is_wtq_root

        if self.suite_path is None or not self.suite_path.is_dir() or not is_wtq_root(self.suite_path):
            return []
        return wtq_splits(self.suite_path)

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
