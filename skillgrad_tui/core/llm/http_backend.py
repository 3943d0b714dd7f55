"""A Backend for OpenAI-compatible servers: llama.cpp's llama-server, llama-cpp-python's server,
vLLM, Ollama.

Every request streams (SSE) so that a CancelToken is honoured between tokens. Transport failures
(connect errors, timeouts, 429, 5xx, a stream cut short) are retried with exponential backoff and
jitter; other 4xx are the request's fault and fail at once. Several worker threads may call
`complete()` together: a semaphore bounds the requests in flight so a server with several slots
is kept busy without being flooded.

The servers disagree on how a JSON schema is passed (see `http_requests.schema_fields`), so the backend first
asks the server what it is (`probe()`), sends the form that server reads, falls back to a weaker
form if the server rejects it, and always validates the answer itself (`complete_with_schema`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from skillgrad_tui.core.llm.errors import BackendError, PromptTooLong
from skillgrad_tui.core.llm.base import CancelToken, Completion, CompletionRequest
from skillgrad_tui.core.llm.http_requests import (DEFAULT_N_CTX, LLAMA_CPP, LLAMA_CPP_PYTHON, OPENAI, VLLM,
                                                  about_context, about_schema, context_numbers, schema_fields,
                                                  usage_of, wire_message)
from skillgrad_tui.core.llm.http_stream import (RETRY_STATUS, Rejected, Retryable, Stream, absorb,
                                                finish_reason, raise_for_status, retry_delay,
                                                sleep_unless_cancelled, sse_events, stream_error)
from skillgrad_tui.core.llm.jsonout import complete_with_schema
from skillgrad_tui.core.llm.loops import looping_tail

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_N_CTX", "HttpBackend", "LLAMA_CPP", "LLAMA_CPP_PYTHON", "OPENAI", "VLLM"]


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
            except Rejected as exc:
                if len(modes) > 1 and about_schema(exc.message):
                    # The server refused this way of passing the schema; use the next weaker
                    # form from now on (validation still enforces the schema).
                    log.warning("%s%s rejected schema form %r (%s); trying %r", self.base_url,
                                path, modes[0], exc.message, modes[1])
                    modes = modes[1:]
                    self._schema_modes[path] = modes
                    continue
                raise self._rejection_error(path, exc) from None
        seconds = time.perf_counter() - start
        return Completion(text="".join(stream.text), usage=usage_of(request, stream, seconds, self.count_tokens),
                          finish_reason=finish_reason(stream))

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
            body["messages"] = [wire_message(m.role, m.content, i)
                                for i, m in enumerate(request.messages)]
        else:
            body["prompt"] = request.prompt
        if self._dialect == LLAMA_CPP:
            body["cache_prompt"] = True  # reuse the KV cache for a shared prompt prefix
        if request.json_schema is not None and schema_mode:
            body.update(schema_fields(schema_mode, request.json_schema))
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

    # --- transport -------------------------------------------------------------------------

    def _with_retries(self, path: str, body: dict[str, Any],
                      cancel: CancelToken | None, watch_loops: bool = False) -> Stream:
        url = self.base_url + path
        reason = ""
        if cancel is not None and cancel.cancelled:
            return Stream(cancelled=True)
        for attempt in range(self.retries + 1):
            if attempt:
                if not sleep_unless_cancelled(retry_delay(self.backoff_s, attempt, reason), cancel):
                    return Stream(cancelled=True)
            sem = self._sem
            # Wait for a slot in short slices: a cancel must not wait behind other requests.
            while not sem.acquire(timeout=0.05):
                if cancel is not None and cancel.cancelled:
                    return Stream(cancelled=True)
            try:
                return self._stream_once(path, body, cancel, watch_loops)
            except Retryable as exc:
                reason = str(exc)
                with self._count_lock:
                    self.failed_attempts += 1
                log.info("POST %s failed (attempt %d of %d): %s", url, attempt + 1,
                         self.retries + 1, reason)
            finally:
                sem.release()
        raise BackendError(f"POST {url} failed after {self.retries + 1} attempts: {reason}")

    def _stream_once(self, path: str, body: dict[str, Any],
                     cancel: CancelToken | None, watch_loops: bool = False) -> Stream:
        result = Stream()
        try:
            with self._client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise_for_status(response)
                for event in sse_events(response.iter_lines()):
                    if cancel is not None and cancel.cancelled:
                        # Leaving the block closes the connection; servers stop generating when
                        # they notice the client has gone.
                        result.cancelled = True
                        return result
                    if "error" in event:
                        raise stream_error(event["error"])
                    absorb(event, result)
                    if watch_loops and result.chunks % 8 == 0 and looping_tail(result.text):
                        result.looped = True  # leaving the block hangs up, as for a cancel
                        return result
        except httpx.TimeoutException as exc:
            raise Retryable(f"timed out ({type(exc).__name__})") from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from None
        if cancel is not None and cancel.cancelled:
            result.cancelled = True
        elif result.finish_reason is None:
            # llama-cpp-python's server ends a stream this way when another request arrives.
            raise Retryable("the stream ended before the server said why it stopped")
        return result

    def _rejection_error(self, path: str, exc: Rejected) -> BackendError:
        if about_context(exc.message):
            numbers = context_numbers(exc.body, exc.message)
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
                time.sleep(retry_delay(self.backoff_s, attempt, reason))
            try:
                response = self._client.get(path)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in RETRY_STATUS:
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
