"""Momentum memory: deterministic merging, recurrence, exact decay, patch records, the append-only
log, persistence (JSON + readable Markdown) and the per-step overlay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.gradient import PreservationSignal, TextGradient
from skillgrad_tui.core.momentum import MEMORY_JSON, MEMORY_MD, MomentumMemory, Overlay, Pattern


def grad(task: str, label: str, anchor: str = "Counting and arithmetic", step: int = 1,
         diagnosis: str = "The skill does not say to count rows one by one.") -> TextGradient:
    return TextGradient(f"g{step}-{task}", step, task, label, "L2", anchor, diagnosis, [task],
                        "item 1: expected '4', got '7' (number differs)")


def test_same_and_similar_labels_merge_at_one_anchor() -> None:
    mem = MomentumMemory()
    mem.update([grad("t1", "miscounted the matching rows"),
                grad("t2", "Miscounted the matching rows!"),         # same after normalisation
                grad("t3", "miscounted matching rows again")],       # Jaccard 3/5 = 0.6 >= 0.5
               step=1)
    assert len(mem.patterns) == 1
    p = mem.patterns[0]
    assert p.id == "P1" and p.label == "miscounted the matching rows"
    assert p.tasks() == ["t1", "t2", "t3"] and p.gradient_ids() == ["g1-t1", "g1-t2", "g1-t3"]
    assert p.weight == 3.0 and p.recurrence == 1


def test_different_anchors_stay_separate_unless_labels_nearly_equal() -> None:
    mem = MomentumMemory()
    mem.update([grad("t1", "miscounted the matching rows"),
                grad("t2", "miscounted matching rows again", anchor="Comparisons"),  # 0.6, other anchor
                grad("t3", "miscounted the matching rows", anchor="Comparisons"),    # identical label
                grad("t4", "answer has extra words", anchor="Answer format")],
               step=1)
    assert [(p.label, p.anchor, p.tasks()) for p in mem.patterns] == [
        ("miscounted the matching rows", "Counting and arithmetic", ["t1", "t3"]),
        ("miscounted matching rows again", "Comparisons", ["t2"]),
        ("answer has extra words", "Answer format", ["t4"]),
    ]


def test_anchor_comparison_is_normalised() -> None:
    mem = MomentumMemory()
    mem.update([grad("t1", "missed rows after header"), grad("t2", "missed the rows after headers",
                                                               anchor="## counting and ARITHMETIC ")], 1)
    assert len(mem.patterns) == 1  # Jaccard 3/6 = 0.5 and the same anchor after normalisation


def test_recurrence_and_exact_decay_over_three_steps() -> None:
    mem = MomentumMemory(decay=0.8)
    label = "miscounted the matching rows"
    mem.update([grad("t1", label, step=1)], step=1)
    assert mem.patterns[0].weight == 1.0
    mem.update([grad("t2", label, step=2), grad("t3", label, step=2)], step=2)
    assert mem.patterns[0].weight == 2.8  # 1 * 0.8 + 2
    mem.update([], step=3)
    assert mem.patterns[0].weight == 2.24  # 2.8 * 0.8: decay without new evidence
    mem.update([grad("t4", label, step=4), grad("t5", "ignored the total row", "Comparisons", 4)], step=4)
    p, q = mem.patterns
    assert p.weight == 2.792 and q.weight == 1.0  # 2.24 * 0.8 + 1
    assert p.iterations == [1, 2, 2, 4] and p.recurrence == 3
    assert [x.id for x in mem.ranked()] == ["P1", "P2"]


def test_ranking_ties_by_recurrence_then_id() -> None:
    mem = MomentumMemory(decay=1.0)
    mem.update([grad("t1", "aaa bbb ccc", "A")], 1)
    mem.update([grad("t2", "ddd eee fff", "B"), grad("t3", "ddd eee fff", "B")], 2)
    mem.update([grad("t4", "ggg hhh iii", "C"), grad("t5", "ggg hhh iii", "C")], 2)
    mem.update([grad("t6", "aaa bbb ccc", "A")], 3)
    # All weigh 2; P1 recurred in two steps; P2 and P3 tie on everything but their id.
    assert [(p.id, p.weight, p.recurrence) for p in mem.ranked()] == [("P1", 2.0, 2), ("P2", 2.0, 1),
                                                                     ("P3", 2.0, 1)]


def test_record_patch_and_append_only_log() -> None:
    mem = MomentumMemory()
    mem.update([grad("t1", "miscounted the matching rows")], 1)
    p = mem.patterns[0]
    before = [dict(e) for e in p.log]
    mem.record_patch("P1", 1, "added: list matching rows first", kept=True)
    mem.record_patch("P1", 2, "added: count twice", kept=False)
    mem.update([grad("t2", "miscounted the matching rows", step=3)], 3)
    assert p.log[: len(before)] == before  # earlier entries never change
    assert [(e["step"], e["event"]) for e in p.log] == [(1, "diagnosis"), (1, "patch"), (2, "patch_failed"),
                                                        (3, "diagnosis")]
    assert p.failed_patches == 1 and p.patch_attempts == 2
    assert p.latest_action == "The skill does not say to count rows one by one."
    with pytest.raises(KeyError, match="P9"):
        mem.record_patch("P9", 1, "x", kept=True)


def test_overlay_entries_and_at_most_three_themes() -> None:
    mem = MomentumMemory()
    mem.update([grad("t0", "old unrelated failure mode", "Comparisons")], 1)
    gs = [grad("t1", "aaa bbb ccc", "A", 2), grad("t2", "aaa bbb ccc", "A", 2), grad("t3", "ddd eee fff", "B", 2),
          grad("t4", "ggg hhh iii", "Workflow steps", 2), grad("t5", "jjj kkk lll", "D", 2)]
    sig = PreservationSignal("p2-t9", 2, "t9", "list rows before counting", "A", robust=True)
    ov = mem.update(gs, 2, [sig])
    assert isinstance(ov, Overlay) and ov.step == 2
    assert [e["task"] for e in ov.entries] == ["t1", "t2", "t3", "t4", "t5", "t9"]
    first = ov.entries[0]
    assert first == {"task": "t1", "signal": "failure", "pattern": "P2", "label": "aaa bbb ccc", "anchor": "A",
                     "gap": "item 1: expected '4', got '7' (number differs)",
                     "change": "The skill does not say to count rows one by one."}
    assert ov.entries[-1]["signal"] == "preserve (robust)" and ov.entries[-1]["pattern"] == "P2"
    assert len(ov.themes) == 3 and ov.themes[0].startswith("aaa bbb ccc (operation, at A): 2 task(s)")
    assert not any("old unrelated" in t for t in ov.themes)  # themes are about this step
    assert mem.get("P4").kind == "workflow"
    assert mem.get("P2").log[-1] == {"step": 2, "event": "preserve", "text": "list rows before counting (robust)",
                                     "tasks": ["t9"]}
    assert mem.robust_preserved() == [sig]
    md = ov.to_markdown()
    assert md.startswith("# Overlay, step 2") and "| t1 | failure | P2 aaa bbb ccc | A |" in md
    assert "## Themes" in md and "1. aaa bbb ccc" in md
    assert "No failures" in Overlay(7).to_markdown()


def test_save_load_round_trip_and_readable_markdown(tmp_path: Path) -> None:
    mem = MomentumMemory(decay=0.5, similarity=0.6)
    mem.update([grad("t1", "miscounted the matching rows"), grad("t2", "answer | has extra words", "Answer format")],
               1, [PreservationSignal("p1-t3", 1, "t3", "copy cell text exactly", "Answer format", False)])
    mem.record_patch("P1", 1, "added a counting rule", kept=False)
    mem.save(tmp_path / "run")
    again = MomentumMemory.load(tmp_path / "run")
    assert again.to_dict() == mem.to_dict()
    again.update([grad("t4", "brand new failure here", "Comparisons")], 2)
    assert again.patterns[-1].id == "P3"  # ids keep counting after a reload
    data = json.loads((tmp_path / "run" / MEMORY_JSON).read_text())
    assert data["patterns"][0]["recurrence"] == 1
    md = (tmp_path / "run" / MEMORY_MD).read_text()
    assert "## P1: miscounted the matching rows" in md
    assert "weight 1, recurrence 1 (steps 1), failed patches 1" in md
    assert "- step 1 patch_failed: added a counting rule" in md
    assert "- t3 (step 1, looks lucky) at Answer format: copy cell text exactly" in md
    assert not list((tmp_path / "run").glob(".*tmp"))  # no temp files left behind
    assert Pattern.from_dict(mem.patterns[0].to_dict()) == mem.patterns[0]


def test_load_missing_is_empty_and_corrupt_names_the_file(tmp_path: Path) -> None:
    assert MomentumMemory.load(tmp_path / "nowhere").patterns == []
    (tmp_path / MEMORY_JSON).write_text('{"version": 1, "patterns": [', encoding="utf-8")
    with pytest.raises(SkillgradError) as err:
        MomentumMemory.load(tmp_path)
    assert err.value.path == tmp_path / MEMORY_JSON and str(tmp_path / MEMORY_JSON) in str(err.value)
    (tmp_path / MEMORY_JSON).write_text('{"version": 1, "decay": 0.8, "similarity": 0.5, "patterns": [{}]}')
    with pytest.raises(SkillgradError, match="corrupt momentum memory"):
        MomentumMemory.load(tmp_path)
    (tmp_path / MEMORY_JSON).write_text('{"version": 99}')
    with pytest.raises(SkillgradError, match="format version"):
        MomentumMemory.load(tmp_path)


def test_step_only_memory_forgets_between_steps() -> None:
    mem = MomentumMemory.step_only()
    label = "miscounted the matching rows"
    mem.update([grad("t1", label)], 1)
    mem.update([grad("t2", label, step=2)], 2)
    assert len(mem.patterns) == 1
    p = mem.patterns[0]
    assert p.weight == 1.0 and p.recurrence == 1 and p.tasks() == ["t2"]
    mem.record_patch(p.id, 2, "x", kept=True)  # patches of the current step can still be recorded


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        MomentumMemory(decay=1.5)
    with pytest.raises(ValueError):
        MomentumMemory(similarity=0)
