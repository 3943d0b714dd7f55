"""A gate that knows noise: paired per-task comparison of a candidate with the skill it would replace.

For each validation task, d = candidate score - current score (each the mean over the repeats
when the task model samples). The estimate is the mean gain over the n tasks and its standard
error SE = sd(d) / sqrt(n). A candidate is kept only when gain > k * SE.

Degenerate cases, decided deliberately rather than by accident of arithmetic:
- No tasks: nothing to compare; the candidate is not kept.
- Differences with no spread (every task moved by the same amount, or n = 1): the sample SE is 0,
  which with a handful of tasks means "spread unknown", not "no noise". SE is then |gain| / n,
  the SE one task's change alone has among n (one flip in n tasks has gain 1/n and SE exactly 1/n).
  So gain / SE = n: a change seen on every task counts like n single flips, and at k = 1 it takes
  two tasks, at k = 2 three; a single validation task is never enough at k >= 1.
- A gain of exactly 0 (including every task unchanged) is a tie: the shorter skill wins, so a
  candidate that says the same with fewer characters is kept and a longer one is not.
- One task flipping among n always gives gain / SE = 1 exactly, so at the default k = 1 no single
  task's flip moves the skill.
Every decision carries the estimate, its SE, n, k and the number of repeats, for the log and views.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_K = 1.0
# The gates a run can use, defined here only (config, CLI choices, optimiser and app read this):
# "validation" keeps a candidate whose paired gain is above noise, "all" the best on the
# minibatch, "ask" what a person accepts in the review.
GATES = ("validation", "all", "ask")
TIE_EPS = 1e-12

# Decision keys (also the rejection reasons counted in a step's account).
SIGNIFICANT = "gain above noise"
TIE_SHORTER = "tie, shorter skill"
TIE_LONGER = "tie, not shorter"
WITHIN_NOISE = "gain within noise"
DROPPED = "validation dropped"
NO_TASKS = "no validation tasks"


@dataclass(frozen=True)
class GateDecision:
    kept: bool
    key: str
    gain: float
    se: float
    n: int
    k: float
    repeats: int = 1
    se_rule: str = "sample"  # "sample", or "no spread: |gain|/n"
    before: float | None = None  # mean validation score of the current skill on these tasks
    after: float | None = None  # ... and of the candidate

    @property
    def z(self) -> float | None:
        return self.gain / self.se if self.se > 0 else None

    def sentence(self) -> str:
        if self.n == 0:
            return "no validation tasks to compare on: not kept"
        rep = f", {self.repeats} repeats" if self.repeats > 1 else ""
        est = f"gain {self.gain:+.3f} ± {self.se:.3f} SE over {self.n} task(s){rep}"
        if self.se_rule != "sample":
            est += f" (no spread: SE taken as |gain|/n)"
        scores = f"validation {self.before:.3f} -> {self.after:.3f}, " if self.before is not None else ""
        verdict = {SIGNIFICANT: f"above {self.k:g} SE: kept",
                   TIE_SHORTER: "a tie: kept the shorter skill",
                   TIE_LONGER: "a tie: kept the shorter current skill",
                   WITHIN_NOISE: f"not above {self.k:g} SE: within noise, not kept",
                   DROPPED: "worse: not kept"}[self.key]
        return f"{scores}{est}; {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sentence": self.sentence()}


def paired_gate(current: dict[str, float], candidate: dict[str, float], *, k: float = DEFAULT_K,
                candidate_chars: int = 0, current_chars: int = 0, repeats: int = 1) -> GateDecision:
    """Decide on the tasks both were scored on (per-task scores in [0, 1], already averaged over
    repeats)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    tasks = sorted(set(current) & set(candidate))
    n = len(tasks)
    if n == 0:
        return GateDecision(False, NO_TASKS, 0.0, 0.0, 0, k, repeats)
    diffs = [candidate[t] - current[t] for t in tasks]
    gain = sum(diffs) / n
    before = sum(current[t] for t in tasks) / n
    after = sum(candidate[t] for t in tasks) / n
    sd = math.sqrt(sum((d - gain) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
    se, rule = sd / math.sqrt(n), "sample"
    if se <= TIE_EPS:
        se, rule = abs(gain) / n, "no spread: |gain|/n"
    common = dict(gain=gain, se=se, n=n, k=k, repeats=repeats, se_rule=rule, before=before, after=after)
    if abs(gain) <= TIE_EPS:
        shorter = candidate_chars < current_chars
        return GateDecision(shorter, TIE_SHORTER if shorter else TIE_LONGER, **common)  # type: ignore[arg-type]
    if gain > k * se * (1 + 1e-9) + TIE_EPS:  # "exactly k SE" must not pass by a rounding error
        return GateDecision(True, SIGNIFICANT, **common)  # type: ignore[arg-type]
    return GateDecision(False, DROPPED if gain < 0 else WITHIN_NOISE, **common)  # type: ignore[arg-type]


__all__ = ["DEFAULT_K", "GateDecision", "paired_gate"]
