"""SkillGrad TUI: tune LLM agent skills offline, like gradient descent."""

__version__ = "0.1.0"
