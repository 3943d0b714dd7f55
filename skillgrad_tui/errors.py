"""The root of every error a user can act on, shared by all layers (the model layer included).

Each error names the file (and line, when known) it is about; the CLI prints `str(error)` on one
line and exits non-zero, never with a traceback. Layers add their own subclasses: the model
backends in `core/llm/errors.py`, skills, suites and configuration in `core/errors.py`.
"""

from __future__ import annotations

from pathlib import Path


class SkillgradError(Exception):
    """Base class for errors that are the user's input or environment, not our bug."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None) -> None:
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.message}"


class Cancelled(Exception):
    """Work was cancelled by the user (Escape in the app, Ctrl-C headless)."""
