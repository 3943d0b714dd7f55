"""One benchmark run of a skill-improvement method, shared by bench_quality.py and bench_repair.py.

A run copies the starting skill, improves it with one method (or leaves it, for "start"), and
scores the result on held-out tasks that the method never sees, with the agent's seed fixed so
that every method is scored alike. The optimiser is called through `optimize()` with
`OptimizeOptions`, like the CLI does; what a run did to the skill is read back from the run's
own event log (edits proposed, edits that passed the checks in code, edits the gate kept), so
that a run that changed nothing says so next to its score.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from skillgrad_tui.core.agent import Agent, AgentSettings
from skillgrad_tui.core.evaluate import evaluate
from skillgrad_tui.core.optimizer import OptimizeOptions, optimize
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.reflection import reflect_once
from skillgrad_tui.core.skill import apply_patch, load_skill
from skillgrad_tui.core.suites import Suite
from skillgrad_tui.core.suites.splits import split_tasks

OPTIMISER_CONFIGS = ("skillgrad", "no-momentum", "no-contrastive")
METHODS = ("start", *OPTIMISER_CONFIGS, "reflection")
TEST_SEED = 0  # the agent's seed on the held-out tasks: fixed, so every config is scored alike


def edit_account(run_dir: Path) -> dict[str, int]:
    """Counts from the run's events.jsonl: edits proposed, passing the checks, kept by the gate;
    gradients written and diagnoser outputs that were unusable.

    Read leniently (a torn last line or an event kind this version does not know is skipped), so
    the benchmark keeps working while the optimiser's events grow.
    """
    counts = {"edits_proposed": 0, "edits_checked": 0, "edits_kept": 0, "steps": 0, "gradients": 0,
              "invalid_outputs": 0}
    path = run_dir / "events.jsonl"
    if not path.is_file():
        return counts
    accounted = False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        kind = event.get("kind")
        if kind == "step_account":  # every edit of the step, code-made candidates' included
            a = event.get("account") or {}
            accounted = True
            counts["edits_proposed_all"] = counts.get("edits_proposed_all", 0) + int(a.get("proposed") or 0)
            counts["edits_applied"] = counts.get("edits_applied", 0) + int(a.get("applied") or 0)
            counts["edits_checked_all"] = counts.get("edits_checked_all", 0) + int(a.get("passed_checks") or 0)
            counts["candidates"] = counts.get("candidates", 0) + int(a.get("candidates") or 0)
            counts["candidates_kept"] = counts.get("candidates_kept", 0) + int(a.get("accepted") or 0)
        elif kind == "patch_proposed":
            checked = len(event.get("edits") or [])
            counts["edits_checked"] += checked
            counts["edits_proposed"] += checked + len(event.get("rejected") or [])
        elif kind == "patch_decided":
            counts["edits_kept"] += len(event.get("accepted") or [])
        elif kind == "gradient_computed":
            counts["gradients"] += len(event.get("gradients") or []) + len(event.get("contrastive") or [])
            counts["invalid_outputs"] += int(event.get("invalid_outputs") or 0)
        elif kind == "step_finished":
            counts["steps"] += 1
    if accounted:  # the step accounts see the answer-form and format-repair candidates too
        counts["edits_proposed"] = counts.pop("edits_proposed_all")
        counts["edits_checked"] = counts.pop("edits_checked_all")
    return counts


def run_method(method: str, seed: int, start_skill: Path, pool: Suite, test_tasks: list[Task], backend: Any,
               workdir: Path, *, steps: int, batch_size: int, tag: str = "") -> dict[str, Any]:
    """Improve a copy of `start_skill` with `method` (trained on `pool`), then score it on `test_tasks`."""
    name = f"{tag}{method}-{seed}"
    skill_root = workdir / name / start_skill.name
    shutil.rmtree(skill_root.parent, ignore_errors=True)  # what an interrupted attempt left
    shutil.copytree(start_skill, skill_root)
    start_hash = load_skill(skill_root).hash
    agent = Agent(backend, AgentSettings())
    before = backend.cache.stats()
    start = time.perf_counter()
    tokens = 0
    account: dict[str, int] = {}
    if method in OPTIMISER_CONFIGS:
        run_dir = workdir / f"run-{name}"
        shutil.rmtree(run_dir, ignore_errors=True)
        options = OptimizeOptions(steps=steps, batch_size=batch_size, seed=seed,
                                  momentum=method != "no-momentum",
                                  contrastive=method != "no-contrastive",
                                  run_dir=run_dir)
        result = optimize(skill_root, pool, backend, backend, options)
        tokens += result.prompt_tokens + result.completion_tokens
        account = {**edit_account(result.run_dir), "stop_reason": result.reason}
    elif method == "reflection":
        train = split_tasks(pool.tasks, seed).train
        skill = load_skill(skill_root)
        ev = evaluate(agent, skill, train, seed=seed)
        tokens += ev.prompt_tokens + ev.completion_tokens
        failures = [t for t in ev.trajectories if not (t.verdict and t.verdict.passed)]
        patch = reflect_once(skill, {t.id: t for t in train}, failures, backend, seed=seed)
        if patch is not None:
            apply_patch(skill_root, patch)
        made = int(patch is not None)  # one rewrite, applied without a gate: the baseline's rule
        account = {"edits_proposed": int(bool(failures)), "edits_applied": made, "edits_checked": made,
                   "edits_kept": made, "candidates": made, "candidates_kept": made}
    elif method != "start":
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    train_seconds = time.perf_counter() - start
    mid = backend.cache.stats()
    final = load_skill(skill_root)
    test = evaluate(agent, final, test_tasks, seed=TEST_SEED)
    errors = sum(1 for t in test.trajectories if t.errored)  # could not be run or scored (a model that
    # wrote no workbook failed the task: that is a score, not an error)
    if test.n and errors == test.n:
        raise RuntimeError(f"{name}: every held-out task errored ({test.trajectories[0].error}); "
                           "that is a broken run, not a score of 0")
    return {"config": method, "seed": seed, "test_accuracy": test.accuracy, "test_passed": test.passed,
            "test_n": test.n, "test_errors": errors, "skill_hash": final.hash,
            "skill_changed": final.hash != start_hash, "skill_chars": sum(final.text_size().values()),
            "optimise_tokens": tokens, "test_tokens": test.prompt_tokens + test.completion_tokens,
            "optimise_seconds": round(train_seconds, 1), "test_seconds": round(test.seconds, 1),
            "optimise_calls": (mid.hits - before.hits) + (mid.misses - before.misses),
            "optimise_cached_calls": mid.hits - before.hits, **account}


def summarise(rows: list[dict[str, Any]], configs: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Per config: test accuracy mean and population std over seeds, mean cost, summed edit counts."""
    out: dict[str, dict[str, float]] = {}
    for config in configs:
        sel = [r for r in rows if r["config"] == config]
        if not sel:
            continue
        accs = [r["test_accuracy"] for r in sel]
        out[config] = {"mean": statistics.mean(accs), "std": statistics.pstdev(accs), "runs": len(sel),
                       "tokens": statistics.mean(r["optimise_tokens"] for r in sel),
                       "seconds": statistics.mean(r["optimise_seconds"] for r in sel),
                       "calls": statistics.mean(r.get("optimise_calls", 0) for r in sel),
                       "cached_calls": statistics.mean(r.get("optimise_cached_calls", 0) for r in sel),
                       "changed": sum(bool(r.get("skill_changed")) for r in sel)}
        for key in ("edits_proposed", "edits_applied", "edits_checked", "edits_kept", "candidates", "candidates_kept"):
            out[config][key] = sum(r.get(key, 0) for r in sel)
    return out
