"""The OpenAI request/response mapping that differs per server family: the families themselves,
a chat message on the wire, the fields that carry a JSON schema, and what a refusal says about
the request (a schema it cannot take, a prompt over the context).
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from skillgrad_tui.core.llm.base import CompletionRequest, Usage
from skillgrad_tui.core.llm.http_stream import Stream

DEFAULT_N_CTX = 4096
# Server families, told apart by `/v1/models` owned_by and `/props` (llama.cpp only).
LLAMA_CPP = "llama.cpp"
LLAMA_CPP_PYTHON = "llama-cpp-python"
VLLM = "vllm"
OPENAI = "openai"  # anything else that speaks the OpenAI API (Ollama included)


def wire_message(role: str, content: str, index: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": role, "content": content}
    if role == "tool":
        # Validating servers (llama-cpp-python, vLLM) require an id on a tool result.
        message["tool_call_id"] = f"call_{index}"
    return message


def schema_fields(mode: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Request fields that carry a JSON schema, per server family.

    - "json_schema": OpenAI's `{"type": "json_schema", "json_schema": {"schema": ...}}`, read by
      vLLM and Ollama, and by llama-server since early 2025 (older builds ignored it silently).
    - "json_object": `{"type": "json_object", "schema": ...}`. The only form llama-cpp-python's
      server accepts (type "json_schema" fails its validation), and the one every llama-server
      version reads. Not llama-server's top-level `json_schema` on chat: with a Jinja template the
      server also builds a grammar from the schema, and builds from 2025 answer HTTP 400 "either
      json_schema or grammar, not both".
    - "llama.cpp-completion": top-level `json_schema`, which llama-server reads on /v1/completions.
    - "gbnf": llama-cpp-python's /v1/completions takes no schema, only a GBNF `grammar`.
    """
    openai_form = {"type": "json_schema",
                   "json_schema": {"name": "output", "strict": True, "schema": schema}}
    if mode == "json_schema":
        return {"response_format": openai_form}
    if mode == "json_object":
        return {"response_format": {"type": "json_object", "schema": schema}}
    if mode == "llama.cpp-completion":
        return {"json_schema": schema}
    if mode == "gbnf":
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        return {"grammar": json_schema_to_gbnf(json.dumps(schema))}
    raise ValueError(f"unknown schema mode {mode!r}")


def about_schema(message: str) -> bool:
    text = message.lower()
    return not about_context(message) and any(
        w in text for w in ("response_format", "json_schema", "schema", "grammar", "json_object"))


def about_context(message: str) -> bool:
    text = message.lower()
    return "context" in text and any(w in text for w in ("exceed", "length", "too long", "size"))


def context_numbers(body: Any, message: str) -> tuple[int, int] | None:
    """(prompt tokens, context size) from a context-overflow error, where the server says them."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("n_prompt_tokens"), int) \
            and isinstance(error.get("n_ctx"), int):  # llama.cpp
        return int(error["n_prompt_tokens"]), int(error["n_ctx"])
    # llama-cpp-python / vLLM: "maximum context length is 2048 tokens. However, you requested
    # 3000 tokens (2990 in the messages, 10 in the completion)"
    limit = re.search(r"context (?:length|window) (?:is |of )?(\d+)", message)
    asked = re.search(r"\((\d+) in the (?:messages|prompt)", message) or re.search(
        r"requested (\d+) tokens", message) or re.search(r"Requested tokens \((\d+)\)", message)
    if limit and asked:
        return int(asked.group(1)), int(limit.group(1))
    return None


def as_int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def usage_of(request: CompletionRequest, stream: Stream, seconds: float,
             count_tokens: Callable[[str], int]) -> Usage:
    usage = stream.usage or {}
    timings = stream.timings or {}
    completion_tokens = as_int(usage.get("completion_tokens"))
    if completion_tokens is None:
        completion_tokens = as_int(timings.get("predicted_n"))
    if completion_tokens is None:
        completion_tokens = stream.chunks
    prompt_tokens = as_int(usage.get("prompt_tokens"))
    cached = as_int((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
    if cached is None:
        cached = as_int(timings.get("cache_n"))
    if prompt_tokens is None and timings:
        # llama.cpp: prompt_n tokens were evaluated, cache_n were reused from the KV cache.
        prompt_tokens = (as_int(timings.get("prompt_n")) or 0) + (cached or 0)
    if prompt_tokens is None:
        # No usage from this server (llama-cpp-python does not stream it): count the text;
        # for chat this misses the template's few tokens.
        text = request.prompt if request.prompt is not None else "\n".join(
            m.content for m in request.messages or ())
        prompt_tokens = count_tokens(text)
    return Usage(prompt_tokens=prompt_tokens, cached_prompt_tokens=cached or 0,
                 completion_tokens=completion_tokens, seconds=seconds)
