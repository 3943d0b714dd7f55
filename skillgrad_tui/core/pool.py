"""The candidate pool's bookkeeping: Pareto frontier, parent selection, rebasing, and the account.

GEPA's mechanics are the reference: every validated skill version keeps its per-task validation
scores; the frontier holds the versions that are best on at least one validation task (and not
dominated by another); a parent can be drawn from it, more often the more tasks it is best on.

The account is what makes a step or a run that changed nothing say why: how many edits were
proposed, how many became edits that apply, how many passed the checks, how many candidates were
scored and kept, and every rejection counted by reason.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

from skillgrad_tui.core.edit_menu import split_md
from skillgrad_tui.core.skill import SKILL_MD, Edit, Skill

# Rejections decided by the optimiser itself (the patcher's and the gate's have their own keys).
MINIBATCH_NOT_IMPROVED = "minibatch not improved"
NOT_CHOSEN = "another candidate was better"
PERSON_REJECTED = "rejected by the person"
NOT_REBASABLE = "cannot apply to the current skill"
ALL_PASSED = "minibatch all passed"
NO_GRADIENT = "no gradient"

COUNTS = ("failed_tasks", "errored_tasks", "gradients", "gradients_from_code", "proposed", "applied", "passed_checks",
          "candidates", "scored_minibatch", "improved_minibatch", "validated", "accepted")


# -------------------------------------------------------------------------------------- frontier


def pareto_frontier(val_tasks: Mapping[int, Mapping[str, float]]) -> dict[int, int]:
    """version -> number of validation tasks on which it has the best score, for the versions that
    are best somewhere and not dominated (as good on every task and better on one) by another."""
    versions = sorted(val_tasks)
    tasks = sorted({t for v in versions for t in val_tasks[v]})
    best: dict[int, int] = {}
    for t in tasks:
        scored = [v for v in versions if t in val_tasks[v]]
        top = max(val_tasks[v][t] for v in scored)
        for v in scored:
            if val_tasks[v][t] >= top - 1e-12:
                best[v] = best.get(v, 0) + 1

    def dominates(a: int, b: int) -> bool:
        shared = set(val_tasks[a]) & set(val_tasks[b])
        return bool(shared) and all(val_tasks[a][t] >= val_tasks[b][t] for t in shared) and any(
            val_tasks[a][t] > val_tasks[b][t] for t in shared)

    return {v: n for v, n in best.items() if not any(dominates(o, v) for o in best if o != v)}


def pick_parent(frontier: Mapping[int, int], seed: int) -> int:
    """A frontier version, drawn with probability proportional to the tasks it is best on."""
    versions = sorted(frontier)
    return random.Random(seed).choices(versions, weights=[frontier[v] for v in versions])[0]


# ------------------------------------------------------------------------------------- rebasing


def rebase_edits(current: Skill, target: Mapping[str, str]) -> list[Edit]:
    """Edits that turn `current` into the text files `target` (a candidate made from another
    parent): whole front matter, whole body and whole L3 files, new files created. ValueError
    when that cannot be said with edits (a file the target lacks)."""
    missing = sorted(set(current.files) - set(target))
    if missing:
        raise ValueError(f"the candidate has no {missing[0]}, and an edit cannot delete a file")
    edits: list[Edit] = []
    old_yaml, old_body = split_md(current.files[SKILL_MD])
    new_yaml, new_body = split_md(target[SKILL_MD])
    if new_yaml != old_yaml:
        edits.append(Edit("L1", SKILL_MD, old_yaml, new_yaml))
    if new_body != old_body:
        if not old_body:
            raise ValueError("the current body is empty: there is no text to replace")
        edits.append(Edit("L2", SKILL_MD, old_body, new_body))
    for path in sorted(p for p in target if p != SKILL_MD):
        old = current.files.get(path)
        if old is None:
            edits.append(Edit("L3", path, "", target[path]))
        elif old != target[path]:
            if not old:
                raise ValueError(f"{path} is empty in the current skill: there is no text to replace")
            edits.append(Edit("L3", path, old, target[path]))
    return edits


# -------------------------------------------------------------------------------------- account


def new_account() -> dict[str, Any]:
    return {**{k: 0 for k in COUNTS}, "failure_classes": {}, "rejected": {}}


def add_accounts(total: Mapping[str, Any], step: Mapping[str, Any]) -> dict[str, Any]:
    out = new_account()
    for k in COUNTS:
        out[k] = int(total.get(k, 0)) + int(step.get(k, 0))
    for key in ("failure_classes", "rejected"):
        merged: Counter[str] = Counter(total.get(key, {}))
        merged.update(step.get(key, {}))
        out[key] = dict(merged.most_common())
    return out


def top_reasons(rejected: Mapping[str, int], n: int = 3) -> str:
    ranked = sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return ", ".join(f"{k} ({v})" for k, v in ranked)


def step_sentence(a: Mapping[str, Any], kept: str | None) -> str:
    """One sentence on what a step did; when it changed nothing, why."""
    if kept:
        return kept
    if not a.get("failed_tasks"):
        if a.get("errored_tasks"):
            return f"no change: {a['errored_tasks']} task(s) of the minibatch errored, the others passed"
        return "no change: every task of the minibatch passed"
    if not a.get("gradients"):
        return "no change: no failure could be diagnosed"
    counts = (f"{a.get('proposed', 0)} edit(s) proposed, {a.get('applied', 0)} applied, "
              f"{a.get('passed_checks', 0)} passed the checks, {a.get('candidates', 0)} candidate(s), "
              f"{a.get('improved_minibatch', 0)} improved the minibatch, {a.get('validated', 0)} validated")
    reasons = top_reasons(a.get("rejected", {}))
    return f"no change: {counts}" + (f"; most common reasons: {reasons}" if reasons else "")


def run_sentence(a: Mapping[str, Any], steps: int, kept_versions: list[int]) -> str:
    """One sentence on a whole run: what changed, or why nothing did."""
    if kept_versions:
        return (f"changed: {len(kept_versions)} of {steps} step(s) kept a candidate (version(s) "
                f"{', '.join(map(str, kept_versions))}); {a.get('proposed', 0)} edit(s) proposed, "
                f"{a.get('applied', 0)} applied, {a.get('candidates', 0)} candidate(s) scored")
    if steps == 0:
        return "no change: no step ran (nothing to train on, or the run stopped first)"
    reasons = top_reasons(a.get("rejected", {}))
    why = f"; most common reasons: {reasons}" if reasons else ""
    if not a.get("failed_tasks"):
        if a.get("errored_tasks"):
            return (f"no change over {steps} step(s): {a['errored_tasks']} task(s) errored and were not "
                    "diagnosed, the others passed")
        return f"no change over {steps} step(s): every minibatch passed"
    return (f"no change over {steps} step(s): {a.get('failed_tasks', 0)} failed task(s), "
            f"{a.get('proposed', 0)} edit(s) proposed, {a.get('applied', 0)} applied, "
            f"{a.get('passed_checks', 0)} passed the checks, {a.get('candidates', 0)} candidate(s), "
            f"{a.get('improved_minibatch', 0)} improved the minibatch, {a.get('validated', 0)} validated, "
            f"none kept{why}")


__all__ = ["add_accounts", "new_account", "pareto_frontier", "pick_parent", "rebase_edits", "run_sentence",
           "step_sentence"]
