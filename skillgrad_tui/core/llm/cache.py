"""A persistent response cache, and a Backend wrapper that consults it.

The key is `CompletionRequest.key(model_id)`: a hash of the model identity and everything that
determines the answer (messages or prompt, sampling parameters, seed, stop strings, schema), so a
hit is the answer the model would give again. Values are `Completion.to_dict()` as JSON.

SQLite in WAL mode lets the CLI, the app and a second run share one file: readers never block,
writers queue behind `busy_timeout`, and every call is its own short transaction. A corrupt file is
a cache, not data: it is moved aside (kept for inspection) and a fresh one is started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import platformdirs

from skillgrad_tui.core.llm.base import Backend, Batched, CancelToken, Completion, CompletionRequest, WrappedBackend

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_BUSY_TIMEOUT_MS = 10_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key     TEXT PRIMARY KEY,
    value   TEXT NOT NULL,
    created REAL NOT NULL
)
"""
# sqlite3 reports these two result codes for a file that is not (or no longer) a database.
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


CACHE_ENV = "SKILLGRAD_RESPONSE_CACHE"


def default_cache_path() -> Path:
    """The user cache dir's file, unless $SKILLGRAD_RESPONSE_CACHE names another: CI and the
    test suite point it at a fresh file so that model tests run the model, not a warm cache."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return platformdirs.user_cache_path("skillgrad") / "responses.sqlite3"


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """True for a damaged file; False for transient trouble (locked, busy, disk I/O)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    # OperationalError covers "database is locked" and friends: never a reason to discard a file.
    return not isinstance(exc, sqlite3.OperationalError)


@dataclass(frozen=True)
class CacheStats:
    entries: int
    hits: int  # lookups answered by this instance since it was created
    misses: int


class ResponseCache:
    """Completions keyed by request hash, in one SQLite file shared safely across processes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self._local = threading.local()
        self._lock = threading.Lock()  # guards the counters and recovery within this process
        self._hits = 0
        self._misses = 0
        self._generation = 0  # bumped on recovery so other threads reopen their connections
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._open_checked()

    # --- connections ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit, so each statement is its own short transaction and
        # no connection sits on a lock between calls.
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=True)
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            self._set_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable enough for a cache
            conn.execute(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _set_wal(conn: sqlite3.Connection) -> None:
        # Switching a brand-new file to WAL needs a write lock and can report "locked" without
        # waiting when another process is doing the same at that instant; retry briefly.
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL").fetchone()
                return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _open_checked(self) -> None:
        """Open (creating if needed) and probe the file; move it aside if it is damaged."""
        try:
            self._probe()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            self._move_aside(exc)
            self._probe()

    def _probe(self) -> None:
        conn = self._connect()
        try:
            # Walks the table's b-tree, so a damaged page shows up now rather than mid-run.
            conn.execute("SELECT count(*) FROM responses").fetchone()
        finally:
            conn.close()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "generation", -1) != self._generation:
            if conn is not None:
                conn.close()
            conn = self._connect()
            self._local.conn = conn
            self._local.generation = self._generation
        return conn

    @contextlib.contextmanager
    def _recovering(self) -> Iterator[None]:
        """Run a statement; if the file turned out corrupt, rebuild it once and let the caller retry."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            with self._lock:
                self._drop_thread_conn()
                # Another thread may have rebuilt it already; only move it aside if still bad.
                try:
                    self._probe()
                except sqlite3.DatabaseError as again:
                    if not _is_corruption(again):
                        raise
                    self._move_aside(again)
                self._generation += 1
            raise _Recovered() from exc

    def _drop_thread_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _move_aside(self, exc: BaseException) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            pass  # another process moved it first
        # A WAL left beside a replaced file must not be replayed into the fresh one.
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            with contextlib.suppress(FileNotFoundError):
                os.replace(side, aside.with_name(aside.name + suffix))
        message = (f"{self.path}: response cache is corrupt ({exc}); moved it to {aside.name} "
                   "and started an empty cache")
        log.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)

    # --- public API -----------------------------------------------------------------------

    def get(self, key: str) -> Completion | None:
        row = self._run(lambda c: c.execute("SELECT value FROM responses WHERE key = ?",
                                            (key,)).fetchone())
        with self._lock:
            if row is None:
                self._misses += 1
                return None
            self._hits += 1
        completion = Completion.from_dict(json.loads(row[0]))
        completion.from_cache = True
        return completion

    def put(self, key: str, completion: Completion) -> None:
        value = json.dumps(completion.to_dict(), ensure_ascii=False)
        self._run(lambda c: c.execute(
            "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
            (key, value, time.time())))

    def stats(self) -> CacheStats:
        row = self._run(lambda c: c.execute("SELECT count(*) FROM responses").fetchone())
        with self._lock:
            return CacheStats(entries=int(row[0]), hits=self._hits, misses=self._misses)

    def clear(self) -> None:
        self._run(lambda c: c.execute("DELETE FROM responses"))
        with self._lock:
            self._hits = self._misses = 0

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        self._drop_thread_conn()

    def _run(self, statement: Callable[[sqlite3.Connection], _T]) -> _T:
        for attempt in (0, 1):
            try:
                with self._recovering():
                    return statement(self._conn())
            except _Recovered:
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


class _Recovered(Exception):
    """Internal: the file was rebuilt under a statement; run it again on the fresh file."""


class CachedBackend(WrappedBackend):
    """Any Backend, answering from the response cache first. `enabled=False` bypasses it."""

    def __init__(self, inner: Backend, cache: ResponseCache, *, enabled: bool = True) -> None:
        super().__init__(inner)
        self.cache = cache
        self.enabled = enabled

    def complete(self, request: CompletionRequest, cancel: CancelToken | None = None) -> Completion:
        if not self.enabled:
            return self.inner.complete(request, cancel)
        key = request.key(self.inner.model_id)
        hit = self._lookup(key)
        if hit is not None:
            return hit
        completion = self.inner.complete(request, cancel)
        self._store(key, completion)
        return completion

    def complete_many(self, requests: list[CompletionRequest],
                      cancel: CancelToken | None = None) -> list[Completion]:
        """Answer hits from the cache and send only the misses to the model (order kept)."""
        inner_many = self.inner.complete_many if isinstance(self.inner, Batched) else None
        if not self.enabled:
            if inner_many is not None:
                return list(inner_many(requests, cancel))
            return [self.inner.complete(r, cancel) for r in requests]
        keys = [r.key(self.inner.model_id) for r in requests]
        results: list[Completion | None] = [self._lookup(k) for k in keys]
        missing = [i for i, c in enumerate(results) if c is None]
        if missing:
            todo = [requests[i] for i in missing]
            fresh = (list(inner_many(todo, cancel)) if inner_many is not None
                     else [self.inner.complete(r, cancel) for r in todo])
            for i, completion in zip(missing, fresh):
                self._store(keys[i], completion)
                results[i] = completion
        return [c for c in results if c is not None]

    def close(self) -> None:
        super().close()
        self.cache.close()

    def _lookup(self, key: str) -> Completion | None:
        start = time.perf_counter()
        hit = self.cache.get(key)
        if hit is None:
            return None
        # Report what this answer cost now (a lookup), not what it cost when it was computed.
        hit.usage = replace(hit.usage, seconds=time.perf_counter() - start)
        return hit

    def _store(self, key: str, completion: Completion) -> None:
        # A cancelled answer is partial: serving it later would replay an interruption.
        if completion.finish_reason != "cancelled" and not completion.from_cache:
            self.cache.put(key, completion)
