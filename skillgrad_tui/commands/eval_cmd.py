"""`skillgrad eval SKILL --suite DIR`: the forward pass and loss, headless."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from skillgrad_tui.core.errors import SkillgradError


def resolve_run_root(skill_root: Path | None, configured: str) -> Path:
    base = skill_root.resolve().parent if skill_root is not None else Path.cwd()
    return (base / configured).resolve()


def eval_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from skillgrad_tui.config import load_config
    from skillgrad_tui.core.agent import Agent, AgentSettings
    from skillgrad_tui.core.evaluate import evaluate
    from skillgrad_tui.core.events import Event, TaskFinished
    from skillgrad_tui.core.engine import describe_model, make_backend
    from skillgrad_tui.core.skill import load_skill
    from skillgrad_tui.core.suites.selection import default_suite_path, select_tasks

    skill_root = None if str(args.skill) == "none" else Path(args.skill)
    config = load_config(skill_root, args.config)
    skill = None
    if skill_root is not None:
        # Read-only: an interrupted write is reported (with the command that finishes it), never
        # applied behind the user's back, and nothing is created beside a skill that does not load.
        skill = load_skill(skill_root)
    configured = config.get("suite", "path")
    suite_path = args.suite or default_suite_path(skill_root, config.resolve_path(configured) if configured else None)
    if suite_path is None:
        raise SkillgradError("no task suite: pass --suite DIR or set [suite] path in skillgrad.toml")
    seed = args.seed if args.seed is not None else config.get("run", "seed")
    split = args.split or config.get("suite", "split") or None
    suite, tasks = select_tasks(Path(suite_path), split, seed=seed, limit=args.limit)

    run_dir = args.run_dir or resolve_run_root(skill_root, config.get("run", "dir")) / (
        time.strftime("eval-%Y%m%d-%H%M%S-") + (skill.short_hash[:6] if skill else "noskill"))
    run_dir.mkdir(parents=True, exist_ok=True)
    events = (run_dir / "events.jsonl").open("a", encoding="utf-8")

    err = Console(stderr=True)
    settings = config.backend_settings(args.model, use_cache=not args.no_cache)
    model = describe_model(settings)
    backend = make_backend(settings)
    agent = Agent(backend, AgentSettings(mode=config.get("agent", "mode"),
                                         max_tokens=config.get("agent", "max_tokens"),
                                         table_rows=config.get("agent", "table_rows"),
                                         temperature=float(config.get("agent", "temperature"))))
    progress = Progress(TextColumn("[bold]eval[/]"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[acc]}"), TimeRemainingColumn(), console=err,
                        transient=True, disable=args.json and not err.is_terminal)
    bar = progress.add_task("eval", total=len(tasks), acc="")
    passed = 0

    def sink(event: Event) -> None:
        nonlocal passed
        events.write(json.dumps(event.to_dict(), ensure_ascii=False, default=str) + "\n")
        if isinstance(event, TaskFinished):
            passed += event.passed
            done = int(progress.tasks[0].completed) + 1
            progress.update(bar, advance=1, acc=f"acc {passed / done:.2f}")

    try:
        with progress:
            result = evaluate(agent, skill, tasks, seed=seed, phase="eval", sink=sink,
                              traj_dir=run_dir / "trajectories")
    finally:
        events.close()
        backend.close()

    counts = result.outcomes
    cached = sum(1 for t in result.trajectories if t.from_cache)
    run = result.n - cached  # tasks the model answered now: a rate over cache hits means nothing
    summary: dict[str, Any] = {
        "skill": str(skill_root) if skill_root else None,
        "skill_hash": skill.hash if skill else None,
        "suite": str(suite_path), "split": split or suite.source_split or "all",
        "model": model["name"], "model_path": model["path"], "server": model["server"],
        "model_id": backend.model_id, "seed": seed,
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
        print(f"trajectories: {run_dir / 'trajectories'}")
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
    from skillgrad_tui.core.atomic import write_file_atomically

    lines = []
    for t in trajectories:
        items = t.answer if isinstance(t.answer, list) else ([] if t.answer is None else [str(t.answer)])
        clean = [" ".join(str(i).replace("\t", " ").split()) for i in items]
        lines.append("\t".join([t.task_id, *clean]))
    write_file_atomically(path, ("\n".join(lines) + "\n").encode("utf-8"))
