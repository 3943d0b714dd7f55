"""The model in a worker process: same answers as in-process, and a crash is an error, not the end.

Every test here runs the real SmolLM2-135M in a real worker process and, where it says so, kills
that process with a real signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skillgrad_tui.core.errors import ModelCrashed, ModelError, PromptTooLong
from skillgrad_tui.core.llm.base import CancelToken, CompletionRequest
from skillgrad_tui.core.llm.worker_backend import WorkerBackend, describe_exit

pytestmark = pytest.mark.model

LONG = CompletionRequest.chat(("user", "Write a very long story about a lighthouse keeper."), max_tokens=400)


@pytest.fixture(scope="module")
def worker(smollm_path: Path) -> Iterator[WorkerBackend]:
    backend = WorkerBackend(smollm_path, model_id="test-smollm", label="smollm2-135m", n_ctx=2048)
    yield backend
    backend.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def kill_during(backend: WorkerBackend, sig: int, delay: float) -> threading.Timer:
    pid = backend.pid
    assert pid is not None
    timer = threading.Timer(delay, os.kill, (pid, sig))
    timer.start()
    return timer


def test_answers_equal_the_in_process_backend(worker: WorkerBackend, smollm_backend: object) -> None:
    request = CompletionRequest.chat(("user", "Name three colours."), max_tokens=24)
    ours = worker.complete(request)
    theirs = smollm_backend.complete(request)  # type: ignore[attr-defined]
    assert ours.text == theirs.text and ours.text.strip()
    assert ours.usage.prompt_tokens == theirs.usage.prompt_tokens
    assert ours.usage.completion_tokens == theirs.usage.completion_tokens
    assert worker.count_tokens("one two three") == smollm_backend.count_tokens("one two three")  # type: ignore[attr-defined]


def test_the_kv_cache_in_the_worker_reuses_a_shared_prefix(worker: WorkerBackend) -> None:
    prefix = "Here is a skill about tables. " * 40
    first = worker.complete(CompletionRequest.chat(("system", prefix), ("user", "Question one?"), max_tokens=4))
    second = worker.complete(CompletionRequest.chat(("system", prefix), ("user", "Question two?"), max_tokens=4))
    assert first.usage.prompt_tokens > 200
    assert second.usage.cached_prompt_tokens >= worker.count_tokens(prefix) - 5


def test_cancellation_stops_the_worker_between_tokens(worker: WorkerBackend) -> None:
    token = CancelToken()
    timer = threading.Timer(0.5, token.cancel)
    timer.start()
    completion = worker.complete(LONG, token)
    timer.join()
    assert completion.finish_reason == "cancelled"
    assert completion.usage.completion_tokens < 400
    # The worker is free again at once.
    assert worker.complete(CompletionRequest.chat(("user", "Hi"), max_tokens=2)).usage.completion_tokens > 0


def test_errors_cross_the_process_boundary_with_their_type(worker: WorkerBackend) -> None:
    with pytest.raises(PromptTooLong) as info:
        worker.complete(CompletionRequest(prompt="word " * 3000, max_tokens=4))
    assert info.value.n_ctx == 2048 and info.value.prompt_tokens > 2048


def test_a_bad_model_file_is_a_one_line_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelError) as info:
        WorkerBackend(bad)
    assert "\n" not in str(info.value) and "broken.gguf" in str(info.value)


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL, signal.SIGABRT])
def test_a_dying_worker_is_an_error_naming_signal_model_and_request(smollm_path: Path, sig: int) -> None:
    backend = WorkerBackend(smollm_path, label="smollm2-135m", n_ctx=1024)
    try:
        first_pid = backend.pid
        assert first_pid is not None
        timer = kill_during(backend, sig, 0.5)
        with pytest.raises(ModelCrashed) as info:
            backend.complete(LONG)
        timer.join()
        message = str(info.value)
        assert signal.Signals(sig).name in message and "smollm2-135m" in message
        assert "lighthouse keeper" in message and "\n" not in message
        assert info.value.returncode == -sig
        if sig == signal.SIGSEGV:
            assert "Segmentation fault" in message  # the worker's own last words, from faulthandler
        assert not alive(first_pid)
        # The next request starts a fresh worker and is answered.
        again = backend.complete(CompletionRequest.chat(("user", "Say yes."), max_tokens=3))
        assert again.usage.completion_tokens > 0
        assert backend.pid not in (None, first_pid) and backend.restarts == 1
    finally:
        backend.close()


def test_closing_ends_the_worker(smollm_path: Path) -> None:
    backend = WorkerBackend(smollm_path, n_ctx=512)
    pid = backend.pid
    assert pid is not None and alive(pid)
    backend.close()
    assert not alive(pid)
    backend.close()  # twice is fine


def test_the_worker_dies_with_its_parent(smollm_path: Path) -> None:
    """A parent killed with SIGKILL leaves no model process behind."""
    code = ("import os, sys\n"
            "from pathlib import Path\n"
            "from skillgrad_tui.core.llm.worker_backend import WorkerBackend\n"
            f"b = WorkerBackend(Path({str(smollm_path)!r}), n_ctx=512)\n"
            "print(b.pid, flush=True)\n"
            "os.kill(os.getpid(), 9)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while alive(pid):
        assert time.monotonic() < deadline, "the worker outlived its parent"
        time.sleep(0.1)


def test_the_worker_outlives_the_thread_that_started_it(smollm_path: Path) -> None:
    """The app builds the backend on a worker thread that ends after the run; the model stays."""
    made: list[WorkerBackend] = []
    starter = threading.Thread(target=lambda: made.append(WorkerBackend(smollm_path, n_ctx=512)))
    starter.start()
    starter.join()
    backend = made[0]
    try:
        pid = backend.pid
        time.sleep(0.5)
        assert pid is not None and alive(pid)
        assert backend.complete(CompletionRequest.chat(("user", "Hi"), max_tokens=2)).usage.completion_tokens > 0
        assert backend.pid == pid and backend.restarts == 0
    finally:
        backend.close()


def test_exit_descriptions() -> None:
    assert describe_exit(-11) == "died with SIGSEGV (signal 11)"
    assert describe_exit(-9) == "died with SIGKILL (signal 9)"
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(None) == "stopped answering"
