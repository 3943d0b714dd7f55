"""Command palette provider: every app action, searchable by name (ctrl+p)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from textual.command import DiscoveryHit, Hit, Hits, Provider


class PaletteCommand(NamedTuple):
    name: str
    help: str
    callback: Callable[[], Any]


class SkillgradCommands(Provider):
    """Asks the app for its current commands each time, so labels reflect state (watch on/off)."""

    def _commands(self) -> list[PaletteCommand]:
        get = getattr(self.app, "palette_commands", None)
        return list(get()) if get is not None else []

    async def discover(self) -> Hits:
        for cmd in self._commands():
            yield DiscoveryHit(cmd.name, cmd.callback, help=cmd.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for cmd in self._commands():
            score = matcher.match(cmd.name)
            if score > 0:
                yield Hit(score, matcher.highlight(cmd.name), cmd.callback, help=cmd.help)
