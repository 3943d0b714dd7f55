"""Concurrent evaluation (issue 12): N agent runs in flight, results and events in task order.

A real ThreadingHTTPServer on 127.0.0.1 speaks the OpenAI streaming protocol with a delay per
request and counts the requests it serves at once; the scripted backend covers SIGKILL resume.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from skillgrad_tui.core.agent import Agent
from skillgrad_tui.core.errors import Cancelled
from skillgrad_tui.core.evaluate import evaluate, load_trajectory, trajectory_file
from skillgrad_tui.core.events import Event, TaskFinished, TaskStarted
from skillgrad_tui.core.llm.base import CancelToken, concurrency_limit
from skillgrad_tui.core.llm.cache import CachedBackend, ResponseCache
from skillgrad_tui.core.llm.http_backend import HttpBackend
from skillgrad_tui.core.records import Task, Trajectory
from tests.test_http_backend import Handler, Script, chunks, fake  # noqa: F401  (fake is a fixture)

REPO = Path(__file__).resolve().parents[1]


def tasks(n: int) -> list[Task]:
    return [Task(id=f"t{i}", question=f"what is {i} plus one?", kind="qa", evaluator="exact",
                 expected=[str(i + 1)]) for i in range(n)]


def add_one(delay: float, pieces: int = 4) -> Any:
    """Answers `i + 1` for 'what is i plus one?', streamed in pieces with a delay before each."""
    def act(h: Handler, body: dict[str, Any]) -> None:
        question = body["messages"][1]["content"]
        i = int(question.split("what is ")[1].split(" plus")[0])
        text = (str(i + 1) if i % 3 else "wrong").ljust(pieces)  # padded: one chunk per piece
        h.sse(chunks(text, True, pieces=pieces,
                     extra={"usage": {"prompt_tokens": 10 + i, "completion_tokens": 2}}),
              delay=delay / pieces)
    return act


def run(url: str, n_tasks: int, *, max_concurrency: int, sink: Any = None, cancel: CancelToken | None = None,
        traj_dir: Path | None = None) -> Any:
    backend = HttpBackend(url, max_concurrency=max_concurrency, retries=0)
    try:
        return evaluate(Agent(backend), None, tasks(n_tasks), seed=0, sink=sink or (lambda e: None),
                        cancel=cancel, traj_dir=traj_dir)
    finally:
        backend.close()


def summary(result: Any) -> list[tuple[Any, ...]]:
    return [(t.task_id, t.answer, t.verdict.passed, t.verdict.score, t.usage.prompt_tokens,
             t.usage.completion_tokens, [(x.kind, x.content) for x in t.turns]) for t in result.trajectories]


def test_n_tasks_are_in_flight_and_results_equal_the_sequential_run(fake: tuple[str, Script]) -> None:
    url, script = fake
    script.default = add_one(0.3)
    seq_events: list[Event] = []
    t0 = time.monotonic()
    sequential = run(url, 8, max_concurrency=1, sink=seq_events.append)
    seq_s = time.monotonic() - t0
    assert script.max_in_flight == 1
    script.max_in_flight = 0
    events: list[Event] = []
    t0 = time.monotonic()
    concurrent = run(url, 8, max_concurrency=4, sink=events.append)
    conc_s = time.monotonic() - t0
    assert script.max_in_flight == 4  # counted by the server
    assert conc_s < seq_s * 0.6
    assert summary(concurrent) == summary(sequential)
    assert (concurrent.passed, concurrent.prompt_tokens) == (sequential.passed, sequential.prompt_tokens)
    finished = [e for e in events if isinstance(e, TaskFinished)]
    assert [e.task_id for e in finished] == [f"t{i}" for i in range(8)]
    strip = lambda es: [(type(e).__name__, getattr(e, "task_id", None), getattr(e, "passed", None))  # noqa: E731
                        for e in es if not isinstance(e, TaskStarted)]
    assert strip(events) == strip(seq_events)
    # Several rows show as running before the first one finishes.
    first_finish = next(i for i, e in enumerate(events) if isinstance(e, TaskFinished))
    assert sum(isinstance(e, TaskStarted) for e in events[:first_finish]) == 4


def test_max_concurrency_and_server_slots_are_honoured(fake: tuple[str, Script]) -> None:
    url, script = fake
    script.default = add_one(0.2)
    run(url, 6, max_concurrency=2)
    assert script.max_in_flight == 2
    script.max_in_flight = 0
    script.props = {"total_slots": 3, "default_generation_settings": {"n_ctx": 4096}}
    cache = ResponseCache(Path(os.environ["SKILLGRAD_RESPONSE_CACHE"]))
    backend = CachedBackend(HttpBackend(url, max_concurrency=8), cache)
    assert concurrency_limit(backend) == 3  # through the cache wrapper, lowered by the server's slots
    backend.close()
    run(url, 6, max_concurrency=8)
    assert script.max_in_flight == 3


def test_cancel_stops_every_run_in_flight(fake: tuple[str, Script], tmp_path: Path) -> None:
    url, script = fake
    script.default = add_one(4.0, pieces=40)  # 4 s a request, a chunk every 0.1 s
    token = CancelToken()
    started: list[float] = []

    def sink(e: Event) -> None:
        if isinstance(e, TaskStarted):
            started.append(time.monotonic())
            if len(started) == 4:
                threading.Timer(0.5, token.cancel).start()

    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        run(url, 8, max_concurrency=4, sink=sink, cancel=token, traj_dir=tmp_path)
    assert time.monotonic() - t0 < 2.5  # not 4 s for the runs in flight to end by themselves
    assert len(started) == 4
    time.sleep(0.3)
    assert script.in_flight == 0  # the server saw every stream hung up
    assert not list(tmp_path.glob("*.json"))  # no cut-off run saved as a result


CHILD = """
import sys, time
from pathlib import Path
from skillgrad_tui.core.agent import Agent
from skillgrad_tui.core.evaluate import evaluate
from skillgrad_tui.core.llm.scripted import ScriptedBackend
from tests.test_concurrent_eval import tasks

def respond(req):
    i = int(req.messages[1].content.split("what is ")[1].split(" plus")[0])
    time.sleep(0.2 + 0.1 * (i % 4))  # uneven, so runs finish out of order
    return str(i + 1) if i % 3 else "wrong"

backend = ScriptedBackend(respond, concurrency=4)
evaluate(Agent(backend), None, tasks(16), seed=0, traj_dir=Path(sys.argv[1]),
         sink=lambda e: print(type(e).__name__, getattr(e, "task_id", ""), flush=True))
"""


def test_resume_after_sigkill_with_tasks_in_flight(tmp_path: Path) -> None:
    from tests.test_concurrent_eval import tasks as make
    from skillgrad_tui.core.llm.scripted import ScriptedBackend

    traj_dir = tmp_path / "traj"
    traj_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(traj_dir)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    finished = started = 0
    for line in proc.stdout:
        started += line.startswith("TaskStarted")
        finished += line.startswith("TaskFinished")
        if finished == 5:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert started - finished >= 3  # killed with runs in flight
    saved = {p.stem: load_trajectory(p) for p in traj_dir.glob("*.json")}
    assert all(t is not None for t in saved.values())  # every file on disk is whole
    assert 5 <= len(saved) < 16
    done: dict[str, Trajectory] = {t.task_id: t for t in saved.values() if t is not None}

    def respond(req: Any) -> str:
        i = int(req.messages[1].content.split("what is ")[1].split(" plus")[0])
        return str(i + 1) if i % 3 else "wrong"

    resumed = evaluate(Agent(ScriptedBackend(respond, concurrency=4)), None, make(16), seed=0,
                       traj_dir=traj_dir, done=done)
    fresh = evaluate(Agent(ScriptedBackend(respond)), None, make(16), seed=0)
    def key(r: Any) -> list[tuple[Any, ...]]:
        return [(t.task_id, t.answer, t.verdict.passed, t.usage.prompt_tokens) for t in r.trajectories]

    assert key(resumed) == key(fresh)
    assert resumed.passed == fresh.passed
    assert all(trajectory_file(traj_dir, t.id).is_file() for t in make(16))
    assert json.loads(trajectory_file(traj_dir, "t15").read_text())["task_id"] == "t15"
