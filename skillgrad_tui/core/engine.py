"""What the app and the CLI use of the model layer, so that neither imports a backend itself.

The app (tui/) never imports `core.llm` (an import-linter contract in pyproject.toml): it gets
cancel tokens, the handle type of a model, and model facts from here. The scripted model is here
too, for the app's tests, benchmark and screenshots, which drive the real code paths with it.

The factory and the scripted model are imported on first use, as the app did before, so that the
app's first frame does not wait for them (jsonschema, GGUF readers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skillgrad_tui.core.llm.base import Backend, CancelToken, CompletionRequest

if TYPE_CHECKING:
    from skillgrad_tui.core.llm.models import ModelInfo
    from skillgrad_tui.core.llm.native import RepackSetting
    from skillgrad_tui.core.llm.settings import BackendSettings

__all__ = ["Backend", "CancelToken", "CompletionRequest", "ModelChoice", "backend_identity", "describe_model",
           "RuntimeFacts", "discover_models", "make_backend", "model_choices", "runtime_facts", "scripted_backend"]


def make_backend(settings: BackendSettings) -> Backend:
    """The backend `settings` describe (a local model or a server), behind the response cache."""
    from skillgrad_tui.core.llm.factory import make_backend as make

    return make(settings)


def backend_identity(settings: BackendSettings) -> str:
    """Equal for settings that load the same weights, so that roles can share one backend."""
    from skillgrad_tui.core.llm.factory import backend_identity as identity

    return identity(settings)


def describe_model(settings: BackendSettings) -> dict[str, str | None]:
    """The model by name, its server and its file, for people and JSON."""
    from skillgrad_tui.core.llm.factory import describe_model as describe

    return describe(settings)


def scripted_backend(respond: Callable[[CompletionRequest], str]) -> Backend:
    """A deterministic backend answering `respond(request)` (tests, benchmarks, screenshots)."""
    from skillgrad_tui.core.llm.scripted import ScriptedBackend

    return ScriptedBackend(respond)


@dataclass(frozen=True)
class ModelChoice:
    """A model the app can switch to, as `skillgrad models` lists it."""

    name: str
    source: str  # "embedded (...)", "models/", "config"
    error: str | None = None  # why it cannot be used (missing file, ...)


def model_choices(config_models: dict[str, Path] | None = None) -> list[ModelChoice]:
    """The models found (embedded, models/, `[models]` of the config), without hashing their files
    (a picker must not read gigabytes)."""
    from skillgrad_tui.core.llm.models import discover

    return [ModelChoice(m.name, m.source, m.error) for m in discover(config_models, hash_files=False)]


def discover_models(config_models: dict[str, Path] | None, extra: list[Path]) -> list[ModelInfo]:
    """Every model `skillgrad models` lists, hashed and checked (embedded, models/, config, paths)."""
    from skillgrad_tui.core.llm.models import discover

    return discover(config_models, extra)


@dataclass(frozen=True)
class RuntimeFacts:
    """Where models will run and why, worked out once for the app's header and `skillgrad models`."""

    device: str  # "server" | "GPU" | "CPU"
    why: str
    repack: bool  # llama.cpp's repacked weight buffers in use
    repack_reason: str


def runtime_facts(server_url: str, n_gpu_layers: int, repack: RepackSetting = "auto") -> RuntimeFacts:
    """The device a run uses: the server when one is set, else the GPU when llama.cpp was built
    with offload and layers may go there, else the CPU (with its vector extensions named)."""
    from skillgrad_tui.core.llm.native import cpu_summary, repack_decision

    decision = repack_decision(repack)
    if server_url:
        return RuntimeFacts("server", f"[server] url = {server_url}", decision.use_extra_bufts, decision.reason)
    try:
        from skillgrad_tui.core.llm.llama_backend import gpu_offload_available

        gpu = gpu_offload_available()
    except Exception:  # llama.cpp missing or broken: nothing runs on a GPU then
        gpu = False
    if gpu and n_gpu_layers != 0:
        why = f"llama.cpp built with GPU offload, n_gpu_layers = {n_gpu_layers}"
        return RuntimeFacts("GPU", why, decision.use_extra_bufts, decision.reason)
    cpu = cpu_summary()
    flags = " ".join(cpu["flags"]) or "no vector extensions"  # type: ignore[arg-type]
    why = "llama.cpp built for the CPU only" if not gpu else "n_gpu_layers = 0"
    why += f" ({cpu['model'] or 'CPU'}: {flags})"
    return RuntimeFacts("CPU", why, decision.use_extra_bufts, decision.reason)


