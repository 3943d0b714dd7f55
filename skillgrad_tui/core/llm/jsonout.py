"""Schema-constrained JSON: parse, validate, retry within a bound, then fail clearly.

Backends constrain decoding with a grammar built from the schema, but a grammar cannot stop a
model from running out of tokens mid-object, and servers may ignore the constraint. So every
answer is parsed and validated here, and a bad one is retried with the next seed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Callable

import jsonschema

from skillgrad_tui.core.llm.errors import OutputInvalid
from skillgrad_tui.core.llm.base import Completion, CompletionRequest, Usage


def parse_json_output(text: str, schema: dict[str, Any]) -> Any:
    """Return the validated JSON value in `text`, or raise ValueError saying why not."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty output")
    # Tolerate a fenced block or prose around the object: take the outermost braces/brackets.
    if stripped[0] not in "{[":
        starts = [i for i in (stripped.find("{"), stripped.find("[")) if i >= 0]
        if not starts:
            raise ValueError("no JSON object in output")
        stripped = stripped[min(starts):]
    try:
        value, _ = json.JSONDecoder().raw_decode(stripped)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at char {exc.pos}") from None
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ValueError(f"schema violation at {path}: {exc.message}") from None
    return value


def complete_with_schema(once: Callable[[CompletionRequest], Completion],
                         request: CompletionRequest) -> Completion:
    """Call `once` until its output validates against the request's schema (if any).

    Retries change only the seed (seed + attempt), so a greedy model at temperature 0 is
    nudged with a little temperature to escape a deterministic bad answer.
    """
    if request.json_schema is None:
        return once(request)
    total = Usage()
    last_text = ""
    last_error = ""
    for attempt in range(request.json_attempts):
        req = request if attempt == 0 else replace(
            request, seed=request.seed + attempt, temperature=max(request.temperature, 0.3))
        completion = once(req)
        total = total + completion.usage
        last_text = completion.text
        if completion.finish_reason == "cancelled":
            completion.usage = total
            return completion
        try:
            value = parse_json_output(completion.text, request.json_schema)
        except ValueError as exc:
            last_error = str(exc)
            continue
        completion.json = value
        completion.usage = total
        completion.attempts = attempt + 1
        completion.invalid_outputs = attempt
        return completion
    raise OutputInvalid(f"model output never matched the JSON schema: {last_error}",
                        request.json_attempts, last_text, total)
