"""Forward pass and loss: run the agent over tasks, score each with its evaluator, emit events.

Shared by `skillgrad eval`, the optimiser (train minibatches and validation) and the TUI, so that
all three report the same numbers from the same trajectories.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from skillgrad_tui.core.agent import Agent
from skillgrad_tui.core.atomic import write_file_atomically
from skillgrad_tui.core.errors import Cancelled
from skillgrad_tui.core.evaluators import get_evaluator
from skillgrad_tui.core.events import EventSink, Progress, TaskFinished, TaskStarted, null_sink
from skillgrad_tui.core.llm.base import CancelToken
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
             traj_dir: Path | None = None, done: dict[str, Trajectory] | None = None) -> EvalResult:
    start = time.perf_counter()
    results: list[Trajectory] = []
    tokens = 0
    sink(Progress(done=0, total=len(tasks), phase=phase))
    for i, task in enumerate(tasks):
        if cancel is not None and cancel.cancelled:
            raise Cancelled()
        trajectory = (done or {}).get(task.id)
        if trajectory is None:
            sink(TaskStarted(step=step, task_id=task.id, phase=phase))
            out_dir = traj_dir / "outputs" if traj_dir is not None else None
            trajectory = run_and_score(agent, skill, task, seed=seed, cancel=cancel, out_dir=out_dir)
            if traj_dir is not None:
                save_trajectory(trajectory_file(traj_dir, task.id), trajectory)
        results.append(trajectory)
        verdict = trajectory.verdict or Verdict(0.0, False)
        tokens += trajectory.usage.prompt_tokens + trajectory.usage.completion_tokens
        rel = None
        if traj_dir is not None:
            rel = str(trajectory_file(traj_dir, task.id))
        sink(TaskFinished(step=step, task_id=task.id, phase=phase, skill_hash=trajectory.skill_hash,
                          passed=verdict.passed, score=verdict.score, answer=trajectory.answer,
                          expected=task.expected, prompt_tokens=trajectory.usage.prompt_tokens,
                          completion_tokens=trajectory.usage.completion_tokens,
                          seconds=trajectory.seconds, error=trajectory.error, trajectory=rel,
                          errored=trajectory.errored))
        sink(Progress(done=i + 1, total=len(tasks), phase=phase, tokens=tokens,
                      seconds=time.perf_counter() - start))
    passed = sum(1 for t in results if t.verdict and t.verdict.passed)
    return EvalResult(
        trajectories=results, accuracy=passed / len(results) if results else 0.0, passed=passed,
        n=len(results), prompt_tokens=sum(t.usage.prompt_tokens for t in results),
        completion_tokens=sum(t.usage.completion_tokens for t in results),
        seconds=time.perf_counter() - start)
