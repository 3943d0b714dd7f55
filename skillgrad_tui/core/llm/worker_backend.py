"""A Backend whose model runs in a worker process (worker_process.py), so that a native crash in
llama.cpp is an error in the caller, never the end of the app.

What the in-process backend gives stays: the KV cache lives in the worker, so a shared prompt
prefix is evaluated once; cancellation reaches the worker's generation loop between two tokens
(the caller's token is watched while waiting for the reply); usage and finish reasons come back
unchanged; the response cache wraps this backend like any other.

When the worker dies (segfault, abort, out-of-memory kill, `kill -9`), the request in flight
raises `ModelCrashed` naming the signal, the model and the request, with the worker's last words
from stderr. The next request starts a fresh worker.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from skillgrad_tui.core.llm.errors import ModelCrashed
from skillgrad_tui.core.llm.base import CancelToken, Completion, CompletionRequest
from skillgrad_tui.core.llm.native import RepackSetting
from skillgrad_tui.core.llm.wire import FrameReader, StreamClosed, error_from_wire, write_frame

CANCEL_POLL_S = 0.01  # how often the caller's cancel token is looked at while the worker generates
_STDERR_LINES = 200


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        return f"died with {name} (signal {-returncode})"
    return f"exited with status {returncode}"


def describe_request(request: CompletionRequest) -> str:
    """One line a person can recognise the request by."""
    if request.messages is not None:
        last = next((m.content for m in reversed(request.messages) if m.role == "user"), request.messages[-1].content)
        what = f"chat of {len(request.messages)} messages"
    else:
        last, what = request.prompt or "", "raw prompt"
    text = " ".join(last.split())
    snippet = text if len(text) <= 60 else text[:57] + "..."
    schema = ", JSON schema" if request.json_schema is not None else ""
    return f"{what}, max_tokens {request.max_tokens}, seed {request.seed}{schema}: {snippet!r}"


class _Worker:
    """One running worker process and its pipes."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, close_fds=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None and self.proc.stderr is not None
        self.stdin_fd = self.proc.stdin.fileno()
        self.reader = FrameReader(self.proc.stdout.fileno())
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._drain = threading.Thread(target=self._drain_stderr, args=(self.proc.stderr,), daemon=True,
                                       name=f"model-worker-{self.proc.pid}-stderr")
        self._drain.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain_stderr(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.stderr_tail.append(raw.decode("utf-8", errors="replace").rstrip())

    def last_words(self) -> str:
        """The most telling line of what the worker wrote last (a fatal error, else the last line)."""
        self._drain.join(timeout=1.0)
        lines = [ln.strip() for ln in self.stderr_tail if ln.strip()]
        for marker in ("Fatal Python error", "GGML_ASSERT", "error", "Error", "terminate called"):
            hits = [ln for ln in lines if marker in ln]
            if hits:
                return hits[-1][:200]
        return lines[-1][:200] if lines else ""

    def wait_exit(self, timeout: float = 5.0) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if self.wait_exit(5.0) is None:
            self.proc.kill()
            self.proc.wait()
        self._drain.join(timeout=1.0)


class WorkerBackend:
    """The Backend contract, served by a llama.cpp model in a worker process."""

    def __init__(self, model_path: Path, *, model_id: str | None = None, label: str | None = None,
                 n_ctx: int = 4096, n_threads: int = 0, n_gpu_layers: int = -1, n_batch: int = 512,
                 repack: RepackSetting = "auto", python: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.model_path = Path(model_path)
        self.model_id = model_id or f"gguf:{self.model_path.resolve()}:{self.model_path.stat().st_size}"
        self.label = label or self.model_path.name
        self._init = {"path": str(self.model_path), "model_id": self.model_id, "n_ctx": n_ctx,
                      "n_threads": n_threads, "n_gpu_layers": n_gpu_layers, "n_batch": n_batch, "repack": repack}
        self._command = [python or sys.executable, "-m", "skillgrad_tui.core.llm.worker_process"]
        self._env = dict(env or {})  # extra environment for the worker (thread settings, for one)
        self._lock = threading.Lock()  # one request at a time, like the model itself
        self._worker: _Worker | None = None
        self._next_id = 1
        self.facts: dict[str, Any] = {}
        self.restarts = 0
        self._start()  # load now: a bad model file is an error here, as with the in-process backend
        self.count_tokens = lru_cache(maxsize=4096)(self._count_tokens)  # type: ignore[method-assign]

    # -- facts -----------------------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return int(self.facts["n_ctx"])

    @property
    def pid(self) -> int | None:
        """The worker's process id (None when no worker runs)."""
        return self._worker.pid if self._worker is not None else None

    @property
    def device(self) -> str:
        layers = int(self.facts.get("gpu_layers", 0) or 0)
        return "GPU" if layers != 0 else "CPU"

    # -- the worker's life -----------------------------------------------------------------------------

    def _start(self) -> None:
        env = {**os.environ, **self._env}
        package_root = str(Path(__file__).resolve().parents[3])  # the worker imports this same package
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        worker = _Worker(self._command, env)
        try:
            write_frame(worker.stdin_fd, self._init)
            reply = worker.reader.read()
        except (StreamClosed, OSError):
            raise self._crashed(worker, "while loading the model") from None
        assert reply is not None
        if "error" in reply:
            worker.stop()
            raise error_from_wire(reply["error"])
        self.facts = reply["ok"]
        self._worker = worker

    def _crashed(self, worker: _Worker, during: str) -> ModelCrashed:
        code = worker.wait_exit(5.0)
        if code is None:  # it stopped talking but did not exit: end it, so that nothing leaks
            worker.proc.kill()
            code = worker.wait_exit(5.0)
        words = worker.last_words()
        self._worker = None
        return ModelCrashed(f"the model worker for {self.label} {describe_exit(code)} {during}"
                            + (f"; it said: {words}" if words else "")
                            + "; the worker restarts on the next request", returncode=code)

    def _call(self, message: dict[str, Any], cancel: CancelToken | None = None,
              request: CompletionRequest | None = None) -> Any:
        with self._lock:
            if self._worker is None:
                self.restarts += 1
                self._start()
            worker = self._worker
            assert worker is not None
            rid = self._next_id
            self._next_id += 1
            during = ("during a request (" + describe_request(request) + ")") if request is not None \
                else f"during {message['op']}"
            try:
                write_frame(worker.stdin_fd, {**message, "id": rid})
                cancel_sent = False
                while True:
                    watching = cancel is not None and not cancel_sent
                    reply = worker.reader.read(CANCEL_POLL_S if watching else None)
                    if reply is None:
                        if cancel is not None and cancel.cancelled:
                            write_frame(worker.stdin_fd, {"op": "cancel", "target": rid})
                            cancel_sent = True
                        continue
                    if reply.get("id") == rid:
                        break
            except (StreamClosed, OSError):
                raise self._crashed(worker, during) from None
        if "error" in reply:
            raise error_from_wire(reply["error"])
        return reply["ok"]

    # -- the contract ------------------------------------------------------------------------------

    def complete(self, request: CompletionRequest, cancel: CancelToken | None = None) -> Completion:
        return Completion.from_dict(self._call({"op": "complete", "request": request.to_dict()}, cancel, request))

    def _count_tokens(self, text: str) -> int:
        return int(self._call({"op": "count_tokens", "text": text}))

    def count_tokens(self, text: str) -> int:  # replaced by an LRU-cached bound method in __init__
        return self._count_tokens(text)

    def reset_cache(self) -> None:
        self._call({"op": "reset_cache"})

    def close(self) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is None:
            return
        try:
            write_frame(worker.stdin_fd, {"op": "close", "id": 0})
        except OSError:
            pass
        worker.stop()

    def __del__(self) -> None:  # a forgotten backend must not leave a process behind
        worker = getattr(self, "_worker", None)
        if worker is not None and worker.proc.poll() is None:
            worker.proc.kill()

    def __repr__(self) -> str:
        return f"WorkerBackend({self.label}, pid={self.pid})"
