"""The in-process llama.cpp backend (llama-cpp-python).

We drive `Llama.generate` token by token instead of `create_completion` so that we can stop
between tokens when the user cancels, count how many prompt tokens the KV cache already held,
and apply stop strings and JSON grammars ourselves, with no per-token work beyond what
`create_completion` itself would do (the benchmark checks the ratio).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from skillgrad_tui.core.llm.errors import BackendError, ModelError, PromptTooLong
from skillgrad_tui.core.llm.base import CancelToken, Completion, CompletionRequest, Usage
from skillgrad_tui.core.llm.constrained import (GrammarStats, SamplingParams, constrained_tokens,
                                              reusable_prefix)
from skillgrad_tui.core.llm.gguf_info import read_gguf_info
from skillgrad_tui.core.llm.jsonout import complete_with_schema
from skillgrad_tui.core.llm.loops import looping_tail
from skillgrad_tui.core.llm.native import RepackSetting, model_params, repack_decision
from skillgrad_tui.core.llm.prompting import PromptFormat, choose_format


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_LOG_CALLBACK: Any = None  # keep the ctypes callback alive for the life of the process


def _quiet_llama_logs() -> None:
    """Send llama.cpp's own logging to Python logging instead of stderr.

    llama.cpp writes to stderr even with verbose=False (and llama-cpp-python resets its logger
    level in every Llama() call); inside a terminal app that corrupts the screen.
    """
    global _LOG_CALLBACK
    import ctypes
    import logging

    import llama_cpp

    if _LOG_CALLBACK is None:
        log = logging.getLogger("skillgrad.llama_cpp")

        def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            log.debug(text.decode("utf-8", errors="replace").rstrip())

        _LOG_CALLBACK = llama_cpp.llama_log_callback(forward)
    llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


def gpu_offload_available() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


GRAMMAR_MAX_LENGTH = 64  # longer string bounds are left to validation, not the grammar
_LITERAL_ESCAPE = re.compile(r'[\r\n"\\]')
_LITERAL_ESCAPES = {"\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\"}


def schema_grammar(schema_json: str) -> str:
    """GBNF for a JSON schema: llama-cpp-python's converter with its string literals escaped right.

    Its own `_format_literal` (0.3.x) escapes quotes but not backslashes, so an enum value with a
    double quote in it (json.dumps writes it as \\") becomes a grammar llama.cpp cannot parse;
    llama.cpp says so on stderr only and samples with no grammar at all. A skill's lines and
    titles quote things ("Total", "how many"), so the schemas built from a skill hit it."""
    from llama_cpp import llama_grammar

    class Converter(llama_grammar.SchemaConverter):
        def _format_literal(self, literal: str) -> str:
            return '"' + _LITERAL_ESCAPE.sub(lambda m: _LITERAL_ESCAPES[m.group(0)], literal) + '"'

    make: Any = Converter  # the library's converter is untyped
    converter = make(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    schema = converter.resolve_refs(json.loads(schema_json), "stdin")
    converter.visit(schema, "")
    return str(converter.format_grammar())


def grammar_schema(schema: Any) -> Any:
    """The schema the grammar is built from: string length bounds above GRAMMAR_MAX_LENGTH dropped.

    llama.cpp spells `maxLength: n` as n nested optional rules: a 4000-character bound is refused
    outright ("exceeds sane defaults") and a few hundred make every token slow. The full schema,
    bounds included, is still enforced on the parsed answer (jsonout.complete_with_schema).
    """
    if isinstance(schema, list):
        return [grammar_schema(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: grammar_schema(v) for k, v in schema.items()}
    for bound in ("maxLength", "minLength"):
        if isinstance(out.get(bound), int) and out[bound] > GRAMMAR_MAX_LENGTH:
            del out[bound]
    return out


class LlamaBackend:
    def __init__(self, model_path: Path, *, model_id: str | None = None, n_ctx: int = 4096,
                 n_threads: int = 0, n_gpu_layers: int = -1, n_batch: int = 512,
                 repack: RepackSetting = "auto") -> None:
        from llama_cpp import Llama

        _quiet_llama_logs()
        model_path = Path(model_path)
        header = read_gguf_info(model_path)  # one-line ModelError for a bad file, before llama.cpp
        threads = n_threads or default_threads()
        self.repack = repack_decision(repack)  # off where llama.cpp's AMX path would crash
        try:
            with model_params(use_extra_bufts=self.repack.use_extra_bufts):
                self._llm = Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=threads,
                                  n_threads_batch=threads, n_gpu_layers=n_gpu_layers, n_batch=n_batch,
                                  verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"llama.cpp could not load the model: {exc}", model_path) from None
        _quiet_llama_logs()  # in case loading the model installed llama-cpp-python's callback again
        self.model_path = model_path
        self.model_id = model_id or f"gguf:{model_path.resolve()}:{model_path.stat().st_size}"
        self.n_ctx = self._llm.n_ctx()
        self.trained_context = header.context_length
        self.gpu_layers = n_gpu_layers if gpu_offload_available() else 0
        bos = self._token_text(self._llm.token_bos())
        eos = self._token_text(self._llm.token_eos())
        has_markers = len(self._llm.tokenize(b"<start_of_turn>", add_bos=False, special=True)) == 1
        self.prompt_format: PromptFormat = choose_format(header.chat_template, header.architecture,
                                                         has_markers, bos, eos)
        self._bos_text = bos
        self._grammars: dict[str, Any] = {}
        self.grammar_stats = GrammarStats()
        self._lock = threading.Lock()  # llama.cpp contexts are not thread-safe

    # -- helpers ---------------------------------------------------------------------------------

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def render(self, request: CompletionRequest) -> tuple[str, tuple[str, ...]]:
        """The prompt text and the stop strings for a request."""
        if request.prompt is not None:
            return request.prompt, request.stop
        rendered = self.prompt_format.render(request.messages or ())
        return rendered.text, tuple(dict.fromkeys([*request.stop, *rendered.stop]))

    def tokenize_prompt(self, text: str) -> list[int]:
        # A template that writes the BOS text itself must not get a second BOS from the tokenizer.
        add_bos = not (self._bos_text and text.startswith(self._bos_text))
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _grammar(self, schema: dict[str, Any]) -> Any:
        from llama_cpp.llama_grammar import LlamaGrammar  # llama_cpp re-exports it only by *

        key = json.dumps(grammar_schema(schema), sort_keys=True)
        if key not in self._grammars:
            try:
                self._grammars[key] = LlamaGrammar.from_string(schema_grammar(key), verbose=False)
            except Exception as exc:  # llama.cpp's converter raises plain exceptions
                raise BackendError(f"JSON schema cannot be turned into a grammar: {exc}") from None
        return self._grammars[key]

    def _cached_prefix(self, tokens: list[int]) -> int:
        """How many of `tokens` the KV cache already holds (what generation will reuse)."""
        return reusable_prefix(self._llm, tokens)

    # -- the contract ------------------------------------------------------------------------------

    def complete(self, request: CompletionRequest, cancel: CancelToken | None = None) -> Completion:
        return complete_with_schema(lambda req: self._complete_once(req, cancel), request)

    def _complete_once(self, request: CompletionRequest, cancel: CancelToken | None) -> Completion:
        text, stops = self.render(request)
        tokens = self.tokenize_prompt(text)
        if len(tokens) >= self.n_ctx:
            raise PromptTooLong(len(tokens), self.n_ctx)
        max_tokens = min(request.max_tokens, self.n_ctx - len(tokens))
        grammar = self._grammar(request.json_schema) if request.json_schema is not None else None
        import llama_cpp

        llm = self._llm
        vocab = llm._model.vocab
        with self._lock:
            start = time.perf_counter()
            cached = self._cached_prefix(tokens)
            llm.set_seed(request.seed)
            out = bytearray()
            n_out = 0
            produced: list[int] = []
            finish = "length"
            stop_tail = max((len(s) for s in stops), default=0) + 16
            stream: Generator[int, None, None]
            if grammar is None:
                stream = llm.generate(tokens, top_k=request.top_k, top_p=request.top_p, min_p=0.0,
                                      temp=request.temperature, repeat_penalty=1.0)
            else:
                stream = constrained_tokens(llm, tokens, grammar, SamplingParams(
                    request.temperature, request.top_k, request.top_p, request.seed), self.grammar_stats)
            with contextlib.closing(stream):  # frees the grammar's samplers when we stop early
                for token in stream:
                    if llama_cpp.llama_vocab_is_eog(vocab, token):
                        finish = "stop"
                        break
                    n_out += 1
                    out += llm.detokenize([token])
                    if request.stop_on_loop:
                        produced.append(token)
                        if n_out % 8 == 0 and looping_tail(produced):
                            finish = "loop"
                            break
                    if stops:
                        tail = out[-stop_tail * 4:].decode("utf-8", errors="ignore")
                        if any(s in tail for s in stops):
                            finish = "stop"
                            break
                    if n_out >= max_tokens:
                        break
                    if cancel is not None and cancel.cancelled:
                        finish = "cancelled"
                        break
            seconds = time.perf_counter() - start
        result = out.decode("utf-8", errors="replace")
        if finish == "stop" and stops:
            cut = min((i for i in (result.find(s) for s in stops) if i >= 0), default=-1)
            if cut >= 0:
                result = result[:cut]
        usage = Usage(prompt_tokens=len(tokens), cached_prompt_tokens=max(cached, 0),
                      completion_tokens=n_out, seconds=seconds)
        return Completion(text=result, usage=usage, finish_reason=finish)

    def reset_cache(self) -> None:
        """Forget the KV cache. Sampled (temperature > 0) outputs are reproducible from the same
        cache state; a different reused prefix changes how the prompt is batched, and with it
        the last bits of the logits. Exact replays across states come from the response cache."""
        with self._lock:
            self._llm.reset()

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            self._llm = None  # type: ignore[assignment]
