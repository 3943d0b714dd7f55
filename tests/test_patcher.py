"""Patcher: every rule is checked in code and rejects what it should, the simplest passing
candidate wins, easy candidate forms become exact edits, and a pattern that keeps recurring
after in-place patches is moved into references/. Real skill folder (a copy of skills/table-qa
plus one reference) and real WikiTableQuestions training tasks for the training-value checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from skillgrad_tui.core.errors import BackendError
from skillgrad_tui.core.gradient import PreservationSignal, TextGradient
from skillgrad_tui.core.llm.base import CompletionRequest
from skillgrad_tui.core.llm.scripted import ScriptedBackend
from skillgrad_tui.core.momentum import MomentumMemory, Pattern
from skillgrad_tui.core.patcher import (EDIT_SCHEMA, MOVE_SCHEMA, Patcher, Proposal, check_description,
                                        check_l2_budget, check_no_training_values)
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.skill import Edit, Skill, apply_edits_in_memory, apply_patch, load_skill
from skillgrad_tui.core.suites import load_suite

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WTQ = SHARED / "benchmarks" / "wikitablequestions"
REFERENCE = "references/dates.md"
COUNT = "Counting and arithmetic"
COUNT_LAST = '- Numbers may contain commas or units ("12,467", "3 km"): use the number itself.'
COUNT_RULE = "- To count, list the matching rows to yourself one by one, then count them. Do not guess."


@pytest.fixture(scope="module")
def train() -> list[Task]:
    if not WTQ.is_dir():
        pytest.skip(f"shared WikiTableQuestions data not found at {WTQ}")
    return load_suite(WTQ, "training").tasks


@pytest.fixture()
def skill(tmp_path: Path) -> Skill:
    root = tmp_path / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", root)
    (root / "references").mkdir()
    (root / REFERENCE).write_text("# Dates\n\n- Compare years as numbers.\n", encoding="utf-8")
    md = root / "SKILL.md"
    md.write_text(md.read_text(encoding="utf-8") + f"\nRead {REFERENCE} when a question compares dates.\n",
                  encoding="utf-8")
    return load_skill(root)


def pattern(label: str = "miscounted the matching rows", anchor: str = COUNT, steps: int = 1,
            patches: int = 0) -> Pattern:
    mem = MomentumMemory()
    for step in range(1, steps + 1):
        mem.update([TextGradient(f"g{step}-t{step}", step, f"t{step}", label, "L2", anchor,
                                 "The skill does not say how to count.", [f"t{step}"], "item 1: expected '4'")], step)
    for i in range(patches):
        mem.record_patch("P1", i + 1, "added a counting rule", kept=False)
    return mem.patterns[0]


def scripted(*outputs: Any) -> ScriptedBackend:
    """One reply per call, in order (the last repeats); dicts and lists become candidate JSON."""
    queue = [json.dumps({"candidates": o}) if isinstance(o, list) else json.dumps(o) if isinstance(o, dict) else o
             for o in outputs]

    def respond(req: CompletionRequest) -> str:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return ScriptedBackend(respond)


def propose(skill: Skill, train: list[Task], candidates: list[dict[str, Any]], *, pat: Pattern | None = None,
            preservation: list[PreservationSignal] | None = None, **kw: Any) -> Proposal:
    return Patcher(scripted(candidates), **kw).propose(skill, [pat or pattern()], preservation or [], train, step=1)


def only_reason(p: Proposal) -> str:
    assert p.edits == [] and len(p.rejected) == 1, p.rejected
    return p.rejected[0][1]


# ------------------------------------------------------------------------------ accepting


def test_good_section_add_is_converted_applied_and_lands_in_its_section(skill: Skill, train: list[Task]) -> None:
    p = propose(skill, train, [{"section": "counting", "add": "Check the count a second time.", "why": "w"}])
    assert p.rejected == [] and len(p.edits) == 1
    pe = p.edits[0]
    assert pe.edit == Edit("L2", "SKILL.md", COUNT_LAST, COUNT_LAST + "\n- Check the count a second time.")
    assert (pe.pattern_id, pe.pattern_label, pe.rationale) == ("P1", "miscounted the matching rows", "w")
    assert pe.gradients == ["g1-t1"] and pe.tasks == ["t1"]
    patch = p.to_patch()
    assert patch.tasks == ["t1"] and "miscounted the matching rows: w" in patch.rationale
    new = apply_patch(skill.root, patch)
    section = next(s for s in new.sections() if s.title == COUNT)
    lines = new.files["SKILL.md"].splitlines()[section.start_line - 1 : section.end_line]
    assert "- Check the count a second time." in lines


def test_simplest_passing_candidate_is_chosen(skill: Skill, train: list[Task]) -> None:
    cands = [{"section": COUNT, "add": "When counting, write down each matching row with its row number, "
                                      "then count the list you wrote, and check it again.", "why": "long"},
             {"layer": "L2", "path": "SKILL.md", "old": "Do not guess.", "new": "Never guess.", "why": "replace"},
             {"section": COUNT, "add": "Count twice.", "why": "short"}]
    backend = scripted(cands)
    p = Patcher(backend).propose(skill, [pattern()], [], train, step=1)
    assert [pe.rationale for pe in p.edits] == ["replace"]  # 7 characters changed beat 15 and 110
    assert p.rejected == []  # the alternatives are not failures
    assert backend.calls[0].json_schema == EDIT_SCHEMA and backend.calls[0].max_tokens == 256
    assert backend.calls[0].messages[0].role == "system" and "## Counting and arithmetic" in \
        backend.calls[0].messages[1].content  # the exact section text is shown for anchoring


def test_simplest_failing_candidate_falls_back_to_next(skill: Skill, train: list[Task]) -> None:
    p = propose(skill, train, [{"section": COUNT, "add": "Write each matching row down before you count.",
                                "why": "longer"},
                               {"section": COUNT, "add": "Say 2004.", "why": "bad"},  # smallest, copies nt-0
                               {"section": COUNT, "add": "Re-count the rows.", "why": "ok"}])
    assert [pe.rationale for pe in p.edits] == ["ok"]
    assert [(raw["why"], "nt-0" in reason) for raw, reason in p.rejected] == [("bad", True)]


def test_forms_new_section_l3_explicit_repairs(skill: Skill, train: list[Task]) -> None:
    p = propose(skill, train, [{"section": "new section", "add": "Check units before comparing.", "why": "n"}],
                pat=pattern("ignored units of measure", "new section"))
    body_end = f"Read {REFERENCE} when a question compares dates."
    assert p.edits[0].edit == Edit("L2", "SKILL.md", body_end, body_end +
                                   "\n\n## Ignored units of measure\n- Check units before comparing.")
    p = propose(skill, train, [{"section": "dates.md", "add": "Treat a missing month as unknown.", "why": "f"}])
    assert p.edits[0].edit == Edit("L3", REFERENCE, "- Compare years as numbers.",
                                   "- Compare years as numbers.\n- Treat a missing month as unknown.")
    # Stray spaces in old are repaired; a heading as old with only the addition as new is an append.
    p = propose(skill, train, [{"layer": "L3", "path": "SKILL.md", "old": "  Do not   guess. ",
                                "new": "Never guess.", "why": "x"}])
    assert p.edits[0].edit == Edit("L2", "SKILL.md", "Do not guess.", "Never guess.")
    p = propose(skill, train, [{"layer": "L2", "path": "./SKILL.md", "old": "## Comparisons",
                                "new": "- Compare every row.", "why": "x"}])
    assert p.edits[0].edit == Edit("L2", "SKILL.md", "## Comparisons", "## Comparisons\n- Compare every row.")


def test_good_description_is_accepted_as_l1(skill: Skill, train: list[Task]) -> None:
    desc = "Answer questions about a data table: find the rows, count or compare them, reply with values only."
    p = propose(skill, train, [{"description": desc, "why": "d"}])
    assert len(p.edits) == 1 and p.edits[0].edit.layer == "L1"
    assert apply_patch(skill.root, p.to_patch()).description == desc


# ------------------------------------------------------------------------------ rejecting


def test_description_rules(skill: Skill, train: list[Task]) -> None:
    assert check_description("Answer table questions.") is None
    assert check_description("Answer questions, e.g. counts and sums, over tables of 3.5 MB.") is None
    assert "51 words" in (check_description(" ".join(["word"] * 51)) or "")
    assert "single sentence" in (check_description("Answer questions. Use it for tables.") or "")
    assert "empty" in (check_description("  ") or "")
    long = "Answer " + " ".join(["rows"] * 50) + "."  # 51 words, within the schema's 300 characters
    assert "words" in only_reason(propose(skill, train, [{"description": long, "why": "x"}]))
    two = "Answer table questions. Reply with values only."
    assert "single sentence" in only_reason(propose(skill, train, [{"description": two, "why": "x"}]))


def test_l2_budget(skill: Skill, train: list[Task]) -> None:
    body = skill.body
    assert check_l2_budget(body, len(body)) is None and "budget" in (check_l2_budget(body, len(body) - 1) or "")
    add = {"section": COUNT, "add": "Re-count the rows, slowly and carefully, one at a time.", "why": "x"}
    assert "over the L2 budget" in only_reason(propose(skill, train, [add], l2_max_chars=len(body) + 20))
    assert len(propose(skill, train, [add], l2_max_chars=len(body) + 80).edits) == 1


def test_training_values_are_refused(skill: Skill, train: list[Task]) -> None:
    old = "Count the rows.\n"
    assert check_no_training_values(old + "Check every row.\n", old, train) is None
    why = check_no_training_values(old + "If unsure, the answer is 2004.\n", old, train)
    assert why is not None and "2004" in why and "nt-0" in why
    why = check_no_training_values(old + "Find the last year where this team played.\n", old, train)
    assert why is not None and "training question nt-0" in why  # 4 words in a row from its question
    why = check_no_training_values(old + "Cities such as Bangkok, Thailand are answers.\n", old, train)
    assert why is not None and "Bangkok, Thailand" in why
    # A value the old text already had is not new; the skill's own example number 12,467 stays.
    assert check_no_training_values(old + "Use 2004 as a year.\n", old + "Use 2004.\n", train) is None
    assert check_no_training_values(old + "Write 12467 as 12,467.\n", old + "Like 12,467.\n", train) is None
    reason = only_reason(propose(skill, train, [{"section": COUNT, "add": "Passengers: 12,467 is not 12467; "
                                                 "answer Derby County for opponents.", "why": "x"}]))
    assert "Derby County" in reason or "12467" in reason


def test_edit_that_does_not_apply(skill: Skill, train: list[Task]) -> None:
    reason = only_reason(propose(skill, train, [{"layer": "L2", "path": "SKILL.md", "old": "This line is not there",
                                                 "new": "x", "why": "x"}]))
    assert reason.startswith("does not apply") and "not found" in reason
    reason = only_reason(propose(skill, train, [{"layer": "L3", "path": "references/nope.md", "old": "x",
                                                 "new": "y", "why": "x"}]))
    assert "does not apply" in reason and "does not exist" in reason


def test_whole_body_rewrite_is_refused(skill: Skill, train: list[Task]) -> None:
    # The schema caps `old` at 400 characters; the check in code does not rely on that.
    body = skill.body
    old = body[: int(len(body) * 0.6)]
    patcher = Patcher(scripted([]))
    reason = patcher.check(skill, [Edit("L2", "SKILL.md", old, "# Answering\n")], [], [], train)
    assert reason is not None and "never a rewrite of the whole skill" in reason
    # Appending after a long anchor replaces nothing, so it is not a rewrite.
    assert patcher.check(skill, [Edit("L2", "SKILL.md", old, old + "\nMore.")], [], [], train) is None
    ref = skill.files[REFERENCE]
    reason = patcher.check(skill, [Edit("L3", REFERENCE, ref, "# Other\n")], [], [], train)
    assert reason is not None and "rewrite" in reason


def test_heading_removal_is_refused(skill: Skill, train: list[Task]) -> None:
    old = '## Comparisons\n- "Most", "least"'
    reason = only_reason(propose(skill, train, [{"layer": "L2", "path": "SKILL.md", "old": old,
                                                 "new": '- "Most", "least"', "why": "x"}]))
    assert "removes the section heading '## Comparisons'" in reason


def test_preservation_signals_protect_text(skill: Skill, train: list[Task]) -> None:
    edit = {"layer": "L2", "path": "SKILL.md", "old": COUNT_RULE, "new": "- Count the rows.", "why": "x"}
    robust = PreservationSignal("p1-nt-5", 1, "nt-5", "listing the matching rows one by one", COUNT, True)
    reason = only_reason(propose(skill, train, [edit], preservation=[robust]))
    assert "nt-5" in reason and "p1-nt-5" in reason
    # The same signal by its wording only (anchored elsewhere) still protects the line.
    worded = PreservationSignal("p1-nt-6", 1, "nt-6", "list the matching rows one by one then count", "Comparisons",
                                True)
    assert "p1-nt-6" in only_reason(propose(skill, train, [edit], preservation=[worded]))
    lucky = PreservationSignal("p1-nt-5", 1, "nt-5", "listing the matching rows one by one", COUNT, False)
    assert len(propose(skill, train, [edit], preservation=[lucky]).edits) == 1
    add = {"section": COUNT, "add": "Re-count once.", "why": "x"}  # adding to a protected section is fine
    assert len(propose(skill, train, [add], preservation=[robust]).edits) == 1


def test_reference_file_without_pointer_and_dangling_mentions(skill: Skill, train: list[Task]) -> None:
    reason = only_reason(propose(skill, train, [{"layer": "L3", "path": "references/units.md", "old": "",
                                                 "new": "# Units\nStrip units.\n", "why": "x"}]))
    assert "Read references/units.md when" in reason
    reason = only_reason(propose(skill, train, [{"section": COUNT, "add": "See references/units.md.", "why": "x"}]))
    assert "references/units.md, which does not exist" in reason


def test_conflicting_edits_of_two_patterns(skill: Skill, train: list[Task]) -> None:
    mem = MomentumMemory()
    grads = [TextGradient("g1-a", 1, "a", "guessed instead of counting", "L2", COUNT, "d", ["a"], ""),
             TextGradient("g1-b", 1, "b", "guessed instead of counting", "L2", COUNT, "d", ["b"], ""),
             TextGradient("g1-c", 1, "c", "answer has extra words", "L2", "Answer format", "d", ["c"], "")]
    mem.update(grads, 1)
    first = [{"layer": "L2", "path": "SKILL.md", "old": "Do not guess.", "new": "Never guess.", "why": "1"}]
    second = [{"layer": "L2", "path": "SKILL.md", "old": "Do not guess.", "new": "No guessing.", "why": "2"},
              {"section": "Answer format", "add": "Reply with no extra words at all, not even a unit.", "why": "3"}]
    p = Patcher(scripted(first, second)).propose(skill, mem.ranked(), [], train, step=1)
    assert [(pe.pattern_id, pe.rationale) for pe in p.edits] == [("P1", "1"), ("P2", "3")]
    assert len(p.rejected) == 1 and p.rejected[0][0]["pattern"] == "P2"
    assert p.rejected[0][1].startswith("conflicts with an earlier edit of this proposal")
    apply_edits_in_memory(skill, p.to_patch().edits)  # the proposal as a whole applies


def test_max_patterns_highest_weight_first(skill: Skill, train: list[Task]) -> None:
    mem = MomentumMemory()
    labels = ["aaa bbb ccc", "ddd eee fff", "ggg hhh iii", "jjj kkk lll"]
    grads = [TextGradient(f"g{i}", 1, f"t{i}", lab, "L2", COUNT, "d", [f"t{i}"], "")
             for n, lab in enumerate(labels) for i in range(n + 1)]
    mem.update(grads, 1)
    backend = scripted([{"section": COUNT, "add": "Re-count once.", "why": "x"}])
    Patcher(backend, max_patterns=3).propose(skill, mem.patterns, [], train, step=1)
    assert len(backend.calls) == 3
    shown = [c.messages[1].content.split("\n")[0] for c in backend.calls]
    assert [s.split(":")[-1].strip() for s in shown] == ["jjj kkk lll", "ggg hhh iii", "ddd eee fff"]


def test_model_failure_is_counted_not_raised(skill: Skill, train: list[Task]) -> None:
    p = Patcher(ScriptedBackend(lambda req: "no json here")).propose(skill, [pattern()], [], train, step=1)
    assert p.edits == [] and p.invalid_outputs == 3 and "model output invalid" in p.rejected[0][1]

    def boom(req: CompletionRequest) -> str:
        raise BackendError("down")

    p = Patcher(ScriptedBackend(boom)).propose(skill, [pattern()], [], train, step=1)
    assert p.edits == [] and "model call failed" in p.rejected[0][1]


# ---------------------------------------------------------------------------- structural move


def test_structural_move_after_three_recurrences(skill: Skill, train: list[Task]) -> None:
    pat = pattern(steps=3, patches=1)
    assert pat.recurrence == 3 and Patcher.is_structural(pat)
    assert not Patcher.is_structural(pattern(steps=3)) and not Patcher.is_structural(pattern(steps=2, patches=1))
    in_l3 = pattern(steps=3, patches=1)
    in_l3.layer = "L3"
    assert not Patcher.is_structural(in_l3)  # already in references/: nothing to move out of the body
    detail = ("To count, list the matching rows to yourself one by one, then count them.\n"
              "Skip repeated header rows and total rows.")
    backend = scripted([{"detail": detail, "condition": "When the question asks how many rows match.",
                         "why": "keeps failing"}])
    p = Patcher(backend).propose(skill, [pat], [], train, step=4)
    assert backend.calls[0].json_schema == MOVE_SCHEMA and "in-place edit" in backend.calls[0].messages[1].content
    assert [pe.edit.path for pe in p.edits] == ["references/miscounted-the-matching-rows.md", "SKILL.md"]
    create, pointer = (pe.edit for pe in p.edits)
    assert create.old == "" and create.new.startswith("# Miscounted the matching rows\n\n") and detail in create.new
    assert p.edits[0].rationale.startswith("structural move after 3 recurrences")
    new = apply_patch(skill.root, p.to_patch())
    line = "- Read references/miscounted-the-matching-rows.md when the question asks how many rows match."
    assert line in new.body.splitlines()
    assert COUNT_RULE not in new.body  # moved out: the reference now holds it
    assert "- Ignore header rows repeated inside the body" in new.body  # not covered by the detail: stays
    assert not [pr for pr in new.problems if "references/" in str(pr.path)]  # pointed to, so no warning


def test_structural_move_respects_preservation_by_only_adding_the_pointer(skill: Skill, train: list[Task]) -> None:
    robust = PreservationSignal("p3-nt-5", 3, "nt-5", "listing rows one by one", COUNT, True)
    backend = scripted([{"detail": "To count, list the matching rows to yourself one by one, then count them.",
                         "condition": "", "why": "w"}])
    p = Patcher(backend).propose(skill, [pattern(steps=3, patches=2)], [robust], train, step=4)
    assert len(p.edits) == 2
    assert len(p.rejected) == 1 and "p3-nt-5" in p.rejected[0][1]  # the move variant, then the pointer only
    new = apply_patch(skill.root, p.to_patch())
    assert COUNT_RULE in new.body  # protected line kept
    assert "- Read references/miscounted-the-matching-rows.md when a task involves miscounted the matching rows." \
        in new.body  # empty condition: a generic one from the label


def test_structural_move_without_detail_is_rejected(skill: Skill, train: list[Task]) -> None:
    backend = scripted([{"detail": "ok", "condition": "always", "why": "w"}])
    p = Patcher(backend).propose(skill, [pattern(steps=3, patches=1)], [], train, step=4)
    assert p.edits == [] and "without detail" in p.rejected[0][1]
