"""`skillgrad watch SKILL`: its options, and the handler that starts the engine's watch loop."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from skillgrad_tui.config import backend_factory as config_backends
from skillgrad_tui.config import load_config
from skillgrad_tui.core.engine import Backend
from skillgrad_tui.core.service import Engine
from skillgrad_tui.core.watch_loop import WatchLoop


def add_watch_arguments(p: argparse.ArgumentParser) -> None:
    """The options `watch_command` reads (the CLI may add --config/--model/--no-cache itself)."""
    p.add_argument("skill", type=Path, help="skill folder to watch")
    p.add_argument("--suite", type=Path, help="task suite (default: [suite] path, else "
                   "<skill parent>/suites/<skill name>/)")
    p.add_argument("--split", default="val", help="split to evaluate on each change (default: val)")
    p.add_argument("--optimize", action="store_true",
                   help="after each evaluation, also run the optimiser (validation gate)")
    p.add_argument("--debounce", type=float, default=0.5, help="seconds of quiet before reacting")


def watch_command(args: argparse.Namespace, backend_factory: Callable[[str], Backend] | None = None) -> int:
    """Handler for `skillgrad watch`; reads args.skill, suite, config, model, no_cache, split,
    optimize, debounce (missing ones take their defaults)."""
    config = load_config(Path(args.skill), explicit=getattr(args, "config", None))
    factory = backend_factory or config_backends(config, getattr(args, "model", None),
                                                 bool(getattr(args, "no_cache", False)))
    engine = Engine(Path(args.skill), config.engine_settings(), factory, suite_path=getattr(args, "suite", None),
                    owns_backends=backend_factory is None)
    loop = WatchLoop(engine, split=getattr(args, "split", None) or "val",
                     optimize=bool(getattr(args, "optimize", False)),
                     debounce_s=float(getattr(args, "debounce", 0.5) or 0.5))
    return loop.run()


__all__ = ["add_watch_arguments", "watch_command"]
