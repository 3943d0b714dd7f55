"""Reading one streamed (SSE) response from an OpenAI-compatible server, and the two ways an
attempt fails: `Retryable` (network, overload, a cut stream) or `Rejected` (the request's fault).

The HTTP backend's transport (http_backend.py) retries the first and maps the second to an error.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import httpx

from skillgrad_tui.core.llm.base import CancelToken

RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_RETRY_AFTER_S = 30.0


class Retryable(Exception):
    """One attempt failed in a way a later attempt may not (network, overload, cut stream)."""


class Rejected(Exception):
    """The server refused the request itself (4xx other than 429): retrying cannot help."""

    def __init__(self, status: int, message: str, body: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body


@dataclass
class Stream:
    """What one streamed response delivered."""

    text: list[str] = field(default_factory=list)
    chunks: int = 0  # content-bearing chunks: the token count when the server sends no usage
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    cancelled: bool = False
    looped: bool = False  # we hung up because the output repeated one cycle (loops.py)


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """JSON payloads of `data:` lines, until `[DONE]`; comments and pings are skipped."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        if not data:
            continue
        try:
            event = json.loads(data)
        except ValueError:
            raise Retryable(f"unreadable stream event {data[:80]!r}") from None
        if isinstance(event, dict):
            yield event


def absorb(event: dict[str, Any], result: Stream) -> None:
    if isinstance(event.get("usage"), dict):
        result.usage = event["usage"]
    if isinstance(event.get("timings"), dict):
        result.timings = event["timings"]
    for choice in event.get("choices") or ():
        delta = choice.get("delta")
        piece = (delta or {}).get("content") if isinstance(delta, dict) else choice.get("text")
        if piece:
            result.text.append(piece)
            result.chunks += 1
        if choice.get("finish_reason"):
            result.finish_reason = str(choice["finish_reason"])


def finish_reason(stream: Stream) -> str:
    if stream.cancelled:
        return "cancelled"
    if stream.looped:
        return "loop"
    return "length" if stream.finish_reason == "length" else "stop"


def stream_error(error: Any) -> Exception:
    message = error_message({"error": error}) or "error in stream"
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and 400 <= code < 500 and code != 429:
        return Rejected(code, message, {"error": error})
    return Retryable(f"server error in stream: {message}")


def error_message(payload: Any) -> str:
    if isinstance(payload, dict):
        error = payload.get("error", payload.get("detail", payload.get("message")))
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if isinstance(error, list):  # FastAPI validation errors
            return "; ".join(str(e.get("msg", e)) if isinstance(e, dict) else str(e)
                             for e in error)
        if error is not None:
            return str(error)
        return json.dumps(payload)[:500]
    return str(payload or "")[:500]


def sleep_unless_cancelled(seconds: float, cancel: CancelToken | None) -> bool:
    """Sleep, waking early on cancel; False if cancelled."""
    deadline = time.monotonic() + seconds
    while True:
        if cancel is not None and cancel.cancelled:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.05))


def retry_delay(backoff_s: float, attempt: int, reason: str) -> float:
    retry_after = re.search(r"retry-after=([0-9.]+)", reason)
    if retry_after:
        return min(float(retry_after.group(1)), MAX_RETRY_AFTER_S)
    # Exponential backoff with jitter, so workers that failed together do not return together.
    return backoff_s * (2.0 ** (attempt - 1)) * random.uniform(0.5, 1.5)


def raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    try:
        payload: Any = response.json()
    except ValueError:
        payload = response.text
    message = error_message(payload) or response.reason_phrase or f"HTTP {status}"
    # llama-cpp-python reports a request that fails validation as HTTP 500: deterministic,
    # so it is a rejection, not an outage worth retrying.
    if status in RETRY_STATUS and "validation error" not in message.lower():
        after = response.headers.get("retry-after", "")
        hint = f" retry-after={after}" if re.fullmatch(r"[0-9.]+", after.strip()) else ""
        raise Retryable(f"HTTP {status}: {message}{hint}")
    raise Rejected(status, message, payload)
