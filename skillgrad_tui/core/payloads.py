"""The JSON records that events carry: what the run log stores and what the app's panes read.

TypedDicts rather than dataclasses because these travel as plain JSON (events round-trip through
events.jsonl with `Event.to_dict`/`from_dict`), so a replayed log gives the same dicts a live run
does. Each producer's `to_dict` returns one of these, so mypy checks both ends against one list of
fields. Standard library only: the records of gradient.py, momentum.py and patcher.py import it.
No `from __future__ import annotations`: TypedDict reads NotRequired[...] from evaluated annotations,
so that `__optional_keys__` is right at run time.
"""

from typing import NotRequired, TypedDict


class GradientPayload(TypedDict):
    """A TextGradient (gradient.py): one failure's diagnosis."""

    id: str
    step: int
    task_id: str
    label: str
    layer: str  # "L1" | "L2" | "L3"
    anchor: str
    diagnosis: str
    evidence: list[str]  # task ids
    diff: str
    failure_class: str
    source: str  # "model" or "code"


class PreservationPayload(TypedDict):
    """A PreservationSignal (gradient.py): what made a task pass that once failed."""

    id: str
    step: int
    task_id: str
    what_helped: str
    anchor: str
    robust: bool


class PatternSummary(TypedDict):
    """A momentum pattern as MemoryUpdated carries it (momentum.Pattern.summary_dict)."""

    id: str
    label: str
    anchor: str
    kind: str  # "operation" | "workflow" | "mixed"
    recurrence: int  # distinct steps it was seen in
    weight: float
    latest_action: str
    failed_patches: int


class ProposedEditPayload(TypedDict):
    """A ProposedEdit (patcher.py): an edit with the pattern and evidence behind it."""

    layer: str
    path: str
    old: str
    new: str
    pattern: str  # the pattern id
    pattern_label: str
    rationale: str
    gradients: list[str]
    tasks: list[str]
    accepted_by_checks: NotRequired[bool]  # set on PatchProposed's edits
