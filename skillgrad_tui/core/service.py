"""The engine API: one place that resolves what a run needs and starts it.

The CLI commands, `skillgrad watch` and the app all go through `Engine`: it resolves the skill,
the suite (one rule: `--suite`, else `[suite] path`, else `<skill parent>/suites/<skill name>/`),
the split, the models (through a backend factory handed in), the run directory and the options
once, and starts evaluations and optimisation runs, whose events go to the caller's sink and to
the run log. Settings come in typed (`EngineSettings`), built by the config layer: core never
reads skillgrad.toml itself.

Heavy modules (the agent, the optimiser, suites) are imported on first use, so that the app's
first frame does not wait for them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillgrad_tui.core.engine import Backend, CancelToken, RuntimeFacts
from skillgrad_tui.core.errors import SkillgradError, SuiteError
from skillgrad_tui.core.events import Event, EventSink
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.runlog import EVENTS, RUNS_SUBDIR, evals_root, runs_root, unique_run_dir

if TYPE_CHECKING:
    from skillgrad_tui.core.agent import AgentSettings
    from skillgrad_tui.core.evaluate import EvalResult
    from skillgrad_tui.core.llm.native import RepackSetting
    from skillgrad_tui.core.optimizer import OptimizeOptions, ReviewDecision, ReviewFn, ReviewRequest, RunResult
    from skillgrad_tui.core.skill import Skill
    from skillgrad_tui.core.suites import Suite

BackendFactory = Callable[[str], Backend]  # role ("task" | "optimizer") -> Backend; may carry .key(role)


@dataclass(frozen=True)
class AgentDefaults:
    """The [agent] settings (the rest of AgentSettings keeps its defaults)."""

    mode: str = "inline"
    max_tokens: int = 48
    table_rows: int = 40
    temperature: float = 0.0

    def agent_settings(self) -> AgentSettings:
        from skillgrad_tui.core.agent import AgentSettings

        return AgentSettings(mode=self.mode, max_tokens=self.max_tokens, table_rows=self.table_rows,
                             temperature=self.temperature)


@dataclass(frozen=True)
class OptimizeDefaults:
    """The [optimize] settings; `steps` is None unless the config file sets it."""

    steps: int | None = None
    default_steps: int = 10  # where a run started without a step count stops (the app, watch)
    batch_size: int = 4
    gate: str = "validation"
    momentum_decay: float = 0.8
    early_stop: int = 4
    l2_max_chars: int = 6000
    candidates: int = 3
    gate_k: float = 1.0
    val_repeats: int = 0
    parent: str = "current"
    git_commit: bool = False


@dataclass(frozen=True)
class ModelFacts:
    """What the header says about the models before one is loaded."""

    default: str = "gemma3-270m"
    server_url: str = ""
    server_model: str = ""
    n_gpu_layers: int = -1
    repack: RepackSetting = "auto"

    def runtime(self) -> RuntimeFacts:
        """Where the models run and why (probes llama.cpp: a second or so on first use)."""
        from skillgrad_tui.core.engine import runtime_facts

        return runtime_facts(self.server_url, self.n_gpu_layers, self.repack)


@dataclass(frozen=True)
class EngineSettings:
    """Everything the engine takes from skillgrad.toml, typed (the config layer builds it)."""

    seed: int = 0
    runs_dir: str = str(RUNS_SUBDIR)  # relative to the skill's parent
    suite_path: Path | None = None  # [suite] path, already resolved against the config file
    suite_split: str | None = None  # [suite] split: the suite's own split (a WTQ TSV name, ...)
    agent: AgentDefaults = field(default_factory=AgentDefaults)
    optimize: OptimizeDefaults = field(default_factory=OptimizeDefaults)
    models: ModelFacts = field(default_factory=ModelFacts)


@dataclass
class Evaluation:
    """One evaluation: its result, the tasks it ran, where it wrote, and the split's name."""

    result: EvalResult
    tasks: list[Task]
    run_dir: Path
    split: str
    suite: Suite


def resolve_suite_path(skill_path: Path | None, suite: Path | None, configured: Path | None) -> Path | None:
    """`--suite`, else `[suite] path`, else the suite bundled beside the skill (None if none)."""
    from skillgrad_tui.core.suites.selection import default_suite_path

    if suite is not None:
        return Path(suite).expanduser()
    return default_suite_path(skill_path, configured)


def reviewed_hash(request: ReviewRequest, decision: ReviewDecision) -> str | None:
    """The skill's hash once the optimiser applies `decision` (None if nothing would change); the
    app records it as its own write, so that watch mode does not take the patch for a user edit."""
    from dataclasses import replace

    from skillgrad_tui.core.optimizer import decided_edits
    from skillgrad_tui.core.skill import apply_edits_in_memory

    edits = decided_edits(request, decision).edits
    if not edits:
        return None
    skill = request.skill
    return replace(skill, files={**skill.files, **apply_edits_in_memory(skill, edits)}).hash


class Engine:
    """One skill + suite + settings + lazily built backends (built on the worker thread that first
    needs them, so roles that resolve to the same model share one instance)."""

    def __init__(self, skill_path: Path | None, settings: EngineSettings, backend_factory: BackendFactory, *,
                 suite_path: Path | None = None, owns_backends: bool = True) -> None:
        self.skill_path = Path(skill_path).expanduser().resolve() if skill_path is not None else None
        self.settings = settings
        self.suite_path = resolve_suite_path(self.skill_path, suite_path, settings.suite_path)
        self.backend_factory = backend_factory
        # Backends from an injected factory belong to whoever injected it (a test may share one).
        self._owns_backends = owns_backends
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()
        self._suite: Suite | None = None
        self._device: str | None = None  # "server" | "GPU" | "CPU", once probed (device())

    @property
    def seed(self) -> int:
        return self.settings.seed

    # -- suite and tasks --------------------------------------------------------------------------

    def _require_suite_path(self) -> Path:
        if self.suite_path is None:
            where = (f", or create {self.skill_path.parent / 'suites' / self.skill_path.name}"
                     if self.skill_path is not None else "")
            raise SuiteError(f"no task suite: pass --suite DIR, set [suite] path in skillgrad.toml{where}",
                             self.skill_path)
        return self.suite_path

    def suite(self) -> Suite:
        """The suite with its configured own split (cached); SuiteError when there is none."""
        from skillgrad_tui.core.suites import load_suite

        if self._suite is None:
            self._suite = load_suite(self._require_suite_path(), self.settings.suite_split)
        return self._suite

    def select(self, split: str | None, *, seed: int | None = None,
               limit: int | None = None) -> tuple[Suite, list[Task]]:
        """The tasks of `split`: a seeded split (train/val/test/all) of the suite, else the suite's
        own split of that name; None = every task of the configured own split."""
        from skillgrad_tui.core.suites import load_suite
        from skillgrad_tui.core.suites.selection import SEEDED_SPLITS

        path = self._require_suite_path()
        if split is None or split in SEEDED_SPLITS:
            suite = self.suite()
            tasks = suite.tasks if split in (None, "all") else self._seeded(split, seed)
        else:
            suite = load_suite(path, split)
            tasks = suite.tasks
        if limit is not None:
            if limit < 1:
                raise SuiteError("--limit must be at least 1", path)
            tasks = tasks[:limit]
        if not tasks:
            raise SuiteError(f"no tasks selected (split {split or 'default'})", path)
        return suite, tasks

    def tasks(self, split: str) -> list[Task]:
        """A seeded split of the suite (empty when the suite is too small for it)."""
        return self._seeded(split)

    def _seeded(self, split: str, seed: int | None = None) -> list[Task]:
        """Split `split` of the suite's tasks shuffled by `seed` (the run's seed by default)."""
        from skillgrad_tui.core.suites.splits import select_split, split_tasks

        return select_split(split_tasks(self.suite().tasks, self.seed if seed is None else seed), split)

    # -- backends ---------------------------------------------------------------------------------

    def backend(self, role: str) -> Backend:
        """Built on first use; roles that resolve to the same model share one instance."""
        key_fn = getattr(self.backend_factory, "key", None)
        key = key_fn(role) if key_fn is not None else role
        with self._lock:
            if key not in self._backends:
                self._backends[key] = self.backend_factory(role)
            return self._backends[key]

    def device(self) -> str | None:
        """Where the task model will run ("server", "GPU", "CPU"), known before the first load.
        It probes llama.cpp (an import of a second or so): call it off the UI thread. None for an
        injected backend factory (a test's or a benchmark's), whose device is its own business."""
        if self.settings.models.server_url:
            return "server"
        if self._device is None and self._owns_backends:
            self._device = self.settings.models.runtime().device
        return self._device

    def model_summary(self, model: str | None = None, device: str | None = None) -> str:
        """The task model and where it runs, for the app's header: "gemma3-270m · CPU" (the loaded
        backend's device, else `device` when the caller probed it), or "qwen · server URL"."""
        facts = self.settings.models
        if facts.server_url:
            return f"{model or facts.server_model or 'server model'} · server {facts.server_url}"
        name = model or facts.default
        name = Path(name).stem if name.endswith(".gguf") else name
        with self._lock:
            loaded = list(self._backends.values())
        device = next((getattr(getattr(b, "inner", b), "device", None) for b in loaded), None) or device or self._device
        return f"{name} · {device}" if device else name

    def agent_settings(self) -> AgentSettings:
        return self.settings.agent.agent_settings()

    def close(self) -> None:
        with self._lock:
            backends, self._backends = list(self._backends.values()), {}
        if not self._owns_backends:
            return
        for b in {id(b): b for b in backends}.values():
            try:
                b.close()
            except Exception:  # closing must never stop the app or a command from ending
                pass

    # -- run directories --------------------------------------------------------------------------

    def runs_root(self) -> Path:
        return runs_root(self.skill_path, self.settings.runs_dir)

    def new_run_dir(self, skill_hash: str) -> Path:
        """A fresh optimiser run directory."""
        return unique_run_dir(self.runs_root(), skill_hash)

    def eval_run_dir(self, skill_hash: str) -> Path:
        """Evaluations get their own folder beside runs/, so they never look like optimiser runs."""
        return unique_run_dir(evals_root(self.skill_path, self.settings.runs_dir), skill_hash)

    def stopped_runs(self) -> list[Path]:
        """Run directories of this skill that stopped before finishing (newest first)."""
        root = self.runs_root()
        found: list[Path] = []
        for run in sorted(root.iterdir(), reverse=True) if root.is_dir() else []:
            try:
                state = json.loads((run / "state.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if state.get("status") == "running" and Path(state.get("skill_root", "")) == self.skill_path:
                found.append(run)
        return found

    # -- evaluation -------------------------------------------------------------------------------

    def run_evaluation(self, skill: Skill | None, *, split: str | None, sink: EventSink,
                 cancel: CancelToken | None = None, run_dir: Path | None = None, seed: int | None = None,
                 limit: int | None = None, phase: str | None = None) -> Evaluation:
        """Score `skill` (None: no skill) on a split; events go to `sink` and to the run log
        (run_dir, default a fresh folder under evals/)."""
        from skillgrad_tui.core.agent import Agent
        from skillgrad_tui.core.evaluate import evaluate
        from skillgrad_tui.core.events import RunStarted, ValidationScored
        from skillgrad_tui.core.runlog import RunLog

        seed = self.seed if seed is None else seed
        suite, tasks = self.select(split, seed=seed, limit=limit)
        name = split or suite.source_split or "all"
        skill_hash = skill.hash if skill is not None else ""
        run_dir = run_dir if run_dir is not None else self.eval_run_dir(skill_hash or "none")
        agent = Agent(self.backend("task"), self.agent_settings())
        # An evaluation may be repeated into the same --run-dir: its events are appended.
        with RunLog(run_dir, create=not (Path(run_dir) / EVENTS).exists()) as log:
            def tee(event: Event) -> None:
                log.emit(event)
                sink(event)

            tee(RunStarted(run_id=log.run_dir.name, skill=str(self.skill_path or ""), suite=str(self.suite_path),
                           skill_hash=skill_hash, settings={"mode": "evaluate", "split": name, "n": len(tasks),
                                                            "seed": seed}))
            result = evaluate(agent, skill, tasks, seed=seed, phase=phase or name, step=0, sink=tee,
                              cancel=cancel, traj_dir=log.traj_dir("eval", name))
            tee(ValidationScored(step=0, skill_hash=skill_hash, score=result.accuracy, n=result.n))
        return Evaluation(result, tasks, log.run_dir, name, suite)

    # -- optimisation -----------------------------------------------------------------------------

    def optimize_options(self, gate: str | None = None, run_dir: Path | None = None, resume: Path | None = None,
                         overrides: Mapping[str, Any] | None = None, *, whole_epoch: bool = False) -> OptimizeOptions:
        """The options of a run: the settings, then `overrides` (the command line's, None = unset).
        Without a step count anywhere, the run stops after `default_steps`, or with `whole_epoch`
        (`skillgrad optimize`) after one pass over the training tasks. A new run gets its run
        directory here (resume keeps its own)."""
        from skillgrad_tui.core.optimizer import OptimizeOptions
        from skillgrad_tui.core.skill import load_skill

        o = self.settings.optimize
        values: dict[str, Any] = dict(
            steps=o.steps if o.steps is not None or whole_epoch else o.default_steps, batch_size=o.batch_size, seed=self.seed, gate=gate or o.gate,
            momentum_decay=o.momentum_decay, early_stop=o.early_stop, l2_max_chars=o.l2_max_chars,
            candidates=o.candidates, gate_k=o.gate_k, val_repeats=o.val_repeats, parent_selection=o.parent,
            git_commit=o.git_commit)
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        if run_dir is None and resume is None and self.skill_path is not None:
            run_dir = self.new_run_dir(load_skill(self.skill_path).hash)
        return OptimizeOptions(**values, run_dir=run_dir, resume=resume)

    def run_optimization(self, options: OptimizeOptions, *, sink: EventSink, cancel: CancelToken | None = None,
                         review: ReviewFn | None = None) -> RunResult:
        """A new run (options.run_dir), or the continuation of options.resume, whose own options
        (gate included) then apply."""
        from skillgrad_tui.core.optimizer import optimize

        if self.skill_path is None:
            raise SkillgradError("optimising needs a skill folder")
        return optimize(self.skill_path, self.suite(), self.backend("task"), self.backend("optimizer"), options,
                        agent_settings=self.agent_settings(), sink=sink, cancel=cancel, review=review)


__all__ = ["AgentDefaults", "BackendFactory", "Engine", "EngineSettings", "Evaluation", "ModelFacts",
           "OptimizeDefaults", "resolve_suite_path", "reviewed_hash"]
