"""Build the backend that typed settings describe: a local model (in a worker process or in this
one) or a server, wrapped in the response cache."""

from __future__ import annotations

from skillgrad_tui.core.llm.base import Backend
from skillgrad_tui.core.llm.gguf_info import auto_n_ctx, read_gguf_info
from skillgrad_tui.core.llm.models import ModelInfo, resolve
from skillgrad_tui.core.llm.settings import BackendSettings


def resolve_model(settings: BackendSettings) -> ModelInfo:
    return resolve(settings.local.model, dict(settings.local.models))


def backend_identity(settings: BackendSettings) -> str:
    """Equal for settings that would load the same weights, so that roles can share one backend."""
    if settings.server is not None:
        return f"server:{settings.server.url}:{settings.server.model or ''}"
    return f"local:{resolve_model(settings).path}"


def describe_model(settings: BackendSettings) -> dict[str, str | None]:
    """The model by name, for people and JSON (`model_id` is a hash, made for the cache)."""
    if settings.server is not None:
        return {"name": settings.server.model or "the server's default model", "server": settings.server.url,
                "path": None}
    info = resolve_model(settings)
    return {"name": info.name, "server": None, "path": str(info.path)}


def make_backend(settings: BackendSettings) -> Backend:
    from skillgrad_tui.core.llm.cache import CachedBackend, ResponseCache

    backend: Backend
    if settings.server is not None:
        from skillgrad_tui.core.llm.http_backend import HttpBackend

        s = settings.server
        backend = HttpBackend(s.url, s.model, api_key=s.api_key, timeout_s=s.timeout_s, retries=s.retries,
                              max_concurrency=s.max_concurrency)
    else:
        local = settings.local
        info = resolve_model(settings)
        n_ctx = local.n_ctx if local.n_ctx > 0 else auto_n_ctx(read_gguf_info(info.path))
        options = dict(model_id=f"sha256:{info.sha256}", n_ctx=n_ctx, n_threads=local.n_threads,
                       n_gpu_layers=local.n_gpu_layers, n_batch=local.n_batch, repack=local.repack)
        if local.isolate:
            from skillgrad_tui.core.llm.worker_backend import WorkerBackend

            backend = WorkerBackend(info.path, label=info.name, **options)  # type: ignore[arg-type]
        else:
            from skillgrad_tui.core.llm.llama_backend import LlamaBackend

            backend = LlamaBackend(info.path, **options)  # type: ignore[arg-type]
    return CachedBackend(backend, ResponseCache(settings.cache_path), enabled=settings.cache)
