"""`skillgrad eval SKILL [--suite DIR]`: the forward pass and loss, headless.

The engine (core/service.py) resolves the suite, the split and the run directory (evals/ beside
the runs folder) and writes the run log; this command shows progress and the summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from skillgrad_tui.core.errors import SkillgradError


def eval_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from skillgrad_tui.config import backend_factory, load_config
    from skillgrad_tui.core.engine import describe_model
    from skillgrad_tui.core.events import Event, RunStarted, TaskFinished
    from skillgrad_tui.core.service import Engine
    from skillgrad_tui.core.skill import load_skill

    skill_root = None if str(args.skill) == "none" else Path(args.skill)
    config = load_config(skill_root, args.config)
    skill = None
    if skill_root is not None:
        # Read-only: an interrupted write is reported (with the command that finishes it), never
        # applied behind the user's back, and nothing is created beside a skill that does not load.
        skill = load_skill(skill_root)
    engine = Engine(skill_root, config.engine_settings(), backend_factory(config, args.model, args.no_cache),
                    suite_path=args.suite)
    seed = args.seed if args.seed is not None else engine.seed

    err = Console(stderr=True)
    model = describe_model(config.backend_settings(args.model, use_cache=not args.no_cache))
    progress = Progress(TextColumn("[bold]eval[/]"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[acc]}"), TimeRemainingColumn(), console=err,
                        transient=True, disable=args.json and not err.is_terminal)
    bar = progress.add_task("eval", total=None, acc="")
    passed = 0

    def sink(event: Event) -> None:
        nonlocal passed
        if isinstance(event, RunStarted):  # the engine has selected the tasks
            progress.update(bar, total=event.settings["n"])
        elif isinstance(event, TaskFinished):
            passed += event.passed
            done = int(progress.tasks[0].completed) + 1
            progress.update(bar, advance=1, acc=f"acc {passed / done:.2f}")

    try:
        with progress:
            done = engine.run_evaluation(skill, split=args.split, sink=sink, run_dir=args.run_dir, seed=seed,
                                   limit=args.limit, phase="eval")
        model_id = engine.backend("task").model_id
    finally:
        engine.close()
    result, tasks, run_dir, traj_dir = done.result, done.tasks, done.run_dir, done.run_dir / "trajectories"

    counts = result.outcomes
    cached = sum(1 for t in result.trajectories if t.from_cache)
    run = result.n - cached  # tasks the model answered now: a rate over cache hits means nothing
    summary: dict[str, Any] = {
        "skill": str(skill_root) if skill_root else None,
        "skill_hash": skill.hash if skill else None,
        "suite": str(engine.suite_path), "split": done.split,
        "model": model["name"], "model_path": model["path"], "server": model["server"],
        "model_id": model_id, "seed": seed,
        "accuracy": result.accuracy, "passed": result.passed, "n": result.n,
        "failed": counts.failed, "errored": counts.errored, "errors": counts.to_dict()["errors"],
        "from_cache": cached,
        "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
        "seconds": round(result.seconds, 3),
        "tasks_per_minute": round(60 * run / result.seconds, 2) if result.seconds and run else None,
        "run_dir": str(run_dir),
        "sandbox": next((t.sandbox for t in result.trajectories if t.sandbox), None),
        "per_task": result.per_task(tasks),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    if args.predictions is not None:
        write_predictions(args.predictions, result.trajectories)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, default=str))
    else:
        rate = (f"{summary['tasks_per_minute']} tasks/min" if summary["tasks_per_minute"] is not None
                else "no task ran the model")
        if cached:
            rate += f"; {cached} of {result.n} from the response cache"
        print(f"accuracy {result.accuracy:.3f} ({result.passed}/{result.n}): {counts.sentence()}")
        print(f"model {model['name']}" + (f" on {model['server']}" if model["server"] else "")
              + f"  tokens {result.prompt_tokens} prompt + {result.completion_tokens} completion  "
              f"time {result.seconds:.1f}s  ({rate})")
        print(f"trajectories: {traj_dir}")
        if args.predictions is not None:
            print(f"predictions (WikiTableQuestions format): {args.predictions}")
        if summary["sandbox"]:
            print(f"agent scripts ran in the sandbox mode {summary['sandbox']}")
    if counts.all_errored:
        # Not a score of zero: nothing was measured. The summary above stays for the record.
        raise SkillgradError(f"every task errored ({counts.errored}/{counts.n}); most common: "
                             f"{counts.top_error}", run_dir / "summary.json")
    return 0


def write_predictions(path: Path, trajectories: list[Any]) -> None:
    """The official WTQ predictions format: one line per example, `id<TAB>item<TAB>item...`; an
    example with no answer gets a line with its id alone (the evaluator counts it wrong)."""
    from skillgrad_tui.core.file_write import write_file_atomically

    lines = []
    for t in trajectories:
        items = t.answer if isinstance(t.answer, list) else ([] if t.answer is None else [str(t.answer)])
        clean = [" ".join(str(i).replace("\t", " ").split()) for i in items]
        lines.append("\t".join([t.task_id, *clean]))
    write_file_atomically(path, ("\n".join(lines) + "\n").encode("utf-8"))
