"""The engine's errors: configuration, skills, edits and suites, on the root in skillgrad_tui/errors.py.

The model layer's errors (core/llm/errors.py) are re-exported here, so engine code imports every
error from one place; the model layer itself imports nothing from the engine.
"""

from __future__ import annotations

from skillgrad_tui.core.llm.errors import (BackendError, ModelCrashed, ModelError, OutputInvalid,  # noqa: F401
                                           PromptTooLong)
from skillgrad_tui.errors import Cancelled, SkillgradError  # noqa: F401  (re-exported for the engine)


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
