"""The event payloads (core/payloads.py) match what their producers write, and survive the run log.

mypy checks each producer's `to_dict` against its TypedDict; these tests check the same at run time
(a producer built with `**` or a key added by hand would pass mypy only where it is typed) and that
an event replayed from events.jsonl carries the very dicts a live run emitted.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from skillgrad_tui.core.events import CandidateProposed, Event, GradientComputed, MemoryUpdated, PatchProposed
from skillgrad_tui.core.gradient import PreservationSignal, TextGradient
from skillgrad_tui.core.momentum import Pattern
from skillgrad_tui.core.patcher import ProposedEdit
from skillgrad_tui.core.payloads import GradientPayload, PatternSummary, PreservationPayload, ProposedEditPayload
from skillgrad_tui.core.skill import Edit


def _keys(typed: Any) -> tuple[frozenset[str], frozenset[str]]:
    return typed.__required_keys__, typed.__optional_keys__


def _replayed(event: Event) -> Event:
    return Event.from_dict(json.loads(json.dumps(event.to_dict())))


GRADIENT = TextGradient("g1-t1", 1, "t1", "copied the wrong cell", "L2", "Answer format",
                        "took the header", ["t1"], "expected 3, got Year", failure_class="wrong_cell")
SIGNAL = PreservationSignal("p1-t2", 1, "t2", "listed rows before counting", "Counting", True)
PATTERN = Pattern(id="P1", kind="operation", label="copied the wrong cell", description="took the header",
                  anchor="Answer format", layer="L2", iterations=[1, 1, 2], weight=1.5, latest_action="edit",
                  log=[], failed_patches=1)
PROPOSED = ProposedEdit(Edit("L2", "SKILL.md", "old line\n", "new line\n"), "P1", "copied the wrong cell",
                        "the header is not the answer", ["g1-t1"], ["t1"])


def test_each_producer_writes_exactly_the_fields_of_its_payload() -> None:
    required, optional = _keys(GradientPayload)
    assert set(GRADIENT.to_dict()) == required and not optional
    # the payload is the dataclass's own fields: nothing dropped when the record was typed
    assert GRADIENT.to_dict() == dataclasses.asdict(GRADIENT)
    assert set(SIGNAL.to_dict()) == _keys(PreservationPayload)[0]
    assert SIGNAL.to_dict() == dataclasses.asdict(SIGNAL)
    summary = PATTERN.summary_dict()
    assert set(summary) == _keys(PatternSummary)[0]
    assert summary["recurrence"] == 2  # distinct steps, not the raw list
    required, optional = _keys(ProposedEditPayload)
    assert set(PROPOSED.to_dict()) == required and optional == {"accepted_by_checks"}


def test_payloads_read_back_from_the_run_log_as_they_were_emitted() -> None:
    events: list[Event] = [
        GradientComputed(step=1, gradients=[GRADIENT.to_dict()], contrastive=[SIGNAL.to_dict()]),
        MemoryUpdated(step=1, patterns=[PATTERN.summary_dict()], overlay="# overlay"),
        PatchProposed(step=1, patch_id="step-1", edits=[{**PROPOSED.to_dict(), "accepted_by_checks": True}]),
        CandidateProposed(step=1, version=2, parent=1, origin="each pattern's simplest edit",
                          edits=[PROPOSED.to_dict()], chars=120),
    ]
    for event in events:
        assert _replayed(event) == event
    replayed = _replayed(events[0])
    assert isinstance(replayed, GradientComputed)
    assert TextGradient.from_dict(dict(replayed.gradients[0])) == GRADIENT
    assert PreservationSignal.from_dict(dict(replayed.contrastive[0])) == SIGNAL
    assert ProposedEdit.from_dict(dict(PROPOSED.to_dict())) == PROPOSED
