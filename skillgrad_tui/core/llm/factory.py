"""Build the backend a command asked for: config + `--model` + `--no-cache` -> a Backend."""

from __future__ import annotations

import os

from skillgrad_tui.config import Config
from skillgrad_tui.core.llm.base import Backend
from skillgrad_tui.core.llm.models import ModelInfo, resolve


def resolve_model(config: Config, spec: str | None = None, role: str = "task") -> ModelInfo:
    """`--model` wins, then [model] optimizer (for optimiser roles), then [model] default."""
    if spec is None and role == "optimizer":
        spec = config.get("model", "optimizer") or None
    return resolve(spec or config.get("model", "default"), config.models)


def make_backend(config: Config, spec: str | None = None, *, use_cache: bool = True,
                 role: str = "task") -> Backend:
    from skillgrad_tui.core.llm.cache import CachedBackend, ResponseCache

    backend: Backend
    url = config.get("server", "url")
    if url:
        from skillgrad_tui.core.llm.http_backend import HttpBackend

        key_env = config.get("server", "api_key_env")
        backend = HttpBackend(url, spec or config.get("server", "model") or None,
                              api_key=os.environ.get(key_env) if key_env else None,
                              timeout_s=float(config.get("server", "timeout_s")),
                              retries=config.get("server", "retries"),
                              max_concurrency=config.get("server", "max_concurrency"))
    else:
        info = resolve_model(config, spec, role)
        settings = dict(model_id=f"sha256:{info.sha256}", n_ctx=config.get("model", "n_ctx"),
                        n_threads=config.get("model", "n_threads"),
                        n_gpu_layers=config.get("model", "n_gpu_layers"),
                        n_batch=config.get("model", "n_batch"), repack=config.get("model", "repack"))
        if config.get("model", "isolate"):
            from skillgrad_tui.core.llm.worker_backend import WorkerBackend

            backend = WorkerBackend(info.path, label=info.name, **settings)
        else:
            from skillgrad_tui.core.llm.llama_backend import LlamaBackend

            backend = LlamaBackend(info.path, **settings)
    cache_path = config.get("cache", "path")
    cache = ResponseCache(config.resolve_path(cache_path) if cache_path else None)
    return CachedBackend(backend, cache, enabled=use_cache and bool(config.get("cache", "enabled")))
