"""What the app and `skillgrad watch` share, without any UI: paths, suite, backends, runs.

Nothing here imports textual, so the headless watcher and the tests use it as is. Backends are
built on first use (on the worker thread), which is what keeps the app's first frame fast.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillgrad_tui.config import Config, load_config
from skillgrad_tui.core.engine import Backend, CancelToken
from skillgrad_tui.core.errors import Cancelled, SuiteError
from skillgrad_tui.core.records import Task

BackendFactory = Callable[[str], Backend]  # role ("task" | "optimizer") -> Backend


def default_suite_path(skill_path: Path, suite: Path | None, config: Config) -> Path | None:
    """`--suite`, else `[suite] path` of skillgrad.toml, else <skill parent>/suites/<skill name>/."""
    from skillgrad_tui.core.suites.selection import default_suite_path as bundled_or_configured

    if suite is not None:
        return Path(suite).expanduser()
    raw = config.get("suite", "path")
    return bundled_or_configured(Path(skill_path).expanduser(), config.resolve_path(raw) if raw else None)


def default_backend_factory(config: Config, model: str | None, no_cache: bool) -> BackendFactory:
    """The real backends; one instance per distinct model, so task and optimiser share weights."""
    from skillgrad_tui.core.engine import backend_identity, make_backend

    def factory(role: str) -> Backend:
        return make_backend(config.backend_settings(model, role=role, use_cache=not no_cache))

    def key(role: str) -> str:
        return backend_identity(config.backend_settings(model, role=role))

    factory.key = key  # type: ignore[attr-defined]
    return factory


def runs_root(skill_path: Path, config: Config) -> Path:
    """Where run directories go: `[run] dir` relative to the skill's parent (design.md)."""
    return Path(skill_path).resolve().parent / config.get("run", "dir")


def new_run_dir(skill_path: Path, config: Config, skill_hash: str) -> Path:
    """A fresh optimiser run directory (the optimiser would pick the same kind of name)."""
    from skillgrad_tui.core.runlog import new_run_id

    root = runs_root(skill_path, config)
    path = root / new_run_id(skill_hash)
    n = 1
    while path.exists():
        n += 1
        path = root / f"{new_run_id(skill_hash)}-{n}"
    return path


@dataclass
class Session:
    """One skill + suite + config + lazily built backends."""

    skill_path: Path
    suite_path: Path | None = None
    config: Config = field(default_factory=Config)
    backend_factory: BackendFactory | None = None
    model: str | None = None
    no_cache: bool = False
    _backends: dict[str, Backend] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _suite: Any = field(default=None, repr=False)
    _owns_backends: bool = field(default=True, repr=False)
    _device: str | None = field(default=None, repr=False)  # "CPU" | "GPU", once probed (device())

    def __post_init__(self) -> None:
        self.skill_path = Path(self.skill_path).expanduser().resolve()
        self.suite_path = default_suite_path(self.skill_path, self.suite_path, self.config)
        # Backends from an injected factory belong to whoever injected it (a test may share one).
        self._owns_backends = self.backend_factory is None
        if self.backend_factory is None:
            self.backend_factory = default_backend_factory(self.config, self.model, self.no_cache)

    @classmethod
    def from_args(cls, skill: Path, suite: Path | None, config_path: Path | None, model: str | None,
                  no_cache: bool, backend_factory: BackendFactory | None = None) -> "Session":
        config = load_config(Path(skill), explicit=config_path)
        return cls(Path(skill), suite, config, backend_factory, model, no_cache)

    @property
    def seed(self) -> int:
        return int(self.config.get("run", "seed"))

    # -- suite --------------------------------------------------------------------------------------

    def suite(self) -> Any:
        """The loaded suite (cached); SuiteError when there is none."""
        from skillgrad_tui.core.suites import load_suite

        if self._suite is None:
            if self.suite_path is None:
                raise SuiteError("no task suite: pass --suite, set [suite] path in skillgrad.toml, or "
                                 f"create {self.skill_path.parent / 'suites' / self.skill_path.name}",
                                 self.skill_path)
            self._suite = load_suite(self.suite_path, self.config.get("suite", "split") or None)
        return self._suite

    def tasks(self, split: str) -> list[Task]:
        from skillgrad_tui.core.suites.splits import select_split, split_tasks

        return select_split(split_tasks(self.suite().tasks, self.seed), split)

    # -- backends -----------------------------------------------------------------------------------

    def backend(self, role: str) -> Backend:
        """Built on first use; roles that resolve to the same model share one instance."""
        assert self.backend_factory is not None
        key_fn = getattr(self.backend_factory, "key", None)
        key = key_fn(role) if key_fn is not None else role
        with self._lock:
            if key not in self._backends:
                self._backends[key] = self.backend_factory(role)
            return self._backends[key]

    def model_summary(self) -> str:
        """The task model and where it runs, for the app's header: "gemma3-270m · CPU", or
        "qwen · server http://host:8080/v1" when an HTTP server answers."""
        url = self.config.get("server", "url")
        if url:
            return f"{self.model or self.config.get('server', 'model') or 'server model'} · server {url}"
        name = self.model or self.config.get("model", "default")
        name = Path(name).stem if name.endswith(".gguf") else name
        with self._lock:
            loaded = list(self._backends.values())
        device = next((getattr(getattr(b, "inner", b), "device", None) for b in loaded), None) or self._device
        return f"{name} · {device}" if device else name

    def device(self) -> str | None:
        """Where the task model will run ("server", "GPU", "CPU"), known before the first load.
        It probes llama.cpp (an import of a second or so): call it off the UI thread. None for an
        injected backend factory (a test's or a benchmark's), whose device is its own business."""
        if self.config.get("server", "url"):
            return "server"
        if self._device is None and self._owns_backends:
            from skillgrad_tui.core.engine import local_device

            self._device = local_device(int(self.config.get("model", "n_gpu_layers")))
        return self._device

    # -- the app's pickers: what the next run uses --------------------------------------------------

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
        self.suite_path = path
        self._suite = None

    def set_split(self, split: str) -> None:
        """The suite's own split (a WTQ TSV name); "" for the suite's default. Checked by Config."""
        self.config.set("suite", "split", split)
        self._suite = None

    def set_option(self, key: str, value: int) -> None:
        """`[optimize] key = value` for the next run (steps, batch_size), checked by Config."""
        self.config.set("optimize", key, value)

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
        from skillgrad_tui.core.suites import is_wtq_root, wtq_splits

        if self.suite_path is None or not self.suite_path.is_dir() or not is_wtq_root(self.suite_path):
            return []
        return wtq_splits(self.suite_path)

    def agent_settings(self) -> Any:
        from skillgrad_tui.core.agent import AgentSettings

        return AgentSettings(mode=self.config.get("agent", "mode"),
                             max_tokens=self.config.get("agent", "max_tokens"),
                             table_rows=self.config.get("agent", "table_rows"),
                             temperature=float(self.config.get("agent", "temperature")))

    # -- runs -------------------------------------------------------------------------------------

    def eval_run_dir(self, skill_hash: str) -> Path:
        """Evaluations get their own folder beside runs/, so they never look like optimiser runs."""
        from skillgrad_tui.core.runlog import new_run_id

        base = runs_root(self.skill_path, self.config).parent / "evals"
        path = base / new_run_id(skill_hash)
        n = 1
        while path.exists():
            n += 1
            path = base / f"{new_run_id(skill_hash)}-{n}"
        return path

    def evaluate(self, skill: Any, run_dir: Path, *, sink: Callable[[Any], None],
                 cancel: CancelToken | None, split: str = "val") -> Any:
        """Score `skill` on a split; events go to `sink` and to run_dir/events.jsonl."""
        from skillgrad_tui.core.agent import Agent
        from skillgrad_tui.core.evaluate import evaluate
        from skillgrad_tui.core.events import RunStarted, ValidationScored
        from skillgrad_tui.core.runlog import RunLog

        tasks = self.tasks(split)
        agent = Agent(self.backend("task"), self.agent_settings())
        with RunLog(run_dir, create=True) as log:
            def tee(event: Any) -> None:
                log.emit(event)
                sink(event)

            tee(RunStarted(run_id=run_dir.name, skill=str(self.skill_path), suite=str(self.suite_path),
                           skill_hash=skill.hash, settings={"mode": "evaluate", "split": split, "n": len(tasks)}))
            result = evaluate(agent, skill, tasks, seed=self.seed, phase=split, step=0, sink=tee,
                              cancel=cancel, traj_dir=log.traj_dir("eval", split))
            tee(ValidationScored(step=0, skill_hash=skill.hash, score=result.accuracy, n=result.n))
        return result

    def optimize_options(self, gate: str, run_dir: Path | None, resume: Path | None = None) -> Any:
        from skillgrad_tui.core.optimizer import OptimizeOptions

        c = self.config
        return OptimizeOptions(
            batch_size=c.get("optimize", "batch_size"), steps=c.get("optimize", "steps"), seed=self.seed,
            gate=gate, momentum_decay=float(c.get("optimize", "momentum_decay")),
            early_stop=c.get("optimize", "early_stop"), l2_max_chars=c.get("optimize", "l2_max_chars"),
            candidates=c.get("optimize", "candidates"), gate_k=float(c.get("optimize", "gate_k")),
            val_repeats=c.get("optimize", "val_repeats"), parent_selection=c.get("optimize", "parent"),
            run_dir=run_dir, resume=resume, git_commit=c.get("optimize", "git_commit"))

    def optimize(self, gate: str, run_dir: Path | None, *, sink: Callable[[Any], None],
                 cancel: CancelToken | None, review: Callable[[Any], Any] | None = None,
                 resume: Path | None = None) -> Any:
        """A new run in run_dir, or (resume=...) the continuation of a stopped one, whose own
        options (gate included) then apply."""
        from skillgrad_tui.core.optimizer import optimize

        return optimize(self.skill_path, self.suite(), self.backend("task"), self.backend("optimizer"),
                        self.optimize_options(gate, run_dir, resume), agent_settings=self.agent_settings(),
                        sink=sink, cancel=cancel, review=review)

    def stopped_runs(self) -> list[Path]:
        """Run directories of this skill that stopped before finishing (newest first)."""
        import json

        root = runs_root(self.skill_path, self.config)
        found: list[Path] = []
        for run in sorted(root.iterdir(), reverse=True) if root.is_dir() else []:
            try:
                state = json.loads((run / "state.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if state.get("status") == "running" and Path(state.get("skill_root", "")) == self.skill_path:
                found.append(run)
        return found

    def close(self) -> None:
        with self._lock:
            backends, self._backends = list(self._backends.values()), {}
        if not self._owns_backends:
            return
        for b in {id(b): b for b in backends}.values():
            try:
                b.close()
            except Exception:  # closing must never stop the app from exiting
                pass


def expected_hash(request: Any, decision: Any) -> str | None:
    """The skill's hash once the optimiser applies `decision` (None if nothing would change).

    Mirrors the optimiser: accepted edits in index order, each with the person's replacement
    text, an edit that no longer applies on top of the others dropped. The app records it as its
    own write before answering, so watch mode does not mistake the patch for a user edit.
    """
    from dataclasses import replace as dc_replace

    from skillgrad_tui.core.errors import SkillgradError
    from skillgrad_tui.core.skill import apply_edits_in_memory

    skill = request.skill
    by_index = {item.index: item for item in request.items}
    edits: list[Any] = []
    for i in sorted(set(decision.accepted)):
        if i not in by_index:
            continue
        edit = by_index[i].edit
        if i in decision.replaced:
            edit = dc_replace(edit, new=decision.replaced[i])
        try:
            apply_edits_in_memory(skill, edits + [edit])
        except SkillgradError:
            continue
        edits.append(edit)
    if not edits:
        return None
    changed = apply_edits_in_memory(skill, edits)
    return dc_replace(skill, files={**skill.files, **changed}).hash


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
