"""Errors are never scored as silence: tasks that errored are counted apart from tasks that failed,
the most common error is shown, and an evaluation where every task errored is an error (issue 13)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from skillgrad_tui.cli import main
from skillgrad_tui.core.errors import BackendError, EvaluationErrored
from skillgrad_tui.core.llm.base import CompletionRequest
from skillgrad_tui.core.llm.scripted import ScriptedBackend
from skillgrad_tui.core.optimizer import optimize
from skillgrad_tui.core.outcomes import error_key, outcomes
from skillgrad_tui.core.records import Trajectory, Verdict
from test_optimizer import Env, make_opt_model, task_model, FIX


def traj(task_id: str, *, passed: bool = False, error: str | None = None, kind: str | None = None,
         verdict_error: str | None = None) -> Trajectory:
    t = Trajectory(task_id=task_id, skill_hash="h", model_id="m", seed=0, error=error, error_kind=kind)
    t.verdict = Verdict(1.0 if passed else 0.0, passed, [], error=verdict_error)
    return t


def test_outcomes_keep_errored_apart_and_group_errors_by_kind() -> None:
    got = outcomes([
        traj("a", passed=True),
        traj("b"),  # ran, wrong answer
        traj("c", error="no answer within 4 turns"),  # the model failed the task: a failure
        traj("d", error="prompt is 4287 tokens, over the context of 4096", kind="backend"),
        traj("e", error="prompt is 5120 tokens, over the context of 4096", kind="backend"),
        traj("f", error="HTTP 500 from http://127.0.0.1:9/v1/chat/completions", kind="backend"),
        traj("g", verdict_error="evaluator sheets failed: bad zip"),
    ])
    assert (got.n, got.passed, got.failed, got.errored) == (7, 1, 2, 4)
    assert not got.all_errored
    assert [g.count for g in got.errors] == [2, 1, 1]
    assert got.top_error == "prompt is 4287 tokens, over the context of 4096"  # the first of its kind
    assert "1 passed, 2 failed, 4 errored (most common, 2x: prompt is 4287 tokens" in got.sentence()
    assert error_key("HTTP 500 at 1.5 s") == error_key("HTTP 500 at 20.25 s")
    assert outcomes([traj("x", error="boom", kind="backend")]).all_errored
    assert not outcomes([]).all_errored  # nothing ran: not "every task errored"


# --- a real server on 127.0.0.1 that lists a model and answers every completion with HTTP 500 ------------------------

@pytest.fixture
def broken_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # it lists its model, as a server that loaded one would
            self._send(200, b'{"object": "list", "data": [{"id": "broken-model", "object": "model"}]}')

        def do_POST(self) -> None:
            self._send(500, b'{"error": {"message": "the model is not loaded"}}')

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_eval_where_every_task_errored_exits_non_zero_and_says_why(
        tmp_path: Path, broken_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    env = Env(tmp_path)
    config = tmp_path / "skillgrad.toml"
    config.write_text(f'[server]\nurl = "{broken_server}"\nretries = 0\n', encoding="utf-8")
    code = main(["eval", str(env.skill), "--suite", str(env.suite.root), "--limit", "3", "--no-cache",
                 "--config", str(config), "--run-dir", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "every task errored (3/3)" in err and "500" in err
    assert "0 passed, 0 failed, 3 errored" in out  # not "accuracy 0.000 (0/3)" alone
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["errored"] == 3 and summary["failed"] == 0 and summary["errors"][0]["count"] == 3
    assert summary["server"] == broken_server and summary["model"]  # a name, not only a hash


def _flaky(fail_ids: set[str]) -> ScriptedBackend:
    """The scripted task model, except that requests about some questions fail as a server would."""
    def answer(req: CompletionRequest) -> str:
        assert req.messages is not None
        if any(q in m.content for m in req.messages[1:] for q in fail_ids):
            raise BackendError("HTTP 503 from the server: overloaded")
        return task_model(req)
    return ScriptedBackend(answer, model_id="flaky")


def test_eval_with_some_errors_counts_them_apart_and_exits_zero(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from skillgrad_tui.commands import eval_cmd  # noqa: F401  (the module whose factory is replaced)

    env = Env(tmp_path)
    first = env.suite.tasks[0]
    monkeypatch.setattr("skillgrad_tui.core.llm.factory.make_backend",
                        lambda settings: _flaky({first.question}))
    code = main(["eval", str(env.skill), "--suite", str(env.suite.root), "--json",
                 "--run-dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out)
    assert summary["errored"] == 1 and summary["errors"][0]["example"].startswith("HTTP 503")
    assert summary["passed"] + summary["failed"] + summary["errored"] == summary["n"] == len(env.suite.tasks)
    assert [t["errored"] for t in summary["per_task"] if t["id"] == first.id] == [True]


def test_optimise_stops_with_an_error_when_every_task_errored_and_resumes_after(tmp_path: Path) -> None:
    env = Env(tmp_path)
    everything = {t.question for t in env.suite.tasks}
    with pytest.raises(EvaluationErrored, match=r"every task of the \w+ evaluation errored.*503.*--resume"):
        optimize(env.skill, env.suite, _flaky(everything), ScriptedBackend(make_opt_model(FIX), model_id="opt"),
                 env.options(steps=1))
    # The server is back: the run resumes, asks again (errors were not kept as answers) and finishes.
    res = optimize(env.skill, env.suite, ScriptedBackend(task_model, model_id="task"),
                   ScriptedBackend(make_opt_model(FIX), model_id="opt"),
                   env.options(steps=1, resume=tmp_path / "run", run_dir=None))
    assert res.reason == "steps"


def test_optimise_does_not_diagnose_errored_tasks(tmp_path: Path) -> None:
    env = Env(tmp_path)
    events: list[Any] = []
    half = env.suite.tasks[::2]  # every other task errors, so that every minibatch of 4 has some
    res = optimize(env.skill, env.suite, _flaky({t.question for t in half}),
                   ScriptedBackend(make_opt_model(FIX), model_id="opt"), env.options(steps=2), sink=events.append)
    diagnosed = {g["task_id"] for e in events if e.kind == "gradient_computed" for g in e.gradients}
    assert diagnosed and not diagnosed & {t.id for t in half}
    assert res.account["errored_tasks"] > 0
    warnings = [e.message for e in events if e.kind == "warning" and "errored and were not diagnosed" in e.message]
    steps_with_errors = [e for e in events if e.kind == "step_account" and e.account.get("errored_tasks")]
    assert len(warnings) == len(steps_with_errors)
