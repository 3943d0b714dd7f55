"""The versions of a run as a family tree, and the facts about a run that people compare.

`skillgrad history --json` prints the tree; the app's history screen draws it row by row with
tree guides, and its compare screen sets two runs' facts side by side. Read-only: everything
comes from the run's own files (versions.json, events.jsonl).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillgrad_tui.core.runlog import VersionRecord, list_versions, read_event_dicts


def lineage_tree(versions: Iterable[VersionRecord]) -> list[dict[str, Any]]:
    """The versions as a tree: each with its children (the candidates made from it)."""
    versions = list(versions)
    nodes: dict[int, dict[str, Any]] = {
        v.version: {"version": v.version, "step": v.step, "kept": v.kept, "children": []} for v in versions}
    roots: list[dict[str, Any]] = []
    for v in versions:
        parent = nodes.get(v.parent) if v.parent is not None else None
        (parent["children"] if parent is not None else roots).append(nodes[v.version])
    return roots


def lineage_rows(versions: Iterable[VersionRecord]) -> list[tuple[str, VersionRecord]]:
    """Depth-first rows with tree guides ("├─ ", "│  └─ "), each version right under its parent,
    so that a table read top to bottom shows which candidate was made from which."""
    versions = list(versions)
    by_number = {v.version: v for v in versions}
    children: dict[int | None, list[VersionRecord]] = {}
    for v in versions:
        parent = v.parent if v.parent in by_number else None  # an orphan is shown as a root
        children.setdefault(parent, []).append(v)
    rows: list[tuple[str, VersionRecord]] = []

    def walk(parent: int | None, indent: str) -> None:
        kids = children.get(parent, [])
        for i, v in enumerate(kids):
            last = i == len(kids) - 1
            guide = "" if parent is None else indent + ("└─ " if last else "├─ ")
            rows.append((guide, v))
            walk(v.version, "" if parent is None else indent + ("   " if last else "│  "))

    walk(None, "")
    return rows


def final_version(versions: Iterable[VersionRecord]) -> VersionRecord | None:
    """The version the run left as the skill: the newest one kept (the seed when none was)."""
    kept = [v for v in versions if v.kept]
    return max(kept, key=lambda v: v.version) if kept else None


@dataclass(frozen=True)
class RunFacts:
    """What one run did, in the figures two runs are compared by."""

    run_dir: Path
    versions: list[VersionRecord]
    steps: int  # steps finished
    tokens: int  # prompt + completion tokens over the steps
    seconds: float
    seed_score: float | None  # validation score of version 0
    final: VersionRecord | None
    best_version: int | None
    best_score: float | None
    reason: str  # why it stopped ("" while it has not)
    gate: str | None

    @property
    def kept(self) -> list[int]:
        return [v.version for v in self.versions if v.kept and v.parent is not None]


def run_facts(run_dir: Path) -> RunFacts:
    events = read_event_dicts(run_dir)
    versions = list_versions(run_dir)
    steps = [e for e in events if e.get("kind") == "step_finished"]
    started: dict[str, Any] = next((e for e in events if e.get("kind") == "run_started"), {})
    finished: dict[str, Any] = next((e for e in reversed(events) if e.get("kind") == "run_finished"), {})
    seed = next((v for v in versions if v.parent is None), None)
    return RunFacts(
        run_dir=Path(run_dir), versions=versions, steps=len(steps),
        tokens=sum(int(e.get("prompt_tokens") or 0) + int(e.get("completion_tokens") or 0) for e in steps),
        seconds=sum(float(e.get("seconds") or 0.0) for e in steps),
        seed_score=seed.val_score if seed else None, final=final_version(versions),
        best_version=finished.get("best_version"), best_score=finished.get("best_score"),
        reason=str(finished.get("reason") or ""), gate=(started.get("settings") or {}).get("gate"))


__all__ = ["RunFacts", "final_version", "lineage_rows", "lineage_tree", "run_facts"]
