"""A scripted stand-in model for the app's tests, its benchmark and its screenshots.

It plays every role through the real code paths (agent, diagnosers, patcher), answering from the
request alone: the task agent answers "4" to "how many" questions (so some pass and most fail) and
refuses the others, and each optimiser role returns schema-valid JSON chosen by which schema it
was given. The two failure classes (a wrong value, a refusal) give the patcher two patterns, so a
step proposes more than one edit. Deterministic, instant, and never used by a real run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from skillgrad_tui.core.edit_menu import scripted_answer
from skillgrad_tui.core.engine import Backend, CompletionRequest, scripted_backend

THEMES = {  # labels from the failure-class vocabulary (core/failures.py)
    "count": {"label": "picked the wrong value", "anchor": "Counting and arithmetic",
              "add": "- Before giving a count, list each matching row once and count the list."},
    "format": {"label": "empty or refused answer", "anchor": "Answer format",
               "add": "- Give the value exactly as written in its cell, without extra words."},
}


def _user_text(req: CompletionRequest) -> str:
    if req.messages is None:
        return req.prompt or ""
    return "\n".join(m.content for m in req.messages if m.role != "system")


def _theme(req: CompletionRequest) -> dict[str, str]:
    """The patcher names its pattern's label; a diagnoser sees the task's question."""
    text = _user_text(req).lower()
    if text.startswith("failure pattern"):  # the patcher: its first line names the pattern's label
        head = text.split("\n", 1)[0]
        for theme in THEMES.values():
            if theme["label"] in head:
                return theme
    return THEMES["count"] if "how many" in text else THEMES["format"]


def respond(req: CompletionRequest, answer: str = "4") -> str:
    schema = req.json_schema
    if schema is None:  # the task agent: two kinds of failure, so a step has two patterns
        return answer if "how many" in _user_text(req).lower().rsplit("question:", 1)[-1] else "I don't know"
    props = schema.get("properties", {})
    theme = _theme(req)
    if "diagnosis" in props:
        labels, anchors = props["label"]["enum"], props["anchor"]["enum"]
        return json.dumps({"label": theme["label"] if theme["label"] in labels else labels[0],
                           "anchor": theme["anchor"] if theme["anchor"] in anchors else anchors[0],
                           "diagnosis": f"The section '{theme['anchor']}' does not say how to avoid this."})
    if "what_helped" in props:  # the first choice is a line added since the task failed
        return json.dumps({"what_helped": props["what_helped"]["enum"][0], "robust": True})
    if "candidates" in props:
        return json.dumps({"candidates": [scripted_answer(schema, theme["anchor"], theme["add"],
                                                          f"fixes: {theme['label']}")]})
    return _minimal(schema)


def _minimal(schema: dict[str, Any]) -> str:
    """Some valid instance for a schema this script does not know (keeps a new role from hanging)."""
    def value(s: dict[str, Any]) -> Any:
        if "enum" in s:
            return s["enum"][0]
        if "anyOf" in s:
            return value(s["anyOf"][0])
        t = s.get("type")
        if t == "object":
            return {k: value(v) for k, v in s.get("properties", {}).items() if k in s.get("required", [])}
        if t == "array":
            return [value(s.get("items", {})) for _ in range(s.get("minItems", 0))]
        if t == "boolean":
            return False
        if t in ("integer", "number"):
            return s.get("minimum", 0)
        return "x" * max(1, s.get("minLength", 1))
    return json.dumps(value(schema))


def scripted_backend_factory(answer: str = "4", delay_s: float = 0.0) -> Callable[[str], Backend]:
    """backend_factory for SkillgradApp: one scripted backend shared by every role.

    delay_s makes each call take that long (and honour cancellation meanwhile), so tests can
    press keys while a run is in flight.
    """
    import threading

    pause = threading.Event()

    def slow(req: CompletionRequest) -> str:
        if delay_s:
            pause.wait(delay_s)
        return respond(req, answer)

    backend = scripted_backend(slow)
    return lambda role: backend
