"""`skillgrad optimize`, `history`, `rollback`, `recover`: the headless optimiser commands.

Wiring (cli.py): `add_parsers(sub, _common, _model_opts)` adds the sub-commands and
`HANDLERS` maps each name to its handler. Handlers print a SkillgradError as one line on stderr
and return 2, like the rest of the CLI.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from skillgrad_tui.config import load_config
from skillgrad_tui.core.engine import CancelToken, make_backend
from skillgrad_tui.core.gate import GATES
from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.events import Event, Warning_
from skillgrad_tui.core.runlog import (RUNS_SUBDIR, RunError, find_runs, list_versions, replay, restore_version,
                                       run_skill_path)

Handler = Callable[[argparse.Namespace], int]
AddArgs = Callable[[argparse.ArgumentParser], None]


def positive_int(text: str) -> int:
    """argparse type for counts: `--batch-size 0` is an error, not a silent default."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_parsers(sub: Any, common: AddArgs, model_opts: AddArgs) -> None:
    p = sub.add_parser("optimize", help="tune a skill on a task suite, headless",
                       description="Optimise a skill like gradient descent: forward on a minibatch, "
                                   "diagnose failures, update the momentum memory, patch, gate.")
    common(p)
    model_opts(p)
    p.add_argument("skill", type=Path, nargs="?", help="skill folder (optional with --resume)")
    p.add_argument("--suite", type=Path, help="task suite (default: [suite] path, else the suite bundled "
                   "beside the skill)")
    p.add_argument("--split", help="the suite's own split to load (WTQ: TSV name; JSONL: 'split' field)")
    p.add_argument("--train-split", default="train", help="seeded split to train on (train/val/test/all)")
    p.add_argument("--val-split", default="val", help="seeded split the gate scores on")
    p.add_argument("--steps", type=positive_int, help="at most this many steps")
    p.add_argument("--epochs", type=positive_int, help="passes over the training pool (default 1)")
    p.add_argument("--batch-size", type=positive_int, help="tasks per step (default: config, 4)")
    p.add_argument("--seed", type=int, help="seed for splits, batch order and models (default: config, 0)")
    p.add_argument("--optimizer-model", help="model for diagnoser and patcher (default: config, else --model)")
    p.add_argument("--token-budget", type=positive_int,
                   help="stop once the run has used this many tokens in all (with --resume: the earlier "
                        "sessions' tokens count too)")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="stop once the run has taken this many seconds in all (with --resume: the earlier "
                        "sessions' time counts too, so give the new total)")
    p.add_argument("--gate", choices=GATES,
                   help="keep a candidate whose validation gain is above noise (default), keep the best on the "
                        "minibatch, or ask (TUI only)")
    p.add_argument("--candidates", type=int, help="candidate skills proposed per step (default: config, 3)")
    p.add_argument("--gate-k", type=float, metavar="K",
                   help="keep a candidate only when its paired validation gain exceeds K standard errors "
                        "(default: config, 1)")
    p.add_argument("--val-repeats", type=int, metavar="N",
                   help="validation runs per task (default: 1 for a greedy task model, 3 when it samples)")
    p.add_argument("--parent", choices=("current", "pareto"),
                   help="improve the current version each step (default) or one drawn from the Pareto frontier")
    p.add_argument("--no-momentum", action="store_true", help="ablation: no memory across steps")
    p.add_argument("--no-contrastive", action="store_true", help="ablation: no preservation signals")
    p.add_argument("--plain-batches", action="store_true",
                   help="train on shuffled minibatches of all tasks, not on the seed skill's failures")
    p.add_argument("--run-dir", type=Path, help="run directory (default <skill parent>/.skillgrad/runs/<id>)")
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue an interrupted run")
    p.add_argument("--git-commit", action="store_true",
                   help="commit each applied version to git when the skill is in a git work tree "
                        "(default: config optimize.git_commit, off)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every task as it finishes")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")

    p = sub.add_parser("history", help="list the skill versions of a run with their scores")
    p.add_argument("run", type=Path, help="run directory (or a run id under ./.skillgrad/runs)")
    p.add_argument("--json", action="store_true", help="print the versions and lineage as JSON")

    p = sub.add_parser("rollback", help="restore one skill version of a run, atomically",
                       description="Restore a stored version. Files the version does not have, and the old "
                                   "content of files it overwrites, are moved into the run directory "
                                   "(set-aside/<time>-before-v<N>/) and listed; nothing is deleted. Git "
                                   "metadata and files that .gitignore names are never touched.")
    p.add_argument("run", type=Path, help="run directory (or a run id under ./.skillgrad/runs)")
    p.add_argument("version", type=int, help="the version number to restore (see `skillgrad history RUN`)")
    p.add_argument("--skill", type=Path, help="skill folder to restore into (default: the run's skill)")

    p = sub.add_parser("recover", help="finish or undo a write of a skill that a crash interrupted",
                       description="A write that passed its commit point is finished (the skill becomes the "
                                   "new version); one that had not is undone (its temp files removed). Says "
                                   "which. Refused while a run is writing the skill.")
    p.add_argument("skill", type=Path, help="skill folder")


def _fail(exc: SkillgradError) -> int:
    print(f"skillgrad: error: {exc}", file=sys.stderr)
    return 2


def _resolve_run(raw: Path) -> Path:
    if raw.is_dir():
        return raw.resolve()
    candidate = Path.cwd() / RUNS_SUBDIR / raw
    if candidate.is_dir():
        return candidate.resolve()
    raise RunError("no such run directory", raw)


# ---------------------------------------------------------------------------------------- optimize


def _run_settings(run_dir: Path) -> dict[str, Any]:
    for event in replay(run_dir):
        if event.kind == "run_started":
            return dict(getattr(event, "settings"))
    raise RunError("the run has no run_started event", run_dir)


def _suite_path(settings: dict[str, Any]) -> Path | None:
    """Where a run's suite came from (a JSONL suite may be a file named after the suite)."""
    root = settings.get("suite_path")
    if not root:
        return None
    root_p = Path(root)
    if settings.get("suite_format") == "jsonl" and not (root_p / "tasks.jsonl").is_file():
        named = sorted(root_p.glob("*.jsonl"))
        return named[0] if len(named) == 1 else root_p
    return root_p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The command line's options for the run (None = not given: the config's value applies)."""
    return dict(
        train_split=args.train_split, val_split=args.val_split, steps=args.steps, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, candidates=args.candidates, gate_k=args.gate_k,
        val_repeats=args.val_repeats, parent_selection=args.parent,
        momentum=not args.no_momentum, contrastive=not args.no_contrastive, failures_only=not args.plain_batches,
        token_budget=args.token_budget, time_budget_s=args.time_budget,
        git_commit=True if getattr(args, "git_commit", False) else None)


@contextmanager
def _ctrl_c_cancels(token: CancelToken, console: Console) -> Iterator[None]:
    """First Ctrl-C: stop cleanly after the current task (resumable). Second: abort now."""
    def handler(signum: int, frame: Any) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        console.print("[yellow]stopping after the current task (Ctrl-C again to abort)...[/]")

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_optimize(args: argparse.Namespace) -> int:
    try:
        return _optimize(args)
    except SkillgradError as exc:
        return _fail(exc)


def _optimize(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from skillgrad_tui.commands.printer import EventPrinter, versions_table
    from skillgrad_tui.config import backend_factory
    from skillgrad_tui.core.service import Engine

    if args.gate == "ask":
        raise SkillgradError("--gate ask needs a person to review each edit: run it in the terminal app "
                             "(`skillgrad tui`), or use --gate validation / --gate all headless")
    skill_root: Path | None = args.skill
    suite_path: Path | None = args.suite
    split: str | None = args.split
    if args.resume is not None:  # the run's own skill, suite and split, unless given again
        args.resume = _resolve_run(args.resume)
        settings = _run_settings(args.resume)
        skill_root = skill_root or run_skill_path(args.resume)
        suite_path = suite_path or _suite_path(settings)
        split = split if split is not None else settings.get("suite_split")
    if skill_root is None:
        raise SkillgradError("give the skill folder to optimise (or --resume RUN)")
    config = load_config(skill_root, args.config)
    engine_settings = config.engine_settings()
    if split is not None or args.resume is not None:
        engine_settings = replace(engine_settings, suite_split=split)
    # Looked up at call time, so that tests can put a scripted model in place of make_backend.
    backends = backend_factory(config, args.model, args.no_cache, optimizer_model=args.optimizer_model,
                               make=lambda settings: make_backend(settings))
    engine = Engine(skill_root, engine_settings, backends, suite_path=suite_path)
    if engine.suite_path is None:
        engine.suite()  # the one-line "no task suite" error
    options = engine.optimize_options(args.gate, args.run_dir, args.resume, _overrides(args), whole_epoch=True)
    if options.gate == "ask" and args.resume is None:
        raise SkillgradError("the config sets optimize.gate = 'ask', which needs the terminal app; pass "
                             "--gate validation or --gate all to run headless", config.source)
    console = Console(stderr=args.json)
    printer: Callable[[Event], None]
    if args.json:
        def printer(e: Event) -> None:
            if isinstance(e, Warning_):
                console.print(f"warning: {e.message}", highlight=False, soft_wrap=True)
        closer: Callable[[], None] = lambda: None  # noqa: E731
    else:
        ep = EventPrinter(console, verbose=args.verbose)
        printer, closer = ep, ep.close
    token = CancelToken()
    try:
        with _ctrl_c_cancels(token, console):
            result = engine.run_optimization(options, sink=printer, cancel=token)
    finally:
        closer()
        engine.close()
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        console.print(versions_table(result.versions, best=result.best_version,
                                     current_hash=result.final_skill_hash))
        console.print(f"run {result.run_dir}: {result.reason}; "
                      f"{result.prompt_tokens + result.completion_tokens} tokens, {result.seconds:.1f}s",
                      highlight=False, soft_wrap=True)
        console.print(result.summary, highlight=False, soft_wrap=True)
        if result.reason in ("budget", "cancelled"):
            console.print(f"continue with: skillgrad optimize --resume {result.run_dir}", highlight=False,
                          soft_wrap=True)
    return 130 if result.reason == "cancelled" else 0


# ----------------------------------------------------------------------------------------- history


def cmd_history(args: argparse.Namespace) -> int:
    try:
        return _history(args)
    except SkillgradError as exc:
        return _fail(exc)


def _lineage(versions: list[Any]) -> list[dict[str, Any]]:
    """The versions as a tree (shared with the app's history screen)."""
    from skillgrad_tui.core.lineage import lineage_tree

    return lineage_tree(versions)


def _history(args: argparse.Namespace) -> int:
    from skillgrad_tui.commands.printer import decision_lines, versions_table
    from skillgrad_tui.core.optimizer import best_version
    from skillgrad_tui.core.skill import load_skill

    run_dir = _resolve_run(args.run)
    versions = list_versions(run_dir)
    best = best_version(versions)
    skill = run_skill_path(run_dir)
    on_disk: str | None = None
    if skill is not None and skill.is_dir():
        try:
            on_disk = load_skill(skill).hash
        except SkillgradError:
            on_disk = None
    finished = next((e for e in reversed(list(replay(run_dir))) if e.kind == "run_finished"), None)
    reason = getattr(finished, "reason", None)
    summary = getattr(finished, "summary", "") or ""
    current = next((v.version for v in reversed(versions) if v.skill_hash == on_disk), None)
    if args.json:
        print(json.dumps({"run_dir": str(run_dir), "skill": str(skill) if skill else None, "reason": reason,
                          "summary": summary, "account": getattr(finished, "account", {}) or {},
                          "versions": [v.to_dict() for v in versions], "lineage": _lineage(versions),
                          "best_version": best.version if best else None, "current_version": current},
                         ensure_ascii=False))
        return 0
    console = Console()
    console.print(versions_table(versions, best=best.version if best else None, current_hash=on_disk,
                                 lineage=True))
    lines = decision_lines(versions)
    if lines:
        console.print("Gate decisions:", highlight=False)
        for line in lines:
            console.print(f"  {line}", highlight=False, soft_wrap=True)
    console.print(f"run {run_dir}: {reason or 'not finished (resume with skillgrad optimize --resume)'}",
                  highlight=False, soft_wrap=True)
    if summary:
        console.print(summary, highlight=False, soft_wrap=True)
    return 0


# ---------------------------------------------------------------------------------------- rollback


def _listing(paths: list[str], limit: int = 10) -> str:
    return ", ".join(paths[:limit]) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def cmd_rollback(args: argparse.Namespace) -> int:
    from skillgrad_tui.core.skill_lock import SkillLock

    try:
        run_dir = _resolve_run(args.run)
        target = args.skill or run_skill_path(run_dir)
        if target is None:
            raise RunError("the run does not say which skill it optimised; pass --skill PATH", run_dir)
        with SkillLock(target):  # never while a run or another rollback writes this skill
            done = restore_version(run_dir, args.version, target)
    except SkillgradError as exc:
        return _fail(exc)
    print(f"restored version {args.version} ({done.hash[:12]}) into {done.skill.root}")
    if done.removed:
        print(f"moved {len(done.removed)} file(s) that version {args.version} does not have to {done.set_aside}: "
              f"{_listing(done.removed)}")
    if done.replaced:
        print(f"kept the previous content of {len(done.replaced)} overwritten file(s) in {done.set_aside}: "
              f"{_listing(done.replaced)}")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    from skillgrad_tui.core.recovery import recover_skill

    try:
        account = recover_skill(args.skill)
    except SkillgradError as exc:
        return _fail(exc)
    print(f"{args.skill}: {account}")
    return 0


HANDLERS: dict[str, Handler] = {"optimize": cmd_optimize, "history": cmd_history, "rollback": cmd_rollback,
                                "recover": cmd_recover}

__all__ = ["HANDLERS", "add_parsers", "find_runs"]
