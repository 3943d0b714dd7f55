"""The response cache: keys, persistence, what is not stored, corruption, two processes at once."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from skillgrad_tui.core.errors import OutputInvalid
from skillgrad_tui.core.llm.base import Backend, CancelToken, Completion, CompletionRequest, Usage
from skillgrad_tui.core.llm.cache import CachedBackend, ResponseCache
from skillgrad_tui.core.llm.scripted import ScriptedBackend

REPO = Path(__file__).resolve().parents[1]
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}},
          "required": ["answer"], "additionalProperties": False}


def echo(request: CompletionRequest) -> str:
    """A reply that depends on the whole request, so a stale hit would show."""
    if request.json_schema is not None:
        return json.dumps({"answer": f"seed {request.seed}"})
    text = request.prompt or " | ".join(m.content for m in request.messages or ())
    return f"{text} / seed {request.seed} / t {request.temperature}"


@pytest.fixture
def cache(tmp_path: Path) -> ResponseCache:
    return ResponseCache(tmp_path / "responses.sqlite3")


def test_miss_then_hit_serves_the_stored_answer(cache: ResponseCache) -> None:
    inner = ScriptedBackend(echo, model_id="m1")
    backend = CachedBackend(inner, cache)
    request = CompletionRequest(prompt="What is 2+2?", max_tokens=8, seed=3)

    first = backend.complete(request)
    second = backend.complete(request)

    assert len(inner.calls) == 1
    assert first.from_cache is False and second.from_cache is True
    assert second.text == first.text == "What is 2+2? / seed 3 / t 0.0"
    assert second.usage.prompt_tokens == first.usage.prompt_tokens
    assert second.usage.completion_tokens == first.usage.completion_tokens
    assert 0 <= second.usage.seconds < 1.0  # the lookup, not the original generation
    stats = cache.stats()
    assert (stats.entries, stats.hits, stats.misses) == (1, 1, 1)


def test_entries_survive_a_new_instance(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    request = CompletionRequest.chat(("system", "be brief"), ("user", "hi"), max_tokens=4)
    CachedBackend(ScriptedBackend(echo, model_id="m"), ResponseCache(path)).complete(request)

    inner = ScriptedBackend(lambda r: "other", model_id="m")
    again = CachedBackend(inner, ResponseCache(path)).complete(request)
    assert again.from_cache and again.text == "be brief | hi / seed 0 / t 0.0"
    assert inner.calls == []


@pytest.mark.parametrize("change", ["seed", "prompt", "schema", "model", "temperature", "stop"])
def test_key_covers_everything_that_changes_the_answer(cache: ResponseCache, change: str) -> None:
    base = CompletionRequest(prompt="Name a colour.", max_tokens=8, seed=1)
    inner = ScriptedBackend(echo, model_id="model-a")
    CachedBackend(inner, cache).complete(base)

    other_model = "model-a"
    variant = base
    if change == "seed":
        variant = CompletionRequest(prompt="Name a colour.", max_tokens=8, seed=2)
    elif change == "prompt":
        variant = CompletionRequest(prompt="Name a color.", max_tokens=8, seed=1)
    elif change == "schema":
        variant = CompletionRequest(prompt="Name a colour.", max_tokens=8, seed=1, json_schema=SCHEMA)
    elif change == "temperature":
        variant = CompletionRequest(prompt="Name a colour.", max_tokens=8, seed=1, temperature=0.7)
    elif change == "stop":
        variant = CompletionRequest(prompt="Name a colour.", max_tokens=8, seed=1, stop=("\n",))
    else:
        other_model = "model-b"
    inner2 = ScriptedBackend(echo, model_id=other_model)
    result = CachedBackend(inner2, cache).complete(variant)
    assert result.from_cache is False
    assert len(inner2.calls) == 1
    assert base.key("model-a") != variant.key(other_model)
    assert cache.stats().entries == 2


def test_schema_answers_keep_their_parsed_json(cache: ResponseCache) -> None:
    backend = CachedBackend(ScriptedBackend(echo), cache)
    request = CompletionRequest(prompt="json please", json_schema=SCHEMA, seed=5)
    fresh = backend.complete(request)
    hit = backend.complete(request)
    assert hit.from_cache and hit.json == fresh.json == {"answer": "seed 5"}


@dataclass
class CancellingBackend:
    """Returns what a backend returns when the user cancels mid-generation."""

    model_id: str = "cancelling"
    n_ctx: int = 2048
    calls: list[CompletionRequest] = field(default_factory=list)

    def complete(self, request: CompletionRequest, cancel: CancelToken | None = None) -> Completion:
        self.calls.append(request)
        return Completion(text="partial ans", usage=Usage(10, 0, 2, 0.1), finish_reason="cancelled")

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass


def test_cancelled_completions_are_not_stored(cache: ResponseCache) -> None:
    inner = CancellingBackend()
    assert isinstance(inner, Backend)
    backend = CachedBackend(inner, cache)
    request = CompletionRequest(prompt="long task")
    assert backend.complete(request).finish_reason == "cancelled"
    assert backend.complete(request).finish_reason == "cancelled"
    assert len(inner.calls) == 2
    assert cache.stats().entries == 0


def test_failed_completions_are_not_stored(cache: ResponseCache) -> None:
    inner = ScriptedBackend(lambda r: "not json at all", model_id="bad")
    backend = CachedBackend(inner, cache)
    request = CompletionRequest(prompt="json please", json_schema=SCHEMA, json_attempts=2)
    with pytest.raises(OutputInvalid):
        backend.complete(request)
    with pytest.raises(OutputInvalid):
        backend.complete(request)
    assert len(inner.calls) == 4  # two attempts each time: nothing was served from the cache
    assert cache.stats().entries == 0


def test_disabled_cache_is_bypassed(cache: ResponseCache) -> None:
    inner = ScriptedBackend(echo)
    backend = CachedBackend(inner, cache, enabled=False)
    request = CompletionRequest(prompt="x")
    backend.complete(request)
    assert backend.complete(request).from_cache is False
    assert len(inner.calls) == 2
    stats = cache.stats()
    assert (stats.entries, stats.hits, stats.misses) == (0, 0, 0)


def test_complete_many_sends_only_misses_in_order(cache: ResponseCache) -> None:
    inner = ScriptedBackend(echo)
    backend = CachedBackend(inner, cache)
    requests = [CompletionRequest(prompt=f"q{i}") for i in range(4)]
    backend.complete(requests[2])
    results = backend.complete_many(requests)
    assert [r.text.split(" /")[0] for r in results] == ["q0", "q1", "q2", "q3"]
    assert [r.from_cache for r in results] == [False, False, True, False]
    assert len(inner.calls) == 4  # q2 once, then q0, q1, q3


def test_backend_protocol_passthrough(cache: ResponseCache) -> None:
    inner = ScriptedBackend(echo, model_id="sha256:abc", n_ctx=1234)
    backend = CachedBackend(inner, cache)
    assert isinstance(backend, Backend)
    assert backend.model_id == "sha256:abc" and backend.n_ctx == 1234
    assert backend.count_tokens("abcdefgh") == inner.count_tokens("abcdefgh")


def test_clear_empties_the_file(cache: ResponseCache) -> None:
    backend = CachedBackend(ScriptedBackend(echo), cache)
    for i in range(3):
        backend.complete(CompletionRequest(prompt=str(i)))
    assert cache.stats().entries == 3
    cache.clear()
    assert cache.stats().entries == 0
    assert cache.get(CompletionRequest(prompt="0").key("scripted")) is None


def test_file_is_in_wal_mode(cache: ResponseCache) -> None:
    cache.put("k", Completion(text="v", usage=Usage()))
    with sqlite3.connect(cache.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_garbage_file_is_moved_aside_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite3"
    garbage = b"\x00not a sqlite file\xff" * 300
    path.write_bytes(garbage)
    with pytest.warns(RuntimeWarning, match="responses.sqlite3.*corrupt"):
        cache = ResponseCache(path)
    aside = list(tmp_path.glob("responses.sqlite3.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    cache.put("k", Completion(text="fresh", usage=Usage(1, 0, 1, 0.0)))
    got = cache.get("k")
    assert got is not None and got.text == "fresh"
    assert cache.stats().entries == 1


def test_malformed_pages_are_detected_at_open(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite3"
    cache = ResponseCache(path)
    for i in range(200):
        cache.put(f"k{i}", Completion(text="x" * 400, usage=Usage()))
    cache.close()
    del cache
    with sqlite3.connect(path) as conn:  # fold the WAL into the main file before damaging it
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    for offset in range(4096, len(data), 4096):  # keep the header, scribble on every page
        data[offset:offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="malformed"):
        fresh = ResponseCache(path)
    assert fresh.stats().entries == 0
    assert list(tmp_path.glob("responses.sqlite3.corrupt-*"))


def test_many_threads_share_one_instance(cache: ResponseCache) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(50):
                cache.put(f"t{t}-{i}", Completion(text=f"{t}/{i}", usage=Usage()))
                assert cache.get(f"t{t}-{i}") is not None
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert cache.stats().entries == 300


_WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from skillgrad_tui.core.llm.base import Completion, Usage
    from skillgrad_tui.core.llm.cache import ResponseCache

    path, name, other, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    cache = ResponseCache(path)
    # Lockstep: after writing entry i each waits until the other's entry i is visible, so
    # the two really interleave however the OS schedules them, and each sees the other's writes.
    for i in range(n):
        cache.put(f"{name}-{i}", Completion(text=f"{name} {i}", usage=Usage(i, 0, 1, 0.0)))
        deadline = time.monotonic() + 60
        while cache.get(f"{other}-{i}") is None:
            if time.monotonic() > deadline:
                sys.exit(f"never saw {other}-{i}")
            time.sleep(0.0005)
        got = cache.get(f"{name}-{i}")
        assert got is not None and got.text == f"{name} {i}", got
    print("done")
""")


def test_two_processes_write_and_read_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    n = 300
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(path), me, other, str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for me, other in (("a", "b"), ("b", "a"))]
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "Error" not in err and "Warning" not in err, err
        assert out.strip() == "done"
    cache = ResponseCache(path)
    assert cache.stats().entries == 2 * n
    for name in "ab":
        for i in range(n):
            got = cache.get(f"{name}-{i}")
            assert got is not None and got.text == f"{name} {i}" and got.usage.prompt_tokens == i


def test_response_cache_location_can_be_set_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from skillgrad_tui.core.llm.cache import CACHE_ENV, default_cache_path

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "ci.sqlite3"))
    assert default_cache_path() == tmp_path / "ci.sqlite3"
    assert ResponseCache().path == tmp_path / "ci.sqlite3"
    monkeypatch.delenv(CACHE_ENV)
    assert default_cache_path().name == "responses.sqlite3" and tmp_path not in default_cache_path().parents
