"""Errors of the model layer. It imports nothing from the engine: only the shared root error."""

from __future__ import annotations

from skillgrad_tui.errors import SkillgradError


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
