"""A Footer that rebuilds itself only when the keys it shows actually change.

Textual's Footer recomposes (unmounts and mounts every key) on each bindings signal, and the
signal fires on every focus change, e.g. each time a pane is switched to. Skipping the rebuild
when the visible keys are the same keeps a pane switch to one cheap repaint.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


class StableFooter(Footer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shown: tuple[tuple[str, str, bool], ...] | None = None

    def bindings_changed(self, screen: Screen[Any]) -> None:
        shown = tuple((binding.key, binding.description, enabled)
                      for (_, binding, enabled, _) in screen.active_bindings.values() if binding.show)
        if shown == self._shown and self._bindings_ready:
            return
        self._shown = shown
        super().bindings_changed(screen)
