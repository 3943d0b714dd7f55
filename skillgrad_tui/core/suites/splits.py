"""Seeded train/val/test splits of a suite.

A task's place is decided by a hash of (seed, task id), not by shuffling a list: the split is
the same whatever order the tasks were loaded in, on any Python version, and adding tasks to a
suite moves few of the existing ones.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass

from skillgrad_tui.core.records import Task

SPLIT_NAMES = ("train", "val", "test", "all")


@dataclass
class Splits:
    train: list[Task]
    val: list[Task]
    test: list[Task]


def natural_key(task_id: str) -> list[tuple[int, int | str]]:
    """Sort key that puts nt-2 before nt-10."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", task_id) if p]


def _rank(seed: int, task_id: str) -> str:
    return hashlib.sha256(f"{seed}\x00{task_id}".encode("utf-8")).hexdigest()


def _count(n: int, fraction: float) -> int:
    k = round(n * fraction)
    if fraction > 0 and n >= 3:
        k = max(k, 1)  # a small suite still gets a validation or test task when asked for one
    return k


def split_tasks(tasks: list[Task], seed: int, val_fraction: float = 0.25,
                test_fraction: float = 0.25) -> Splits:
    """Disjoint splits covering every task; each list in natural id order."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1")
    dupes = sorted(i for i, c in Counter(t.id for t in tasks).items() if c > 1)
    if dupes:
        raise ValueError(f"duplicate task ids: {', '.join(dupes[:5])}")
    ordered = sorted(tasks, key=lambda t: (_rank(seed, t.id), t.id))
    n = len(ordered)
    n_test = _count(n, test_fraction)
    n_val = _count(n, val_fraction)
    if n_test + n_val >= n and n > 0:
        # Keep at least one training task: shrink the larger held-out part first.
        while n_test + n_val >= n and (n_test or n_val):
            if n_test >= n_val:
                n_test -= 1
            else:
                n_val -= 1
    test, val, train = ordered[:n_test], ordered[n_test:n_test + n_val], ordered[n_test + n_val:]

    def natural(ts: list[Task]) -> list[Task]:
        return sorted(ts, key=lambda t: natural_key(t.id))

    return Splits(natural(train), natural(val), natural(test))


def select_split(splits: Splits, name: str) -> list[Task]:
    """The tasks of "train", "val", "test" or "all" (all three, in natural id order)."""
    if name == "all":
        return sorted(splits.train + splits.val + splits.test, key=lambda t: natural_key(t.id))
    if name in ("train", "val", "test"):
        return list(getattr(splits, name))
    raise ValueError(f"unknown split {name!r}; use one of {', '.join(SPLIT_NAMES)}")
