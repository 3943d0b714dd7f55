"""The person's gate: what the optimiser asks (ReviewRequest), what the person answers
(ReviewDecision), and the one reading of that answer (decided_edits)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.skill_edits import Edit, apply_edits_in_memory
from skillgrad_tui.core.skill_format import Skill


@dataclass
class ReviewItem:
    """One proposed edit, for the human gate."""

    index: int
    edit: Edit
    pattern_label: str
    gradients: list[str]
    tasks: list[str]
    rationale: str


@dataclass
class ReviewRequest:
    step: int
    skill: Skill
    items: list[ReviewItem]


@dataclass
class ReviewDecision:
    accepted: list[int]
    rejected: list[int]
    replaced: dict[int, str] = field(default_factory=dict)  # index -> user-edited new text


ReviewFn = Callable[[ReviewRequest], ReviewDecision]  # called from the worker thread; may block


@dataclass
class DecidedEdits:
    """What a review decision amounts to: the edits to apply, in index order, and what was dropped."""

    edits: list[Edit]
    used: list[int]  # indices of the applied edits
    dropped: list[tuple[int, str]]  # (index, why): accepted edits that no longer apply on the others


def decided_edits(request: ReviewRequest, decision: ReviewDecision) -> DecidedEdits:
    """The one reading of a person's decision (the optimiser applies it, the app predicts the
    hash it leads to): accepted edits in index order, each with the person's replacement text; an
    edit that no longer applies on top of those before it (it relied on a rejected one) is dropped."""
    items = {item.index: item for item in request.items}
    accepted = sorted({int(i) for i in decision.accepted if int(i) in items})
    replaced = {int(i): text for i, text in decision.replaced.items()}  # keys may come from JSON
    out = DecidedEdits([], [], [])
    for i in accepted:
        e = items[i].edit
        if i in replaced:
            e = Edit(e.layer, e.path, e.old, replaced[i])
        try:
            apply_edits_in_memory(request.skill, out.edits + [e])
        except SkillgradError as exc:
            out.dropped.append((i, str(exc)))
            continue
        out.edits.append(e)
        out.used.append(i)
    return out
