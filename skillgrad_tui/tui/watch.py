"""Watch mode lives in the engine (core/watch_loop.py) and its command in commands/watch_cmd.py;
these names stay importable from here for the app and older callers."""

from __future__ import annotations

from skillgrad_tui.commands.watch_cmd import add_watch_arguments, watch_command
from skillgrad_tui.core.watch_loop import WatchLoop

__all__ = ["WatchLoop", "add_watch_arguments", "watch_command"]
