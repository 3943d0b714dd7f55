"""Grammar-constrained token generation that stays fast on large vocabularies.

llama-cpp-python puts the grammar sampler in front of the sampling chain, so every token runs
the grammar over the whole vocabulary: 262k entries for Gemma 3, which made one JSON answer
take minutes on a CPU. Here the token is sampled without the grammar first and only that one
token is checked; the full grammar pass runs only when the check rejects it (as llama.cpp's own
common sampler does). Greedy decoding gives the same tokens either way: if the unconstrained
argmax is allowed, it is also the constrained argmax.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

TOP_CANDIDATES = 512
_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


@dataclass
class SamplingParams:
    temperature: float
    top_k: int
    top_p: float
    seed: int


@dataclass
class GrammarStats:
    """How often the cheap check was enough (for tests and benchmarks)."""

    tokens: int = 0
    rejected: int = 0  # sampled tokens the grammar refused, so a constrained pick was needed


def _chain(params: SamplingParams) -> Any:
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    if params.temperature <= 0.0:
        add(chain, llama_cpp.llama_sampler_init_greedy())
    else:
        if params.top_k > 0:
            add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
        add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
        add(chain, llama_cpp.llama_sampler_init_dist(params.seed & 0xFFFFFFFF))
    return chain


def _apply(sampler: Any, data: np.ndarray) -> int:
    """Run one sampler over a candidate array in place; the token it selected, or -1."""
    import llama_cpp

    arr = llama_cpp.llama_token_data_array(
        data=data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
        size=len(data), selected=-1, sorted=False)
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(arr))
    # Read through the array's own pointer: samplers such as top-k sort and shrink it in place.
    return int(arr.data[arr.selected].id) if 0 <= arr.selected < arr.size else -1


def _candidates(logits: np.ndarray, ids: np.ndarray) -> np.ndarray:
    data = np.empty(len(ids), dtype=_TOKEN_DATA)
    data["id"] = ids
    data["logit"] = logits[ids]
    data["p"] = 0.0
    return data


def _constrained_pick(chain: Any, gram: Any, ctx: Any, n_vocab: int) -> int:
    """The chain's pick among the tokens the grammar allows, or -1 if it allows none.

    The grammar runs over the TOP_CANDIDATES most likely tokens first: the best allowed token
    is almost always among them, and checking a few hundred costs microseconds where the whole
    vocabulary costs seconds. Greedy picks are exactly those of a full pass whenever one of them
    is allowed; only when none is does the full vocabulary go through the grammar.
    """
    import llama_cpp

    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
    top = np.argpartition(logits, -TOP_CANDIDATES)[-TOP_CANDIDATES:].astype(np.intc)
    for ids in (top, np.arange(n_vocab, dtype=np.intc)):
        data = _candidates(logits, ids)
        _apply(gram, data)
        if np.isfinite(data["logit"]).any():
            return _apply(chain, data)
    return -1


def reusable_prefix(llm: Any, prompt: list[int]) -> int:
    """How many leading tokens of `prompt` the KV cache holds and can keep: at most all but the
    last, which is always evaluated again so that there are fresh logits to sample from (the
    same rule as llama-cpp-python's generate())."""
    from llama_cpp import Llama

    held = llm._input_ids[: llm.n_tokens]
    shared: int = Llama.longest_token_prefix(held, prompt)
    return max(0, min(shared, len(prompt) - 1))


def constrained_tokens(llm: Any, prompt: list[int], grammar: Any, params: SamplingParams,
                       stats: GrammarStats | None = None) -> Generator[int, None, None]:
    """Yield tokens for `prompt` that follow `grammar`, reusing the KV cache's common prefix."""
    import llama_cpp

    stats = stats if stats is not None else GrammarStats()
    ctx = llm._ctx.ctx
    n_vocab = llm.n_vocab()
    common = reusable_prefix(llm, prompt)
    if common > 0 and llm._ctx.kv_cache_seq_rm(-1, common, -1):
        llm.n_tokens = common
    else:
        llm.reset()
        common = 0
    chain = _chain(params)
    gram = llama_cpp.llama_sampler_init_grammar(
        llm._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8"))
    one = np.zeros(1, dtype=_TOKEN_DATA)
    try:
        llm.eval(prompt[common:])
        while True:
            token = int(llama_cpp.llama_sampler_sample(chain, ctx, -1))
            one[0] = (token, 0.0, 0.0)
            _apply(gram, one)
            if math.isinf(float(one[0]["logit"])):  # rejected: constrain the best candidates
                stats.rejected += 1
                token = _constrained_pick(chain, gram, ctx, n_vocab)
                if token < 0:
                    return  # the grammar allows nothing more: end the answer here
            stats.tokens += 1
            llama_cpp.llama_sampler_accept(gram, token)
            yield token
            llm.eval([token])
    finally:
        llama_cpp.llama_sampler_free(gram)
        llama_cpp.llama_sampler_free(chain)
