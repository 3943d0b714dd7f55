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
    from skillgrad_tui.core.llm.settings import BackendSettings

__all__ = ["Backend", "CancelToken", "CompletionRequest", "ModelChoice", "backend_identity", "describe_model",
           "local_device", "make_backend", "model_choices", "scripted_backend"]


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


def local_device(n_gpu_layers: int) -> str:
    """Where an in-process model runs: "GPU" when llama.cpp can offload and layers may go there."""
    from skillgrad_tui.core.llm.llama_backend import gpu_offload_available

    try:
        gpu = gpu_offload_available()
    except Exception:  # llama.cpp missing or broken: nothing runs on a GPU then
        gpu = False
    return "GPU" if gpu and n_gpu_layers != 0 else "CPU"
