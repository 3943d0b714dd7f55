"""Stopping a model that repeats itself: the detector and the request option."""

from __future__ import annotations

from skillgrad_tui.core.llm.base import CompletionRequest
from skillgrad_tui.core.llm.loops import MIN_SPAN, looping_tail


def test_a_short_cycle_filling_the_tail_is_a_loop() -> None:
    prefix = list(range(100, 140))
    cycle = [7, 8, 9, 10, 11]
    tokens = prefix + cycle * 20
    assert looping_tail(tokens) == 5
    assert looping_tail([3] * MIN_SPAN) == 1


def test_varied_text_and_short_repeats_are_not_loops() -> None:
    assert looping_tail(list(range(500))) == 0
    assert looping_tail([1, 2] * 10) == 0  # too short to judge
    almost = [7, 8, 9, 10] * 30
    almost[-3] = 99  # the cycle was broken near the end: the model moved on
    assert looping_tail(almost) == 0


def test_the_cycle_must_cover_the_whole_span() -> None:
    tokens = list(range(1000, 1040)) + [4, 5, 6] * 15  # 45 repeated tokens: under MIN_SPAN
    assert looping_tail(tokens) == 0
    assert looping_tail(tokens + [4, 5, 6] * 10) == 3


def test_long_cycles_are_found_up_to_the_limit_and_no_further() -> None:
    cycle = list(range(200, 232))  # period 32: the longest looked for
    assert looping_tail(list(range(10)) + cycle * 4) == 32
    assert looping_tail(list(range(10)) + list(range(300, 340)) * 4) == 0  # period 40


def test_the_option_leaves_existing_cache_keys_alone() -> None:
    plain = CompletionRequest(prompt="x")
    assert "stop_on_loop" not in plain.to_dict()
    watched = CompletionRequest(prompt="x", stop_on_loop=True)
    assert watched.to_dict()["stop_on_loop"] is True
    assert plain.key("m") != watched.key("m")
