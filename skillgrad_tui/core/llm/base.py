"""The backend contract every model implementation honours (design.md, "Contracts").

`Backend.complete(request) -> Completion`. A request carries either chat messages or a raw
prompt, sampling parameters with an explicit seed, a token limit, stop strings and an optional
JSON schema. A completion carries the text, the parsed and validated JSON (when a schema was
given) and the usage. One backend instance serves one worker at a time unless it says otherwise.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from skillgrad_tui.core.llm.errors import Cancelled

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class CompletionRequest:
    """Everything that determines a model's answer; its `key()` is the response cache key."""

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 0.0  # 0 is greedy
    top_p: float = 1.0
    top_k: int = 40
    seed: int = 0
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None
    json_attempts: int = 3  # bounded retries when the output does not parse or validate
    stop_on_loop: bool = False  # end early when the output repeats one short cycle (loops.py)

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a request needs exactly one of messages or prompt")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.json_attempts < 1:
            raise ValueError("json_attempts must be at least 1")

    @staticmethod
    def chat(*pairs: tuple[Role, str], **kwargs: Any) -> "CompletionRequest":
        return CompletionRequest(messages=tuple(Message(r, c) for r, c in pairs), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["messages"] = [asdict(m) for m in self.messages] if self.messages is not None else None
        d["stop"] = list(self.stop)
        if not self.stop_on_loop:
            del d["stop_on_loop"]  # absent when off, so keys from before the option still match
        return d

    def key(self, model_id: str) -> str:
        """Stable hash of the model identity and the whole request."""
        payload = json.dumps({"model": model_id, "request": self.to_dict()}, sort_keys=True,
                             ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class Usage:
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens reused from the KV cache (not re-evaluated)
    completion_tokens: int = 0
    seconds: float = 0.0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.cached_prompt_tokens + other.cached_prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.seconds + other.seconds,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Completion:
    text: str
    usage: Usage
    finish_reason: str = "stop"  # "stop" | "length" | "cancelled"
    json: Any = None  # parsed and schema-validated, when the request had a schema
    from_cache: bool = False  # served by the response cache, not the model
    attempts: int = 1  # model calls it took (JSON retries count)
    invalid_outputs: int = 0  # outputs rejected by JSON parsing or validation along the way

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "usage": self.usage.to_dict(),
            "finish_reason": self.finish_reason,
            "json": self.json,
            "attempts": self.attempts,
            "invalid_outputs": self.invalid_outputs,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Completion":
        return Completion(
            text=d["text"],
            usage=Usage(**d["usage"]),
            finish_reason=d.get("finish_reason", "stop"),
            json=d.get("json"),
            attempts=d.get("attempts", 1),
            invalid_outputs=d.get("invalid_outputs", 0),
        )


class CancelToken:
    """Set from any thread; backends check it between generated tokens.

    A token made with a `parent` is also cancelled when the parent is: concurrent evaluation gives
    each task in flight its own token, so one can be stopped without touching the caller's.
    """

    def __init__(self, parent: "CancelToken | None" = None) -> None:
        self._event = threading.Event()
        self.parent = parent

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or (self.parent is not None and self.parent.cancelled)

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled()


@runtime_checkable
class Backend(Protocol):
    """A text model. `model_id` identifies the weights (sha256 for GGUF files) for caching."""

    # Read-only to callers: wrappers (WrappedBackend) report the inner model's as properties.
    @property
    def model_id(self) -> str:
        ...

    @property
    def n_ctx(self) -> int:
        ...

    def complete(self, request: CompletionRequest, cancel: CancelToken | None = None) -> Completion:
        ...

    def count_tokens(self, text: str) -> int:
        ...

    def close(self) -> None:
        ...


# What some backends offer beyond Backend, found with isinstance (runtime_checkable): a wrapper or
# a scheduler asks for the capability, not for a class.

@runtime_checkable
class Probed(Protocol):
    """A backend with a server to check before work starts (HttpBackend): raises if unusable."""

    def probe(self) -> None:
        ...


@runtime_checkable
class Concurrent(Protocol):
    """A backend that answers several requests at once (HttpBackend: the server's slots)."""

    concurrency: int


@runtime_checkable
class Batched(Protocol):
    """A backend that runs a list of requests itself (concurrently), answers in request order."""

    def complete_many(self, requests: list[CompletionRequest],
                      cancel: CancelToken | None = None) -> list[Completion]:
        ...


class WrappedBackend:
    """Base for wrappers that add behaviour around a model (response cache, token metering):
    they report the wrapped model's identity and limits and tokenise with it."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def n_ctx(self) -> int:
        return self.inner.n_ctx

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def close(self) -> None:
        self.inner.close()


def concurrency_limit(backend: Backend) -> int:
    """How many requests the real model behind `backend` runs at once (1 unless it says more).

    Walks wrappers (response cache, token meter) to the model. An HTTP backend is probed first,
    since the server's slots may lower its limit; a server that cannot be probed gets 1, and the
    first task reports the error as it always has.
    """
    real: Backend | WrappedBackend = backend
    while isinstance(real, WrappedBackend):
        real = real.inner
    if isinstance(real, Probed):
        try:
            real.probe()
        except Exception:  # noqa: BLE001 - reported by the task that uses the backend
            return 1
    limit = real.concurrency if isinstance(real, Concurrent) else 1
    return limit if isinstance(limit, int) and limit >= 1 else 1
