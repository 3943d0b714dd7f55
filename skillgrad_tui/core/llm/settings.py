"""Typed settings for building a backend. The configuration layer fills them in (config.py);
the model layer never reads configuration files itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from skillgrad_tui.core.llm.native import RepackSetting


@dataclass(frozen=True)
class LocalModelSettings:
    """A GGUF model run by llama.cpp on this machine."""

    model: str  # a name from `skillgrad models`, or a path to a GGUF file
    models: Mapping[str, Path] = field(default_factory=dict)  # named models from the config
    n_ctx: int = 0  # 0: automatic, the model's trained context capped by memory (gguf_info.auto_n_ctx)
    n_threads: int = 0  # 0: every core this process may run on
    n_gpu_layers: int = -1
    n_batch: int = 512
    isolate: bool = True  # run it in a worker process (worker_backend.py)
    repack: RepackSetting = "auto"


@dataclass(frozen=True)
class ServerSettings:
    """An OpenAI-compatible server (llama.cpp's server, vLLM, Ollama, ...)."""

    url: str
    model: str | None = None
    api_key: str | None = None
    timeout_s: float = 120.0
    retries: int = 3
    max_concurrency: int = 4


@dataclass(frozen=True)
class BackendSettings:
    local: LocalModelSettings
    server: ServerSettings | None = None  # when set, the server answers and `local` is unused
    cache: bool = True
    cache_path: Path | None = None  # None: the user cache directory (or $SKILLGRAD_RESPONSE_CACHE)
