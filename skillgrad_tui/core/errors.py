"""The engine's errors: configuration, skills, edits and suites, on the shared root error.

The root (`SkillgradError`, `Cancelled`) and the model layer's errors live in core/llm/errors.py and
are re-exported here, so code above the model layer imports every error from one place; the model
layer itself imports nothing from the engine.
"""

from __future__ import annotations

from skillgrad_tui.core.llm.errors import (BackendError, Cancelled, ModelCrashed, ModelError, OutputInvalid,
                                           PromptTooLong, SkillgradError)

__all__ = ["BackendError", "Cancelled", "ConfigError", "EditError", "EvaluationErrored", "ModelCrashed", "ModelError",
           "OutputInvalid", "PromptTooLong", "SkillError", "SkillgradError", "SuiteError"]


class ConfigError(SkillgradError):
    """A bad skillgrad.toml: unknown key, bad value, TOML that does not parse."""


class SkillError(SkillgradError):
    """A skill folder that breaks the Agent Skills format or our safety rules."""


class EditError(SkillgradError):
    """An edit that does not apply (old text missing or ambiguous, path outside the skill)."""


class SuiteError(SkillgradError):
    """A task suite file with a bad line or a missing referenced file."""


class EvaluationErrored(SkillgradError):
    """Every task of an evaluation errored (server down, prompt over the context): nothing was
    measured, which is not a score of zero."""
