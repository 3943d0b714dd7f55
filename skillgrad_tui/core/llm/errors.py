"""The root of every error a user can act on, and the errors of the model layer.

The root lives here, in the lowest layer, so that every layer shares it while this one imports
nothing from the rest of the package: the engine's errors (skills, suites, configuration) derive
from it in `core/errors.py`, which re-exports these, so code above the model layer catches
`SkillgradError` and `Cancelled` from one place.

Each error names the file (and line, when known) it is about; the CLI prints `str(error)` on one
line and exits non-zero, never with a traceback.
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


class ModelError(SkillgradError):
    """A model file that is missing, truncated, not GGUF, or fails its checksum."""


class BackendError(SkillgradError):
    """A model backend failed: server unreachable, prompt too long, output never valid."""


class PromptTooLong(BackendError):
    """The prompt does not fit the model's context window."""

    def __init__(self, prompt_tokens: int, n_ctx: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx
        super().__init__(
            f"prompt is {prompt_tokens} tokens but the context holds {n_ctx}: "
            f"{prompt_tokens - n_ctx} tokens too long (shorten it or raise n_ctx)"
        )


class OutputInvalid(BackendError):
    """The model never produced output that parses and validates, within the retry bound."""

    def __init__(self, message: str, attempts: int, last_text: str, usage: object = None) -> None:
        self.attempts = attempts
        self.last_text = last_text
        self.usage = usage  # llm.base.Usage of every failed attempt, so budgets still count them
        super().__init__(f"{message} (after {attempts} attempts; last output: {last_text[:200]!r})")


class ModelCrashed(SkillgradError):
    """The process running the model died (a native crash, an abort, an out-of-memory kill).

    Not a BackendError on purpose: code that records a failed model call as a failed task must
    not swallow it. It stops the run (which stays resumable) and reaches the user as one line.
    """

    def __init__(self, message: str, returncode: int | None = None) -> None:
        self.returncode = returncode
        super().__init__(message)

    def add_context(self, what: str) -> "ModelCrashed":
        """Say what the caller was doing (e.g. which task), in front of the rest of the message."""
        self.message = f"{what}: {self.message}"
        self.args = (str(self),)
        return self
