"""The noise-aware gate: paired per-task comparison, k standard errors, degenerate cases by rule."""

from __future__ import annotations

import math

import pytest

from skillgrad_tui.core.gate import (DROPPED, NO_TASKS, SIGNIFICANT, TIE_LONGER, TIE_SHORTER, WITHIN_NOISE,
                                     paired_gate)


def scores(*values: float) -> dict[str, float]:
    return {f"t{i}": v for i, v in enumerate(values)}


def test_a_gain_within_noise_is_rejected_and_a_clear_one_accepted() -> None:
    current = scores(1, 0, 1, 0, 1, 0, 1, 0)
    noisy = scores(1, 1, 0, 0, 1, 1, 1, 0)  # +2 -1 over 8 tasks: gain 0.125
    d = paired_gate(current, noisy, k=1)
    assert not d.kept and d.key == WITHIN_NOISE
    assert d.gain == pytest.approx(0.125) and d.z is not None and d.z < 1
    clear = scores(1, 1, 1, 1, 1, 1, 1, 0)  # +3 over 8, nothing lost
    d = paired_gate(current, clear, k=2)
    assert d.kept and d.key == SIGNIFICANT and d.gain == pytest.approx(0.375) and d.z is not None and d.z > 2
    assert "kept" in d.sentence() and "±" in d.sentence() and "8 task(s)" in d.sentence()


def test_standard_error_is_the_paired_one() -> None:
    current = scores(0, 0, 0, 0)
    cand = scores(1, 1, 0, 1)  # d = 1, 1, 0, 1
    d = paired_gate(current, cand, k=1)
    sd = math.sqrt(((0.25 ** 2) * 3 + 0.75 ** 2) / 3)
    assert d.se == pytest.approx(sd / 2) and d.gain == pytest.approx(0.75) and d.kept
    assert paired_gate(current, cand, k=3).key == WITHIN_NOISE  # z = 3 is not above 3
    assert (d.before, d.after) == (0.0, 0.75)


def test_one_flip_among_n_is_exactly_one_standard_error() -> None:
    for n in (2, 5, 20):
        cur = {f"t{i}": 0.0 for i in range(n)}
        cand = {**cur, "t0": 1.0}
        d = paired_gate(cur, cand, k=1)
        assert d.z == pytest.approx(1.0) and not d.kept and d.key == WITHIN_NOISE
        assert paired_gate(cur, cand, k=0.99).kept


def test_no_spread_uses_gain_over_n_so_it_takes_k_plus_one_tasks() -> None:
    one = paired_gate(scores(0), scores(1), k=1)
    assert one.se_rule.startswith("no spread") and one.se == 1.0 and not one.kept  # a single task never suffices
    two = paired_gate(scores(0, 0), scores(1, 1), k=1)
    assert two.kept and two.se == pytest.approx(0.5) and two.z == pytest.approx(2.0)
    assert not paired_gate(scores(0, 0), scores(1, 1), k=2).kept
    assert paired_gate(scores(0, 0, 0), scores(1, 1, 1), k=2).kept
    assert "no spread" in two.sentence()
    # More evidence never decides worse: all of n moving beats n - 1 of n moving.
    for n in range(2, 8):
        all_move = paired_gate({f"t{i}": 0.0 for i in range(n)}, {f"t{i}": 1.0 for i in range(n)})
        most = paired_gate({f"t{i}": 0.0 for i in range(n)}, {f"t{i}": float(i > 0) for i in range(n)})
        assert all_move.z is not None and most.z is not None and all_move.z >= most.z


def test_ties_go_to_the_shorter_skill_and_drops_are_named() -> None:
    same = scores(1, 0, 1)
    assert paired_gate(same, same, candidate_chars=90, current_chars=100).key == TIE_SHORTER
    d = paired_gate(same, same, candidate_chars=110, current_chars=100)
    assert not d.kept and d.key == TIE_LONGER and d.se == 0.0
    swap = paired_gate(scores(1, 0), scores(0, 1), candidate_chars=1, current_chars=2)
    assert swap.kept and swap.key == TIE_SHORTER  # gain 0 with spread: still a tie on the estimate
    d = paired_gate(scores(1, 1, 1), scores(0, 1, 1))
    assert not d.kept and d.key == DROPPED and d.gain < 0 and "worse" in d.sentence()


def test_repeats_average_per_task_and_only_shared_tasks_count() -> None:
    d = paired_gate({"a": 0.0, "b": 1 / 3, "x": 1.0}, {"a": 2 / 3, "b": 1.0, "y": 0.0}, k=1, repeats=3)
    assert d.n == 2 and d.repeats == 3 and d.gain == pytest.approx(2 / 3) and d.kept
    assert "3 repeats" in d.sentence()
    none = paired_gate({"a": 1.0}, {"b": 1.0})
    assert none.key == NO_TASKS and not none.kept and "no validation tasks" in none.sentence()
    with pytest.raises(ValueError):
        paired_gate({}, {}, k=-1)
