"""Detect a model stuck in a loop, so that generation stops instead of burning the token budget.

Small models often fall into repeating the same few lines until `max_tokens` (a 135M model asked
for an openpyxl script wrote `"Sheet2!A1:C5",` for 500 tokens). A tail made of one short cycle
repeated over `min_span` tokens is no longer going anywhere; stopping there keeps the text so far
and saves most of the decode time. Opt-in per request (`CompletionRequest.stop_on_loop`), since
some outputs (a column of zeros) legitimately repeat.
"""

from __future__ import annotations

from collections.abc import Sequence

MIN_SPAN = 64  # tokens the repeated tail must cover
MAX_PERIOD = 32  # longest cycle looked for, in tokens
MIN_REPEATS = 4  # a cycle must come round at least this often


def looping_tail(tokens: Sequence[object], min_span: int = MIN_SPAN, max_period: int = MAX_PERIOD,
                 min_repeats: int = MIN_REPEATS) -> int:
    """The period of a cycle that fills the last tokens, or 0 if there is none. Any items that
    compare with == will do: token ids, or text chunks from a streaming server."""
    n = len(tokens)
    for period in range(1, max_period + 1):
        span = max(min_span, period * min_repeats)
        if span > n:
            break
        start = n - span
        if all(tokens[i] == tokens[i - period] for i in range(start + period, n)):
            return period
    return 0
