"""What a run is asked to do (OptimizeOptions) and what it gives back (RunResult), with the
seeded schedule both sides need."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from skillgrad_tui.core.gate import DEFAULT_K
from skillgrad_tui.core.runlog import VersionRecord


PARENT_SELECTIONS = ("current", "pareto")
STATE_FORMAT = 2  # 2: candidate pools, per-task validation scores, accounts


@dataclass
class OptimizeOptions:
    train_split: str = "train"
    val_split: str = "val"  # names for select_split on split_tasks(suite.tasks, seed)
    steps: int | None = None
    epochs: int | None = None  # default: 1 epoch over the train pool, capped by steps
    batch_size: int = 4
    seed: int = 0
    gate: str = "validation"  # "validation" | "all" | "ask"
    momentum: bool = True
    contrastive: bool = True
    failures_only: bool = True  # train on the seed skill's failures (paper) vs plain minibatches
    token_budget: int | None = None
    time_budget_s: float | None = None
    early_stop: int = 4  # stop after this many consecutive all-pass batches
    momentum_decay: float = 0.8
    l2_max_chars: int = 6000
    candidates: int = 3  # candidate skills proposed per step (the pool)
    gate_k: float = DEFAULT_K  # keep a candidate only when its paired validation gain exceeds k standard errors
    val_repeats: int = 0  # validation runs per task; 0 = 1 for a greedy task model, 3 when it samples
    parent_selection: str = "current"  # "current" | "pareto": the version each step improves
    minibatch_gate: bool = True  # only candidates that improve the minibatch are scored on validation
    run_dir: Path | None = None  # default <skill parent>/.skillgrad/runs/<run-id>
    resume: Path | None = None  # an existing run dir to continue
    git_commit: bool = False  # commit each applied version when the skill is in a git work tree

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("run_dir", "resume"):
            d[key] = str(d[key]) if d[key] is not None else None
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "OptimizeOptions":
        names = {f.name for f in fields(OptimizeOptions)}
        opts = OptimizeOptions(**{k: v for k, v in d.items() if k in names})
        opts.run_dir = Path(opts.run_dir) if opts.run_dir else None
        opts.resume = Path(opts.resume) if opts.resume else None
        return opts


@dataclass
class RunResult:
    run_dir: Path
    reason: str
    versions: list[VersionRecord]
    best_version: int | None
    final_skill_hash: str
    best_score: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    note: str = ""  # why a budget stopped the run, in words
    account: dict[str, Any] = field(default_factory=dict)  # the run's totals (pool.COUNTS, reasons)
    summary: str = ""  # what changed, or why nothing did, in one sentence
    changed: bool = False  # the skill on disk differs from the one the run started from

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "reason": self.reason, "note": self.note, "changed": self.changed,
                "summary": self.summary, "account": self.account,
                "versions": [v.to_dict() for v in self.versions], "best_version": self.best_version,
                "best_score": self.best_score, "final_skill_hash": self.final_skill_hash,
                "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
                "seconds": round(self.seconds, 3)}


def derive_seed(seed: int, *parts: object) -> int:
    """A seed for one use (batch order, a role in a step) that depends only on the run's seed."""
    digest = hashlib.sha256(json.dumps([seed, *parts], default=str).encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % (2**31 - 1)


def best_version(versions: list[VersionRecord]) -> VersionRecord | None:
    """The kept version with the highest validation score; ties go to the shorter skill, then the
    earlier version. Candidates the gate did not keep are not "best", whatever their mean: the
    gate judged their gain to be noise (or worse)."""
    scored = [v for v in versions if v.val_score is not None and v.kept]
    return min(scored, key=lambda v: (-(v.val_score or 0.0), v.chars, v.version)) if scored else None


def plan_schedule(pool: list[str], options: OptimizeOptions) -> list[list[str]]:
    """Minibatches of task ids: each epoch a seeded order of the pool, cut into batches."""
    if not pool:
        return []
    epochs = options.epochs or 1
    out: list[list[str]] = []
    for epoch in range(epochs):
        order = sorted(pool, key=lambda tid: (derive_seed(options.seed, "order", epoch, tid), tid))
        out += [order[i:i + options.batch_size] for i in range(0, len(order), options.batch_size)]
    return out[: options.steps] if options.steps is not None else out
