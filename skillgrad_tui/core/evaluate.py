"""Forward pass and loss: run the agent over tasks, score each with its evaluator, emit events.

Shared by `skillgrad eval`, the optimiser (train minibatches and validation) and the TUI, so that
all three report the same numbers from the same trajectories.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from skillgrad_tui.core.agent import Agent
from skillgrad_tui.core.file_write import write_file_atomically
from skillgrad_tui.core.errors import Cancelled
from skillgrad_tui.core.evaluators import get_evaluator
from skillgrad_tui.core.events import EventSink, Progress, TaskFinished, TaskStarted, null_sink
from skillgrad_tui.core.llm.base import CancelToken, concurrency_limit
from skillgrad_tui.core.outcomes import Outcomes, outcomes
from skillgrad_tui.core.records import EVALUATOR_FAILED, Task, Trajectory, Verdict
from skillgrad_tui.core.skill import Skill


@dataclass
class EvalResult:
    trajectories: list[Trajectory]
    accuracy: float
    passed: int
    n: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float

    @property
    def outcomes(self) -> Outcomes:
        """Passed, failed and errored counts, with the most common errors."""
        return outcomes(self.trajectories)

    def per_task(self, tasks: list[Task]) -> list[dict[str, object]]:
        by_id = {t.id: t for t in tasks}
        return [{"id": tr.task_id, "passed": bool(tr.verdict and tr.verdict.passed),
                 "score": tr.verdict.score if tr.verdict else 0.0, "answer": tr.answer,
                 "expected": by_id[tr.task_id].expected if tr.task_id in by_id else None,
                 "error": tr.error, "errored": tr.errored} for tr in self.trajectories]


def score(task: Task, trajectory: Trajectory) -> Verdict:
    """Score an answer; an agent error or an evaluator crash is a failed verdict, not an exception."""
    if trajectory.error and trajectory.answer in (None, []):
        return Verdict(0.0, False, [], error=trajectory.error)
    try:
        return get_evaluator(task.evaluator).score(task, trajectory.answer)
    except Exception as exc:  # an evaluator must never take a run down with it
        return Verdict(0.0, False, [], error=f"{EVALUATOR_FAILED}{task.evaluator} failed: {exc}")


def run_and_score(agent: Agent, skill: Skill | None, task: Task, *, seed: int,
                  cancel: CancelToken | None = None, out_dir: Path | None = None) -> Trajectory:
    trajectory = agent.run(skill, task, seed=seed, cancel=cancel, out_dir=out_dir)
    trajectory.verdict = score(task, trajectory)
    return trajectory


def trajectory_file(traj_dir: Path, task_id: str) -> Path:
    return traj_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', task_id)}.json"


def save_trajectory(path: Path, trajectory: Trajectory) -> None:
    """Atomic, so a resumed run never reads half a trajectory."""
    data = json.dumps(trajectory.to_dict(), ensure_ascii=False, default=str).encode("utf-8")
    write_file_atomically(path, data)


def load_trajectory(path: Path) -> Trajectory | None:
    try:
        return Trajectory.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def evaluate(agent: Agent, skill: Skill | None, tasks: list[Task], *, seed: int, phase: str = "eval",
             step: int = 0, sink: EventSink = null_sink, cancel: CancelToken | None = None,
             traj_dir: Path | None = None, done: dict[str, Trajectory] | None = None,
             concurrency: int | None = None) -> EvalResult:
    """Run and score `tasks`, keeping up to `concurrency` agent runs in flight (default: what the
    backend can run at once, `concurrency_limit`).

    Events: TaskStarted as each run starts (so several rows show as running), TaskFinished and
    Progress strictly in task order, from the calling thread; with one in flight the stream is
    exactly the sequential one. Runs are greedy and independent, so results equal a sequential
    run. Each trajectory is saved the moment its run ends (a SIGKILL loses only runs in flight);
    the cancel token is checked before each TaskFinished as before, and cancelling (or any
    error) stops every run in flight through its own token before the exception leaves here.
    """
    start = time.perf_counter()
    n_flight = max(1, concurrency if concurrency is not None else concurrency_limit(agent.backend))
    results: list[Trajectory] = []
    tokens = 0
    out_dir = traj_dir / "outputs" if traj_dir is not None else None
    sink(Progress(done=0, total=len(tasks), phase=phase))
    pool = ThreadPoolExecutor(max_workers=n_flight, thread_name_prefix="evaluate")
    running: dict[int, tuple[Future[Trajectory], CancelToken]] = {}
    next_start = 0

    def run_one(task: Task, token: CancelToken) -> Trajectory:
        trajectory = run_and_score(agent, skill, task, seed=seed, cancel=token, out_dir=out_dir)
        if token.cancelled:  # an answer cut by a cancel is not a result: never saved for resume
            raise Cancelled()
        if traj_dir is not None:
            save_trajectory(trajectory_file(traj_dir, task.id), trajectory)
        return trajectory

    def top_up() -> None:
        nonlocal next_start
        # A slot is free once its result was emitted, not merely computed: results that finish
        # early wait at most n_flight deep, and with one in flight this is the sequential loop.
        while next_start < len(tasks) and len(running) < n_flight:
            if cancel is not None and cancel.cancelled:
                return
            task = tasks[next_start]
            if task.id not in (done or {}):
                sink(TaskStarted(step=step, task_id=task.id, phase=phase))
                token = CancelToken(parent=cancel)
                running[next_start] = (pool.submit(run_one, task, token), token)
            next_start += 1

    try:
        for i, task in enumerate(tasks):
            if cancel is not None and cancel.cancelled:
                raise Cancelled()
            top_up()
            trajectory = (done or {}).get(task.id)
            if trajectory is None:
                future, _ = running[i]
                while not future.done():
                    # Poll the caller's token too: a backend may only look at it between tokens.
                    wait([future], timeout=0.05)
                    if cancel is not None and cancel.cancelled:
                        raise Cancelled()
                trajectory = future.result()
                del running[i]
            results.append(trajectory)
            verdict = trajectory.verdict or Verdict(0.0, False)
            tokens += trajectory.usage.prompt_tokens + trajectory.usage.completion_tokens
            rel = str(trajectory_file(traj_dir, task.id)) if traj_dir is not None else None
            sink(TaskFinished(step=step, task_id=task.id, phase=phase, skill_hash=trajectory.skill_hash,
                              passed=verdict.passed, score=verdict.score, answer=trajectory.answer,
                              expected=task.expected, prompt_tokens=trajectory.usage.prompt_tokens,
                              completion_tokens=trajectory.usage.completion_tokens,
                              seconds=trajectory.seconds, error=trajectory.error, trajectory=rel,
                              errored=trajectory.errored))
            sink(Progress(done=i + 1, total=len(tasks), phase=phase, tokens=tokens,
                          seconds=time.perf_counter() - start))
    finally:
        for _, token in running.values():  # nothing left running when we leave, however we leave
            token.cancel()
        pool.shutdown(wait=True)
    passed = sum(1 for t in results if t.verdict and t.verdict.passed)
    return EvalResult(
        trajectories=results, accuracy=passed / len(results) if results else 0.0, passed=passed,
        n=len(results), prompt_tokens=sum(t.usage.prompt_tokens for t in results),
        completion_tokens=sum(t.usage.completion_tokens for t in results),
        seconds=time.perf_counter() - start)
