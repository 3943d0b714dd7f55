"""The model worker: a child process that holds one llama.cpp model and answers over a pipe.

`python -m skillgrad_tui.core.llm.worker_process` is started by `WorkerBackend`. llama.cpp runs
here, not in the app: a segfault, an abort or an out-of-memory kill ends this process only, and
the parent turns it into an error that names the signal, the model and the request.

Protocol (wire.py frames): the first frame is the model to load; the reply is its facts or the
load error. Then requests `{"id", "op": "complete" | "count_tokens" | "reset_cache" | "close"}`,
answered in order, and `{"op": "cancel", "target": id}`, read by a second thread so that it
reaches the generation loop between two tokens.
"""

from __future__ import annotations

import faulthandler
import os
import queue
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillgrad_tui.core.llm.base import CancelToken
from skillgrad_tui.core.llm.wire import (FrameReader, StreamClosed, error_to_wire, request_from_wire,
                                         write_frame)


if TYPE_CHECKING:  # imported in main(): loading llama.cpp is the worker's first real work
    from skillgrad_tui.core.llm.llama_backend import LlamaBackend


class _Server:
    def __init__(self, backend: LlamaBackend, reader: FrameReader, out_fd: int) -> None:
        self.backend = backend
        self.reader = reader
        self.out_fd = out_fd
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.lock = threading.Lock()
        self.current: tuple[int, CancelToken] | None = None
        self.cancelled_early: set[int] = set()

    def read_loop(self) -> None:
        """Second thread: requests go to the inbox, cancels act at once. End of input (the parent
        closed the pipe or died, whatever killed it) ends the process, even mid-generation. (Not
        PR_SET_PDEATHSIG: it fires when the parent *thread* ends, and the app starts the model
        from a worker thread that ends after each run.)"""
        try:
            while True:
                frame = self.reader.read()
                assert frame is not None
                if frame.get("op") == "cancel":
                    with self.lock:
                        target = int(frame["target"])
                        if self.current is not None and self.current[0] == target:
                            self.current[1].cancel()
                        else:
                            self.cancelled_early.add(target)
                else:
                    self.inbox.put(frame)
        except (StreamClosed, OSError, ValueError):
            os._exit(0)

    def handle(self, frame: dict[str, Any]) -> Any:
        op = frame["op"]
        if op == "complete":
            token = CancelToken()
            with self.lock:
                self.current = (frame["id"], token)
                if frame["id"] in self.cancelled_early:
                    self.cancelled_early.discard(frame["id"])
                    token.cancel()
            try:
                return self.backend.complete(request_from_wire(frame["request"]), token).to_dict()
            finally:
                with self.lock:
                    self.current = None
        if op == "count_tokens":
            return self.backend.count_tokens(frame["text"])
        if op == "reset_cache":
            self.backend.reset_cache()
            return None
        raise ValueError(f"unknown op {op!r}")

    def serve(self) -> None:
        threading.Thread(target=self.read_loop, name="worker-reader", daemon=True).start()
        while True:
            frame = self.inbox.get()
            if frame.get("op") == "close":
                write_frame(self.out_fd, {"id": frame["id"], "ok": None})
                return
            try:
                reply: dict[str, Any] = {"id": frame["id"], "ok": self.handle(frame)}
            except Exception as exc:  # every failure goes back to the parent as data
                reply = {"id": frame["id"], "error": error_to_wire(exc)}
            write_frame(self.out_fd, reply)


def facts(backend: LlamaBackend) -> dict[str, Any]:
    from skillgrad_tui.core.llm.native import cpu_summary

    return {"pid": os.getpid(), "n_ctx": backend.n_ctx, "trained_context": backend.trained_context,
            "gpu_layers": backend.gpu_layers, "prompt_format": type(backend.prompt_format).__name__,
            "repack": backend.repack.use_extra_bufts, "repack_reason": backend.repack.reason,
            "cpu": cpu_summary()}


def main() -> int:
    faulthandler.enable()  # a native crash leaves a Python stack on stderr for the parent to show
    out_fd = os.dup(1)
    os.dup2(2, 1)  # anything native code prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    reader = FrameReader(0)
    try:
        init = reader.read()
    except StreamClosed:
        return 0
    assert init is not None
    from skillgrad_tui.core.llm.llama_backend import LlamaBackend

    try:
        backend = LlamaBackend(Path(init["path"]), model_id=init["model_id"], n_ctx=init["n_ctx"],
                               n_threads=init["n_threads"], n_gpu_layers=init["n_gpu_layers"],
                               n_batch=init["n_batch"], repack=init["repack"])
    except Exception as exc:
        write_frame(out_fd, {"id": 0, "error": error_to_wire(exc)})
        return 1
    write_frame(out_fd, {"id": 0, "ok": facts(backend)})
    _Server(backend, reader, out_fd).serve()
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
