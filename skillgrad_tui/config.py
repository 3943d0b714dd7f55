"""skillgrad.toml: looked up beside the skill, then in the user config directory.

Read with tomllib and written with tomli-w. Every key is declared in SCHEMA below, so an unknown
key or a value of the wrong type is an error that names the key and the file, not a surprise later.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import platformdirs
import tomli_w

from skillgrad_tui.core.errors import ConfigError
from skillgrad_tui.core.gate import GATES
from skillgrad_tui.core.runlog import RUNS_SUBDIR

if TYPE_CHECKING:
    from skillgrad_tui.core.engine import Backend
    from skillgrad_tui.core.llm.settings import BackendSettings
    from skillgrad_tui.core.service import BackendFactory, EngineSettings

CONFIG_NAME = "skillgrad.toml"
# Set by the command line for this invocation (cli.main): flags every command shares, such as --n-ctx.
CLI_OVERRIDES: dict[str, Any] = {}


def parse_n_ctx(raw: str) -> int:
    """--n-ctx: a number of tokens (>= 256), or 0 / "auto" for the model's context capped by memory."""
    import argparse

    if raw.strip().lower() == "auto":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of tokens or 'auto': {raw!r}") from None
    if value != 0 and value < 256:
        raise argparse.ArgumentTypeError(f"must be 0, 'auto' or >= 256, got {value}")
    return value


@dataclass(frozen=True)
class Key:
    type: type | tuple[type, ...]
    default: Any
    check: Callable[[Any], str | None] | None = None  # returns a complaint, or None if fine
    doc: str = ""


def _at_least(n: int | float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= n else f"must be >= {n}"


def _between(lo: float, hi: float) -> Callable[[Any], str | None]:
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


SCHEMA: dict[str, dict[str, Key]] = {
    "model": {
        "default": Key(str, "gemma3-270m", doc="model name from `skillgrad models`, or a GGUF path"),
        "optimizer": Key(str, "", doc="model for diagnoser, momentum and patcher; empty = default"),
        "n_ctx": Key((int, str), 0, lambda v: None if v in (0, "auto") or (isinstance(v, int) and v >= 256)
                     else "must be 0 or \"auto\" (the model's context, capped by memory) or >= 256",
                     doc='0 or "auto" = the model\'s trained context, capped by available memory'),
        "n_threads": Key(int, 0, _at_least(0), doc="0 = all physical cores"),
        "n_gpu_layers": Key(int, -1, _at_least(-1), doc="-1 = all layers when a GPU build finds a GPU"),
        "n_batch": Key(int, 512, _at_least(1)),
        "isolate": Key(bool, True, doc="run the model in a worker process, so that a crash in llama.cpp "
                                       "is an error in the run, not the end of the app"),
        "repack": Key(str, "auto", _one_of("auto", "on", "off"),
                      doc="llama.cpp weight repacking; auto = off only where its AMX path would crash"),
    },
    "models": {},  # free-form: name = "path/to/model.gguf"
    "server": {
        "url": Key(str, "", doc="OpenAI-compatible server; empty = in-process llama.cpp"),
        "model": Key(str, ""),
        "api_key_env": Key(str, "", doc="environment variable holding the API key"),
        "timeout_s": Key((int, float), 120.0, _at_least(1)),
        "retries": Key(int, 3, _at_least(0)),
        "max_concurrency": Key(int, 4, _at_least(1)),
    },
    "cache": {
        "enabled": Key(bool, True),
        "path": Key(str, "", doc="SQLite file; empty = user cache directory"),
    },
    "run": {
        "dir": Key(str, str(RUNS_SUBDIR), doc="run directories, relative to the skill's parent"),
        "seed": Key(int, 0),
    },
    "suite": {
        "path": Key(str, "", doc="default task suite, relative to this file"),
        "split": Key(str, ""),
    },
    "agent": {
        "max_tokens": Key(int, 48, _at_least(1)),
        "table_rows": Key(int, 40, _at_least(1)),
        "mode": Key(str, "inline", _one_of("inline", "tools")),
        "temperature": Key((int, float), 0.0, _between(0.0, 2.0),
                           doc="task model sampling; above 0 the gate repeats validation over seeds"),
    },
    "optimize": {
        "batch_size": Key(int, 4, _at_least(1)),
        "steps": Key(int, 10, _at_least(1)),
        "gate": Key(str, "validation", _one_of(*GATES)),
        "momentum_decay": Key((int, float), 0.8, _between(0.0, 1.0)),
        "early_stop": Key(int, 4, _at_least(1)),
        "l2_max_chars": Key(int, 6000, _at_least(200)),
        "candidates": Key(int, 3, _at_least(1), doc="candidate skills proposed per step"),
        "gate_k": Key((int, float), 1.0, _at_least(0),
                      doc="keep a candidate only when its paired validation gain exceeds k standard errors"),
        "val_repeats": Key(int, 0, _at_least(0),
                           doc="validation runs per task; 0 = 1 for a greedy model, 3 when it samples"),
        "parent": Key(str, "current", _one_of("current", "pareto"),
                      doc="the version each step improves: the current one, or one from the Pareto frontier"),
        "git_commit": Key(bool, False, doc="commit each applied version when the skill is in a git work tree"),
    },
}


@dataclass
class Config:
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: Path | None = None  # the file it came from, None for pure defaults

    def get(self, section: str, key: str) -> Any:
        return self.values.get(section, {}).get(key, SCHEMA[section][key].default)

    def set(self, section: str, key: str, value: Any) -> None:
        _check_value(section, key, value, self.source or Path(CONFIG_NAME))
        self.values.setdefault(section, {})[key] = value

    @property
    def models(self) -> dict[str, Path]:
        """Named model paths, resolved relative to the config file."""
        base = self.source.parent if self.source else Path.cwd()
        return {name: (base / p).expanduser() for name, p in self.values.get("models", {}).items()}

    def resolve_path(self, raw: str) -> Path:
        base = self.source.parent if self.source else Path.cwd()
        return (base / raw).expanduser()

    def n_ctx(self) -> int:
        """`--n-ctx` wins over `[model] n_ctx`; 0 means automatic."""
        value = CLI_OVERRIDES.get("n_ctx", self.get("model", "n_ctx"))
        return 0 if value == "auto" else int(value)

    def backend_settings(self, spec: str | None = None, *, role: str = "task",
                         use_cache: bool = True) -> BackendSettings:
        """What the model layer needs to build a backend for `role` ("task" | "optimizer").

        `--model` (spec) wins, then `[model] optimizer` for the optimiser's roles, then
        `[model] default`; `[server] url`, when set, replaces the local model.
        """
        import os

        from skillgrad_tui.core.llm.settings import BackendSettings, LocalModelSettings, ServerSettings

        if spec is None and role == "optimizer":
            spec = self.get("model", "optimizer") or None
        local = LocalModelSettings(
            model=spec or self.get("model", "default"), models=self.models, n_ctx=self.n_ctx(),
            n_threads=self.get("model", "n_threads"), n_gpu_layers=self.get("model", "n_gpu_layers"),
            n_batch=self.get("model", "n_batch"), isolate=self.get("model", "isolate"),
            repack=self.get("model", "repack"))
        server = None
        url = self.get("server", "url")
        if url:
            key_env = self.get("server", "api_key_env")
            server = ServerSettings(url=url, model=spec or self.get("server", "model") or None,
                                    api_key=os.environ.get(key_env) if key_env else None,
                                    timeout_s=float(self.get("server", "timeout_s")),
                                    retries=self.get("server", "retries"),
                                    max_concurrency=self.get("server", "max_concurrency"))
        cache_path = self.get("cache", "path")
        return BackendSettings(local=local, server=server, cache=use_cache and bool(self.get("cache", "enabled")),
                               cache_path=self.resolve_path(cache_path) if cache_path else None)


    def explicit(self, section: str, key: str) -> Any:
        """A value the file sets, else None (so that a schema default does not override a caller's)."""
        return self.values.get(section, {}).get(key)

    def engine_settings(self) -> EngineSettings:
        """The typed settings the engine API (core/service.py) takes; core never reads this file."""
        from skillgrad_tui.core.service import AgentDefaults, EngineSettings, ModelFacts, OptimizeDefaults

        suite = self.get("suite", "path")
        return EngineSettings(
            seed=self.get("run", "seed"), runs_dir=self.get("run", "dir"),
            suite_path=self.resolve_path(suite) if suite else None, suite_split=self.get("suite", "split") or None,
            agent=AgentDefaults(mode=self.get("agent", "mode"), max_tokens=self.get("agent", "max_tokens"),
                                table_rows=self.get("agent", "table_rows"),
                                temperature=float(self.get("agent", "temperature"))),
            optimize=OptimizeDefaults(
                steps=self.explicit("optimize", "steps"), default_steps=SCHEMA["optimize"]["steps"].default,
                batch_size=self.get("optimize", "batch_size"),
                gate=self.get("optimize", "gate"), momentum_decay=float(self.get("optimize", "momentum_decay")),
                early_stop=self.get("optimize", "early_stop"), l2_max_chars=self.get("optimize", "l2_max_chars"),
                candidates=self.get("optimize", "candidates"), gate_k=float(self.get("optimize", "gate_k")),
                val_repeats=self.get("optimize", "val_repeats"), parent=self.get("optimize", "parent"),
                git_commit=bool(self.get("optimize", "git_commit"))),
            models=ModelFacts(default=self.get("model", "default"), server_url=self.get("server", "url"),
                              server_model=self.get("server", "model"),
                              n_gpu_layers=self.get("model", "n_gpu_layers"), repack=self.get("model", "repack")))


def backend_factory(config: Config, model: str | None = None, no_cache: bool = False, *,
                    optimizer_model: str | None = None,
                    make: Callable[[BackendSettings], Backend] | None = None) -> BackendFactory:
    """The real backends for the engine, by role: `--model` for the task; for the optimiser
    `--optimizer-model`, else `[model] optimizer`, else the task's model. Roles that resolve to
    the same model share one instance (the factory's `key`), so one loaded model serves both.
    `make` builds a backend from its settings (default core.engine.make_backend)."""

    def spec(role: str) -> str | None:
        if role == "optimizer":
            return optimizer_model or (None if config.get("model", "optimizer") else model)
        return model

    def factory(role: str) -> Backend:
        from skillgrad_tui.core.engine import make_backend

        return (make or make_backend)(config.backend_settings(spec(role), role=role, use_cache=not no_cache))

    def key(role: str) -> str:
        from skillgrad_tui.core.engine import backend_identity

        return backend_identity(config.backend_settings(spec(role), role=role))

    factory.key = key  # type: ignore[attr-defined]
    return factory


def user_config_path() -> Path:
    return platformdirs.user_config_path("skillgrad") / CONFIG_NAME


def find_config(skill_dir: Path | None = None) -> Path | None:
    """Beside the skill (its parent folder) first, then the user config directory."""
    candidates = []
    if skill_dir is not None:
        candidates.append(Path(skill_dir).resolve().parent / CONFIG_NAME)
    candidates.append(user_config_path())
    return next((c for c in candidates if c.is_file()), None)


def load_config(skill_dir: Path | None = None, explicit: Path | None = None) -> Config:
    path = Path(explicit) if explicit is not None else find_config(skill_dir)
    if path is None:
        return Config()
    if not path.is_file():
        raise ConfigError("config file not found", path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        raise ConfigError(f"TOML does not parse: {exc}", path, line) from None
    return Config(values=validate(raw, path), source=path)


def validate(raw: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section, body in raw.items():
        if section not in SCHEMA:
            raise ConfigError(f"unknown section [{section}] (known: {', '.join(SCHEMA)})", path)
        if not isinstance(body, dict):
            raise ConfigError(f"'{section}' must be a table ([{section}])", path)
        if section == "models":
            for name, p in body.items():
                if not isinstance(p, str):
                    raise ConfigError(f"models.{name} must be a path string", path)
            out[section] = dict(body)
            continue
        for key, value in body.items():
            _check_value(section, key, value, path)
        out[section] = dict(body)
    return out


def _check_value(section: str, key: str, value: Any, path: Path) -> None:
    spec = SCHEMA.get(section, {}).get(key)
    if spec is None:
        known = ", ".join(SCHEMA.get(section, {})) or "none"
        raise ConfigError(f"unknown key '{section}.{key}' (known in [{section}]: {known})", path)
    # bool is an int in Python; do not let `n_ctx = true` through.
    if isinstance(value, bool) and spec.type is not bool:
        raise ConfigError(f"'{section}.{key}' must be {_type_name(spec.type)}, got a boolean", path)
    if not isinstance(value, spec.type):
        raise ConfigError(f"'{section}.{key}' must be {_type_name(spec.type)}, got {value!r}", path)
    if spec.check is not None and (why := spec.check(value)):
        raise ConfigError(f"'{section}.{key}' {why}, got {value!r}", path)


def _type_name(t: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if isinstance(t, tuple):
        return "a number"
    return names.get(t, t.__name__)


def _toml_error_line(message: str) -> int | None:
    import re

    m = re.search(r"line (\d+)", message)
    return int(m.group(1)) if m else None


def save_config(config: Config, path: Path) -> None:
    """Write atomically: a half-written config would be worse than none."""
    from skillgrad_tui.core.file_write import write_file_atomically

    validate(config.values, path)
    write_file_atomically(path, tomli_w.dumps(config.values).encode("utf-8"))


def commented_config() -> str:
    """A skillgrad.toml that documents every key and changes nothing: each key commented out at its
    default, so that a later default still applies until the user uncomments a line."""
    lines = ["# skillgrad.toml: SkillGrad's settings, read beside the skill (in its parent folder), then from",
             f"# {user_config_path()}. Uncomment a line to change it; command-line flags win over this file.", ""]
    for section, keys in SCHEMA.items():
        lines.append(f"[{section}]")
        if section == "models":
            lines += ["# Your own GGUF files by name, for --model NAME and [model] default:",
                      '# my-model = "~/models/my-model.Q4_K_M.gguf"']
        for name, key in keys.items():
            if key.doc:
                lines.append(f"# {key.doc}")
            lines.append("# " + tomli_w.dumps({name: key.default}).strip())
        lines.append("")
    return "\n".join(lines)
