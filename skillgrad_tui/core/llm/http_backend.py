"""A Backend for OpenAI-compatible servers: llama.cpp's llama-server, llama-cpp-python's server,
vLLM, Ollama.

Every request streams (SSE) so that a CancelToken is honoured between tokens. Transport failures
(connect errors, timeouts, 429, 5xx, a stream cut short) are retried with exponential backoff and
jitter; other 4xx are the request's fault and fail at once. Several worker threads may call
`complete()` together: a semaphore bounds the requests in flight so a server with several slots
is kept busy without being flooded.

The servers disagree on how a JSON schema is passed (see `_schema_fields`), so the backend first
asks the server what it is (`probe()`), sends the form that server reads, falls back to a weaker
form if the server rejects it, and always validates the answer itself (`complete_with_schema`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

import httpx

from skillgrad_tui.core.llm.errors import BackendError, PromptTooLong
from skillgrad_tui.core.llm.base import CancelToken, Completion, CompletionRequest, Usage
from skillgrad_tui.core.llm.jsonout import complete_with_schema
from skillgrad_tui.core.llm.loops import looping_tail

log = logging.getLogger(__name__)

DEFAULT_N_CTX = 4096
# Server families, told apart by `/v1/models` owned_by and `/props` (llama.cpp only).
LLAMA_CPP = "llama.cpp"
LLAMA_CPP_PYTHON = "llama-cpp-python"
VLLM = "vllm"
OPENAI = "openai"  # anything else that speaks the OpenAI API (Ollama included)

_RETRY_STATUS = {429, 500, 502, 503, 504}
_MAX_RETRY_AFTER_S = 30.0


class _Retryable(Exception):
    """One attempt failed in a way a later attempt may not (network, overload, cut stream)."""


class _Rejected(Exception):
    """The server refused the request itself (4xx other than 429): retrying cannot help."""

    def __init__(self, status: int, message: str, body: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body


@dataclass
class _Stream:
    """What one streamed response delivered."""

    text: list[str] = field(default_factory=list)
    chunks: int = 0  # content-bearing chunks: the token count when the server sends no usage
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    cancelled: bool = False
    looped: bool = False  # we hung up because the output repeated one cycle (loops.py)


class HttpBackend:
    """Backend for an OpenAI-compatible HTTP server at `base_url` (with or without `/v1`)."""

    def __init__(self, base_url: str, model: str | None = None, *, api_key: str | None = None,
                 timeout_s: float = 120, retries: int = 3, backoff_s: float = 0.5,
                 max_concurrency: int = 4, model_id: str | None = None,
                 n_ctx: int | None = None, dialect: str | None = None) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        base = base_url.rstrip("/")
        if base.endswith("/v1"):  # accept the OpenAI-client habit of including /v1
            base = base[: -len("/v1")]
        self.base_url = base
        self.model = model
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_concurrency = max_concurrency
        self._given_model_id = model_id
        self._given_n_ctx = n_ctx
        self._dialect = dialect
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base, headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=max_concurrency + 2,
                                max_keepalive_connections=max_concurrency + 2))
        self._probe_lock = threading.Lock()
        self._probed = False
        self._n_ctx = n_ctx or DEFAULT_N_CTX
        self._sem = threading.BoundedSemaphore(max_concurrency)
        self.concurrency = max_concurrency  # may shrink to what the server can run at once
        self._tokenize_path: str | None | bool = None  # None: not tried; False: server has none
        # Schema forms that worked per endpoint, learnt when a server rejects the stronger one.
        self._schema_modes: dict[str, list[str]] = {}
        self.server_info: dict[str, Any] = {}
        self.failed_attempts = 0  # attempts that failed and were retried or gave up: a health sign
        self._count_lock = threading.Lock()

    # --- identity --------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """Cache identity: the given id, else the URL and the model the server serves."""
        if self._given_model_id is not None:
            return self._given_model_id
        self.probe()
        return f"http:{self.base_url}:{self.model}"

    @property
    def n_ctx(self) -> int:
        self.probe()
        return self._n_ctx

    @property
    def dialect(self) -> str:
        self.probe()
        assert self._dialect is not None
        return self._dialect

    def probe(self) -> None:
        """Ask the server which family it is, which model it serves and its context size.

        Done once, lazily, so constructing a backend never needs the server to be up.
        """
        with self._probe_lock:
            if self._probed:
                return
            models = self._get_json("/v1/models", optional=True)
            entries = models.get("data") if isinstance(models, dict) else None
            first: dict[str, Any] = entries[0] if entries and isinstance(entries[0], dict) else {}
            if self.model is None and first.get("id"):
                self.model = str(first["id"])
            owned_by = str(first.get("owned_by", ""))
            guess = {"llamacpp": LLAMA_CPP, "me": LLAMA_CPP_PYTHON, "vllm": VLLM}.get(owned_by)
            props: dict[str, Any] = {}
            if guess in (None, LLAMA_CPP):
                found = self._get_json("/props", optional=True, retry=False)
                if isinstance(found, dict) and ("default_generation_settings" in found
                                                or "total_slots" in found):
                    props, guess = found, LLAMA_CPP
            if self._dialect is None:
                self._dialect = guess or OPENAI
            self.server_info = {"dialect": self._dialect, "model": self.model,
                                "owned_by": owned_by or None}

            meta_found = first.get("meta")
            meta = meta_found if isinstance(meta_found, dict) else {}
            settings = props.get("default_generation_settings") or {}
            candidates = (settings.get("n_ctx"), props.get("n_ctx"),  # llama.cpp, per slot
                          first.get("max_model_len"),  # vLLM
                          self._given_n_ctx,
                          meta.get("n_ctx_train"))  # the model's limit, not the server's
            self._n_ctx = next((int(v) for v in candidates if isinstance(v, int) and v > 0),
                               DEFAULT_N_CTX)
            self.server_info["n_ctx"] = self._n_ctx

            slots = props.get("total_slots")
            if self._dialect == LLAMA_CPP_PYTHON:
                # That server runs one request at a time and, by default, ends a running stream
                # early whenever another request is waiting: sending more than one at a time
                # would truncate answers, so requests are queued here instead.
                slots = 1
            if isinstance(slots, int) and 0 < slots < self.max_concurrency:
                self.concurrency = slots
                self._sem = threading.BoundedSemaphore(slots)
            self.server_info["concurrency"] = self.concurrency
            self._probed = True

    # --- completion ------------------------------------------------------------------------

    def complete(self, request: CompletionRequest, cancel: CancelToken | None = None) -> Completion:
        self.probe()
        return complete_with_schema(lambda req: self._complete_once(req, cancel), request)

    def complete_many(self, requests: list[CompletionRequest],
                      cancel: CancelToken | None = None) -> list[Completion]:
        """Run requests concurrently (up to the concurrency limit); results in request order."""
        if not requests:
            return []
        self.probe()
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests)),
                                thread_name_prefix="http-backend") as pool:
            return list(pool.map(lambda r: self.complete(r, cancel), requests))

    def _complete_once(self, request: CompletionRequest, cancel: CancelToken | None) -> Completion:
        chat = request.messages is not None
        path = "/v1/chat/completions" if chat else "/v1/completions"
        start = time.perf_counter()
        modes = self._schema_modes_for(path, chat) if request.json_schema is not None else [""]
        while True:
            body = self._body(request, modes[0])
            try:
                stream = self._with_retries(path, body, cancel, request.stop_on_loop)
                break
            except _Rejected as exc:
                if len(modes) > 1 and _about_schema(exc.message):
                    # The server refused this way of passing the schema; use the next weaker
                    # form from now on (validation still enforces the schema).
                    log.warning("%s%s rejected schema form %r (%s); trying %r", self.base_url,
                                path, modes[0], exc.message, modes[1])
                    modes = modes[1:]
                    self._schema_modes[path] = modes
                    continue
                raise self._rejection_error(path, exc) from None
        seconds = time.perf_counter() - start
        return Completion(text="".join(stream.text), usage=self._usage(request, stream, seconds),
                          finish_reason=_finish_reason(stream))

    def _body(self, request: CompletionRequest, schema_mode: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "top_k": request.top_k,  # not OpenAI's, but llama.cpp, vLLM and Ollama read it
            "seed": request.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.model is not None:
            body["model"] = self.model
        if request.stop:
            body["stop"] = list(request.stop)
        if request.messages is not None:
            body["messages"] = [_message(m.role, m.content, i)
                                for i, m in enumerate(request.messages)]
        else:
            body["prompt"] = request.prompt
        if self._dialect == LLAMA_CPP:
            body["cache_prompt"] = True  # reuse the KV cache for a shared prompt prefix
        if request.json_schema is not None and schema_mode:
            body.update(_schema_fields(schema_mode, request.json_schema))
        return body

    def _schema_modes_for(self, path: str, chat: bool) -> list[str]:
        """Schema forms to try, strongest first; the last ("") leaves it to validation."""
        if path in self._schema_modes:
            return self._schema_modes[path]
        if chat:
            if self._dialect == LLAMA_CPP_PYTHON:
                modes = ["json_object", ""]
            elif self._dialect == LLAMA_CPP:
                modes = ["json_object", "json_schema", ""]
            else:
                modes = ["json_schema", "json_object", ""]
        else:
            first = {LLAMA_CPP: "llama.cpp-completion", LLAMA_CPP_PYTHON: "gbnf",
                     VLLM: "json_schema"}.get(self._dialect or OPENAI, "")
            modes = [first, ""] if first else [""]
        return modes

    def _usage(self, request: CompletionRequest, stream: _Stream, seconds: float) -> Usage:
        usage = stream.usage or {}
        timings = stream.timings or {}
        completion_tokens = _int(usage.get("completion_tokens"))
        if completion_tokens is None:
            completion_tokens = _int(timings.get("predicted_n"))
        if completion_tokens is None:
            completion_tokens = stream.chunks
        prompt_tokens = _int(usage.get("prompt_tokens"))
        cached = _int((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
        if cached is None:
            cached = _int(timings.get("cache_n"))
        if prompt_tokens is None and timings:
            # llama.cpp: prompt_n tokens were evaluated, cache_n were reused from the KV cache.
            prompt_tokens = (_int(timings.get("prompt_n")) or 0) + (cached or 0)
        if prompt_tokens is None:
            # No usage from this server (llama-cpp-python does not stream it): count the text;
            # for chat this misses the template's few tokens.
            text = request.prompt if request.prompt is not None else "\n".join(
                m.content for m in request.messages or ())
            prompt_tokens = self.count_tokens(text)
        return Usage(prompt_tokens=prompt_tokens, cached_prompt_tokens=cached or 0,
                     completion_tokens=completion_tokens, seconds=seconds)

    # --- transport -------------------------------------------------------------------------

    def _with_retries(self, path: str, body: dict[str, Any],
                      cancel: CancelToken | None, watch_loops: bool = False) -> _Stream:
        url = self.base_url + path
        reason = ""
        if cancel is not None and cancel.cancelled:
            return _Stream(cancelled=True)
        for attempt in range(self.retries + 1):
            if attempt:
                if not _sleep(self._delay(attempt, reason), cancel):
                    return _Stream(cancelled=True)
            sem = self._sem
            # Wait for a slot in short slices: a cancel must not wait behind other requests.
            while not sem.acquire(timeout=0.05):
                if cancel is not None and cancel.cancelled:
                    return _Stream(cancelled=True)
            try:
                return self._stream_once(path, body, cancel, watch_loops)
            except _Retryable as exc:
                reason = str(exc)
                with self._count_lock:
                    self.failed_attempts += 1
                log.info("POST %s failed (attempt %d of %d): %s", url, attempt + 1,
                         self.retries + 1, reason)
            finally:
                sem.release()
        raise BackendError(f"POST {url} failed after {self.retries + 1} attempts: {reason}")

    def _delay(self, attempt: int, reason: str) -> float:
        retry_after = re.search(r"retry-after=([0-9.]+)", reason)
        if retry_after:
            return min(float(retry_after.group(1)), _MAX_RETRY_AFTER_S)
        # Exponential backoff with jitter, so workers that failed together do not return together.
        return self.backoff_s * (2.0 ** (attempt - 1)) * random.uniform(0.5, 1.5)

    def _stream_once(self, path: str, body: dict[str, Any],
                     cancel: CancelToken | None, watch_loops: bool = False) -> _Stream:
        result = _Stream()
        try:
            with self._client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for_status(response)
                for event in _sse_events(response.iter_lines()):
                    if cancel is not None and cancel.cancelled:
                        # Leaving the block closes the connection; servers stop generating when
                        # they notice the client has gone.
                        result.cancelled = True
                        return result
                    if "error" in event:
                        raise _stream_error(event["error"])
                    _absorb(event, result)
                    if watch_loops and result.chunks % 8 == 0 and looping_tail(result.text):
                        result.looped = True  # leaving the block hangs up, as for a cancel
                        return result
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timed out ({type(exc).__name__})") from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
        if cancel is not None and cancel.cancelled:
            result.cancelled = True
        elif result.finish_reason is None:
            # llama-cpp-python's server ends a stream this way when another request arrives.
            raise _Retryable("the stream ended before the server said why it stopped")
        return result

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        status = response.status_code
        try:
            payload: Any = response.json()
        except ValueError:
            payload = response.text
        message = _error_message(payload) or response.reason_phrase or f"HTTP {status}"
        # llama-cpp-python reports a request that fails validation as HTTP 500: deterministic,
        # so it is a rejection, not an outage worth retrying.
        if status in _RETRY_STATUS and "validation error" not in message.lower():
            after = response.headers.get("retry-after", "")
            hint = f" retry-after={after}" if re.fullmatch(r"[0-9.]+", after.strip()) else ""
            raise _Retryable(f"HTTP {status}: {message}{hint}")
        raise _Rejected(status, message, payload)

    def _rejection_error(self, path: str, exc: _Rejected) -> BackendError:
        if _about_context(exc.message):
            numbers = _context_numbers(exc.body, exc.message)
            if numbers is not None:
                return PromptTooLong(*numbers)
        hint = " (check the API key)" if exc.status in (401, 403) else ""
        return BackendError(f"POST {self.base_url}{path} was refused: HTTP {exc.status}: "
                            f"{exc.message}{hint}")

    def _get_json(self, path: str, *, optional: bool = False, retry: bool = True) -> Any:
        """GET a JSON document; None when `optional` and the server has no such endpoint."""
        url = self.base_url + path
        reason = ""
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self._delay(attempt, reason))
            try:
                response = self._client.get(path)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in _RETRY_STATUS:
                reason = f"HTTP {response.status_code}"
                continue
            if response.status_code in (401, 403):
                raise BackendError(f"GET {url}: HTTP {response.status_code} (check the API key)")
            if response.status_code >= 400:
                if optional:
                    return None
                raise BackendError(f"GET {url}: HTTP {response.status_code}")
            try:
                return response.json()
            except ValueError:
                return None
        if not retry:
            return None  # an optional extra probe: its absence is not an error
        raise BackendError(f"GET {url} failed after {attempts} attempts: {reason} "
                           "(is the server running?)")

    # --- tokens ----------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """The server's own token count where it offers one, else about 4 characters a token."""
        if not text:
            return 0
        self.probe()
        if self._tokenize_path is None:
            order = {LLAMA_CPP_PYTHON: ["/extras/tokenize/count", "/tokenize"]}.get(
                self._dialect or OPENAI, ["/tokenize", "/extras/tokenize/count"])
            for path in order:
                count = self._tokenize(path, text)
                if count is not None:
                    self._tokenize_path = path
                    return count
            self._tokenize_path = False
        if isinstance(self._tokenize_path, str):
            count = self._tokenize(self._tokenize_path, text)
            if count is not None:
                return count
        return max(1, (len(text) + 3) // 4)

    def _tokenize(self, path: str, text: str) -> int | None:
        # One body for all three servers: llama.cpp reads "content", vLLM "prompt",
        # llama-cpp-python "input"; each ignores the others.
        body: dict[str, Any] = {"content": text, "prompt": text, "input": text,
                                "add_special": False}
        if self.model is not None:
            body["model"] = self.model
        # llama-cpp-python's tokenizer endpoint waits for the model lock too, and its arrival
        # would cut short a running stream: it queues with the completions.
        guard = self._sem if self._dialect == LLAMA_CPP_PYTHON else contextlib.nullcontext()
        try:
            with guard:
                response = self._client.post(path, json=body)
            if response.status_code >= 400:
                return None
            payload = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        if isinstance(payload.get("count"), int):
            return int(payload["count"])
        if isinstance(payload.get("tokens"), list):
            return len(payload["tokens"])
        return None

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"HttpBackend({self.base_url!r}, model={self.model!r}, dialect={self._dialect!r})"


# --- helpers ---------------------------------------------------------------------------------

def _message(role: str, content: str, index: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": role, "content": content}
    if role == "tool":
        # Validating servers (llama-cpp-python, vLLM) require an id on a tool result.
        message["tool_call_id"] = f"call_{index}"
    return message


def _schema_fields(mode: str, schema: dict[str, Any]) -> dict[str, Any]:
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


def _sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
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
            raise _Retryable(f"unreadable stream event {data[:80]!r}") from None
        if isinstance(event, dict):
            yield event


def _absorb(event: dict[str, Any], result: _Stream) -> None:
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


def _finish_reason(stream: _Stream) -> str:
    if stream.cancelled:
        return "cancelled"
    if stream.looped:
        return "loop"
    return "length" if stream.finish_reason == "length" else "stop"


def _stream_error(error: Any) -> Exception:
    message = _error_message({"error": error}) or "error in stream"
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and 400 <= code < 500 and code != 429:
        return _Rejected(code, message, {"error": error})
    return _Retryable(f"server error in stream: {message}")


def _error_message(payload: Any) -> str:
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


def _about_schema(message: str) -> bool:
    text = message.lower()
    return not _about_context(message) and any(
        w in text for w in ("response_format", "json_schema", "schema", "grammar", "json_object"))


def _about_context(message: str) -> bool:
    text = message.lower()
    return "context" in text and any(w in text for w in ("exceed", "length", "too long", "size"))


def _context_numbers(body: Any, message: str) -> tuple[int, int] | None:
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


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _sleep(seconds: float, cancel: CancelToken | None) -> bool:
    """Sleep, waking early on cancel; False if cancelled."""
    deadline = time.monotonic() + seconds
    while True:
        if cancel is not None and cancel.cancelled:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.05))
