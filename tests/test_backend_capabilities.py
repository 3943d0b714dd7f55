"""What a backend offers beyond `Backend` is found by Protocol (core/llm/base.py), through wrappers."""

from __future__ import annotations

from pathlib import Path

from skillgrad_tui.core.llm.base import (Backend, Batched, CancelToken, Completion, CompletionRequest, Concurrent,
                                         Probed, WrappedBackend, concurrency_limit)
from skillgrad_tui.core.llm.cache import CachedBackend, ResponseCache
from skillgrad_tui.core.llm.http_backend import HttpBackend
from skillgrad_tui.core.llm.scripted import ScriptedBackend


class _Passthrough(WrappedBackend):
    def complete(self, request: CompletionRequest, cancel: CancelToken | None = None) -> Completion:
        return self.inner.complete(request, cancel)


class _DeadServer(ScriptedBackend):
    """Says it runs four at once, but its server cannot be reached."""

    def probe(self) -> None:
        raise ConnectionError("no server")


def test_the_http_backend_offers_every_capability_and_the_scripted_one_only_concurrency() -> None:
    http = HttpBackend("http://127.0.0.1:9")  # never contacted: nothing here sends a request
    try:
        # Checking these reads no property: isinstance(http, Backend) would read n_ctx, which asks
        # the server. So the capability checks cost nothing before the probe.
        assert isinstance(http, Probed) and isinstance(http, Concurrent) and isinstance(http, Batched)
    finally:
        http.close()
    scripted = ScriptedBackend(lambda r: "ok")
    assert isinstance(scripted, Concurrent) and isinstance(scripted, Backend)
    assert not isinstance(scripted, Probed) and not isinstance(scripted, Batched)


def test_concurrency_is_read_through_wrappers_and_a_failed_probe_means_one() -> None:
    assert concurrency_limit(_Passthrough(_Passthrough(ScriptedBackend(lambda r: "ok", concurrency=3)))) == 3
    assert concurrency_limit(ScriptedBackend(lambda r: "ok", concurrency=0)) == 1  # nonsense: one at a time
    assert concurrency_limit(_Passthrough(_DeadServer(lambda r: "ok", concurrency=4))) == 1


class _Batching(ScriptedBackend):
    """Records the batches it was given."""

    def __init__(self) -> None:
        super().__init__(lambda r: f"answer to {r.prompt}")
        self.batches: list[int] = []

    def complete_many(self, requests: list[CompletionRequest],
                      cancel: CancelToken | None = None) -> list[Completion]:
        self.batches.append(len(requests))
        return [self.complete(r, cancel) for r in requests]


def test_the_cache_sends_its_misses_as_one_batch_to_a_batched_backend_and_one_by_one_otherwise(
        tmp_path: Path) -> None:
    requests = [CompletionRequest(prompt=p) for p in ("a", "b", "c")]
    batching = _Batching()
    assert isinstance(batching, Batched)
    texts = [c.text for c in CachedBackend(batching, ResponseCache(tmp_path / "one.sqlite3")).complete_many(requests)]
    assert texts == ["answer to a", "answer to b", "answer to c"] and batching.batches == [3]
    plain = ScriptedBackend(lambda r: f"answer to {r.prompt}")
    texts = [c.text for c in CachedBackend(plain, ResponseCache(tmp_path / "two.sqlite3")).complete_many(requests)]
    assert texts == ["answer to a", "answer to b", "answer to c"] and len(plain.calls) == 3
