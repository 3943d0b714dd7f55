"""Patcher: answers picked from the skill's edit menu become exact edits, every rule is checked in
code and rejects what it should, the simplest passing answer makes candidate 0 and the others
make the pool, every answer is counted, and a pattern that keeps recurring after in-place patches
is moved into references/. Real skill folder (a copy of skills/table-qa plus one reference) and
real WikiTableQuestions training tasks for the training-value checks."""

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
from skillgrad_tui.core.edit_menu import EditMenu
from skillgrad_tui.core.patch_checks import (CONFLICT, DANGLING, DESCRIPTION_RULE, DOES_NOT_APPLY, HEADING_REMOVED,
                                             L2_BUDGET, MODEL_FAILED, MODEL_INVALID, NO_CHANGE, PROTECTED, REWRITE,
                                             TRAINING_VALUE, check_description, check_l2_budget,
                                             check_no_training_values)
from skillgrad_tui.core.patcher import Patcher, Proposal
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


def key(skill: Skill, section: str, starts: str, focus: str = COUNT) -> str:
    """The menu's anchor key for the block of `section` whose first line starts with `starts`."""
    blocks = EditMenu(skill, focus=focus).targets[section]
    return next(b.key for b in blocks if skill.files[b.path][b.start : b.end].startswith(starts))


def ins(section: str, anchor: str, text: str, why: str = "w") -> dict[str, Any]:
    return {"section": section, "op": "insert_after", "anchor": anchor, "text": text, "why": why}


def rep(section: str, anchor: str, text: str, why: str = "w", op: str = "replace") -> dict[str, Any]:
    return {"section": section, "op": op, "anchor": anchor, "text": text, "why": why}


def propose(skill: Skill, train: list[Task], candidates: list[dict[str, Any]], *, pat: Pattern | None = None,
            preservation: list[PreservationSignal] | None = None, n: int = 1, **kw: Any) -> Proposal:
    return Patcher(scripted(candidates), **kw).propose(skill, [pat or pattern()], preservation or [], train, step=1,
                                                       candidates=n)


def only_reason(p: Proposal) -> str:
    assert p.edits == [] and p.rejected, p.rejected
    return p.rejected[0][1]


def last(skill: Skill) -> str:
    return key(skill, COUNT, "- Numbers may")


# ------------------------------------------------------------------------------ accepting


def test_insert_after_is_converted_applied_and_lands_in_its_section(skill: Skill, train: list[Task]) -> None:
    p = propose(skill, train, [ins(COUNT, last(skill), "Check the count a second time.")])
    assert p.rejected == [] and len(p.edits) == 1
    assert (p.proposed, p.applied, p.passed) == (1, 1, 1)
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


def test_the_schema_is_built_from_the_skill_and_the_prompt_shows_its_lines(skill: Skill, train: list[Task]) -> None:
    backend = scripted([ins(COUNT, last(skill), "Count twice.")])
    Patcher(backend).propose(skill, [pattern()], [], train, step=1)
    req = backend.calls[0]
    branches = req.json_schema["properties"]["candidates"]["items"]["anyOf"]
    sections = {b["properties"]["section"]["const"] for b in branches}
    assert {COUNT, "Answer format", REFERENCE, "new section", "description"} <= sections
    assert req.max_tokens == 256 and req.temperature == 0.0
    user = req.messages[1].content
    assert COUNT_RULE in user and '"op"' in user  # the exact section text, and how to answer


def test_simplest_passing_answer_is_candidate_zero_and_the_rest_make_the_pool(skill: Skill,
                                                                              train: list[Task]) -> None:
    answers = [ins(COUNT, last(skill), "When counting, write down each matching row with its row number, then "
                                       "count the list you wrote, and check it again.", "long"),
               rep(COUNT, key(skill, COUNT, "- To count"), "- To count, list the matching rows one by one, then "
                                                         "count them. Do not guess.", "replace"),
               ins(COUNT, last(skill), "Count twice.", "short")]
    backend = scripted(answers)
    p = Patcher(backend).propose(skill, [pattern()], [], train, step=1, candidates=3)
    assert [pe.rationale for pe in p.edits] == ["replace"]  # 13 characters changed beat 15 and 110
    assert [[pe.rationale for pe in c] for c in p.candidates] == [["replace"], ["short"], ["long"]]
    assert p.origins[0] == "each pattern's simplest edit" and p.origins[1].startswith("alternative 2")
    assert p.rejected == [] and len(backend.calls) == 1  # the alternatives are not failures, nor new calls


def test_too_few_candidates_are_sampled_again_and_duplicates_dropped(skill: Skill, train: list[Task]) -> None:
    same = [ins(COUNT, last(skill), "Count twice.")]
    backend = scripted(same, same + [ins(COUNT, last(skill), "Count three times.")])
    p = Patcher(backend, seed=5).propose(skill, [pattern()], [], train, step=1, candidates=2)
    assert [[pe.edit.new.splitlines()[-1] for pe in c] for c in p.candidates] == [["- Count twice."],
                                                                                  ["- Count three times."]]
    assert [c.temperature for c in backend.calls] == [0.0, 0.8]  # one more call, sampled, for the missing one
    assert len({c.seed for c in backend.calls}) == 2 and p.proposed == 3
    backend = scripted(same)  # a model that repeats itself: one call per missing candidate, no more
    p = Patcher(backend).propose(skill, [pattern()], [], train, step=1, candidates=3)
    assert len(p.candidates) == 1 and len(backend.calls) == 3


def test_simplest_failing_answer_falls_back_to_next(skill: Skill, train: list[Task]) -> None:
    p = propose(skill, train, [ins(COUNT, last(skill), "Write each matching row down before you count.", "longer"),
                               ins(COUNT, last(skill), "Say 2004.", "bad"),  # smallest, copies nt-0
                               ins(COUNT, last(skill), "Re-count the rows.", "ok")])
    assert [pe.rationale for pe in p.edits] == ["ok"]
    assert [(raw["why"], raw["reason_key"], "nt-0" in reason) for raw, reason in p.rejected] == \
        [("bad", TRAINING_VALUE, True)]
    assert set(p.reasons()) == {TRAINING_VALUE}


def test_operations_new_section_reference_replace_delete(skill: Skill, train: list[Task]) -> None:
    body_end = f"Read {REFERENCE} when a question compares dates."
    p = propose(skill, train, [{"section": "new section", "op": "new_section", "title": "Units",
                                "text": "Check units before comparing.", "why": "n"}],
                pat=pattern("ignored units of measure", "new section"))
    added = "\n\n## Units\n- Check units before comparing."
    assert p.edits[0].edit == Edit("L2", "SKILL.md", body_end, body_end + added)
    ref_key = EditMenu(skill, focus=REFERENCE).targets[REFERENCE][-1].key
    p = propose(skill, train, [ins(REFERENCE, ref_key, "Treat a missing month as unknown.")],
                pat=pattern("compared dates wrongly", REFERENCE))
    assert p.edits[0].edit == Edit("L3", REFERENCE, "- Compare years as numbers.",
                                   "- Compare years as numbers.\n- Treat a missing month as unknown.")
    anchor = key(skill, COUNT, "- To count")
    p = propose(skill, train, [rep(COUNT, anchor, "Never guess a count.")])
    assert p.edits[0].edit == Edit("L2", "SKILL.md", COUNT_RULE, "- Never guess a count.")
    p = propose(skill, train, [rep(COUNT, key(skill, COUNT, "- Ignore"), "", op="delete")])
    assert p.edits[0].edit.new == "" and "Ignore header rows" in p.edits[0].edit.old
    # Text equal to the old line changes nothing: counted as a no-op, not as an edit that misses
    # (twice: with no candidate, the patcher samples the pattern once more).
    p = propose(skill, train, [rep(COUNT, anchor, COUNT_RULE[2:])])
    assert p.edits == [] and p.reasons() == {NO_CHANGE: 2} and (p.proposed, p.applied) == (2, 0)


def test_good_description_is_accepted_as_l1(skill: Skill, train: list[Task]) -> None:
    desc = "Answer questions about a data table: find the rows, count or compare them, reply with values only."
    p = propose(skill, train, [{"section": "description", "op": "new_description", "text": desc, "why": "d"}])
    assert len(p.edits) == 1 and p.edits[0].edit.layer == "L1"
    assert apply_patch(skill.root, p.to_patch()).description == desc


def test_an_answer_outside_the_menu_is_invalid_output(skill: Skill, train: list[Task]) -> None:
    """What used to be the common failure (a section or old text that is not there) is no longer
    a valid answer: the schema refuses it and the model is asked again, within bounds."""
    bad = {"section": "SECTION_L1_2", "op": "insert_after", "anchor": "L2", "text": "x", "why": "w"}
    p = propose(skill, train, [bad])
    assert p.edits == [] and p.invalid_outputs == 6 and p.reasons() == {MODEL_INVALID: 2}


# ------------------------------------------------------------------------------ rejecting


def desc(text: str) -> dict[str, Any]:
    return {"section": "description", "op": "new_description", "text": text, "why": "x"}


def test_description_rules(skill: Skill, train: list[Task]) -> None:
    assert check_description("Answer table questions.") is None
    assert check_description("Answer questions, e.g. counts and sums, over tables of 3.5 MB.") is None
    assert "51 words" in (check_description(" ".join(["word"] * 51)) or "")
    assert "single sentence" in (check_description("Answer questions. Use it for tables.") or "")
    assert "empty" in (check_description("  ") or "")
    long = "Answer " + " ".join(["rows"] * 50) + "."  # 51 words, within the schema's 300 characters
    assert "words" in only_reason(propose(skill, train, [desc(long)]))
    p = propose(skill, train, [desc("Answer table questions. Reply with values only.")])
    assert "single sentence" in only_reason(p) and set(p.reasons()) == {DESCRIPTION_RULE}


def test_l2_budget(skill: Skill, train: list[Task]) -> None:
    body = skill.body
    assert check_l2_budget(body, len(body)) is None and "budget" in (check_l2_budget(body, len(body) - 1) or "")
    add = ins(COUNT, last(skill), "Re-count the rows, slowly and carefully, one at a time.")
    p = propose(skill, train, [add], l2_max_chars=len(body) + 20)
    assert "over the L2 budget" in only_reason(p) and set(p.reasons()) == {L2_BUDGET}
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
    reason = only_reason(propose(skill, train, [ins(COUNT, last(skill), "Passengers: 12,467 is not 12467; "
                                                                        "answer Derby County for opponents.")]))
    assert "Derby County" in reason or "12467" in reason


def test_checks_in_code_still_refuse_what_no_menu_answer_can_produce(skill: Skill, train: list[Task]) -> None:
    """Edits from elsewhere (the person's review, a future caller) still go through every check."""
    patcher = Patcher(scripted([]))
    why = patcher.check(skill, [Edit("L2", "SKILL.md", "This line is not there", "x")], [], [], train)
    assert why is not None and why[0] == DOES_NOT_APPLY and "not found" in why[1]
    old = '## Comparisons\n- "Most", "least"'
    why = patcher.check(skill, [Edit("L2", "SKILL.md", old, '- "Most", "least"')], [], [], train)
    assert why == (HEADING_REMOVED, "removes the section heading '## Comparisons'")
    why = patcher.check(skill, [Edit("L3", "references/units.md", "", "# Units\nStrip units.\n")], [], [], train)
    assert why is not None and why[0] == DANGLING and "Read references/units.md when" in why[1]
    # The schema caps the new text; the rewrite check in code does not rely on that.
    body = skill.body
    old = body[: int(len(body) * 0.6)]
    why = patcher.check(skill, [Edit("L2", "SKILL.md", old, "# Answering\n")], [], [], train)
    assert why is not None and why[0] == REWRITE and "never a rewrite of the whole skill" in why[1]
    assert patcher.check(skill, [Edit("L2", "SKILL.md", old, old + "\nMore.")], [], [], train) is None
    ref = skill.files[REFERENCE]
    why = patcher.check(skill, [Edit("L3", REFERENCE, ref, "# Other\n")], [], [], train)
    assert why is not None and why[0] == REWRITE


def test_preservation_signals_protect_text(skill: Skill, train: list[Task]) -> None:
    edit = rep(COUNT, key(skill, COUNT, "- To count"), "Count the rows.")
    robust = PreservationSignal("p1-nt-5", 1, "nt-5", "listing the matching rows one by one", COUNT, True)
    p = propose(skill, train, [edit], preservation=[robust])
    assert "nt-5" in only_reason(p) and "p1-nt-5" in only_reason(p) and set(p.reasons()) == {PROTECTED}
    # The same signal by its wording only (anchored elsewhere) still protects the line.
    worded = PreservationSignal("p1-nt-6", 1, "nt-6", "list the matching rows one by one then count", "Comparisons",
                                True)
    assert "p1-nt-6" in only_reason(propose(skill, train, [edit], preservation=[worded]))
    lucky = PreservationSignal("p1-nt-5", 1, "nt-5", "listing the matching rows one by one", COUNT, False)
    assert len(propose(skill, train, [edit], preservation=[lucky]).edits) == 1
    add = ins(COUNT, last(skill), "Re-count once.")  # adding to a protected section is fine
    assert len(propose(skill, train, [add], preservation=[robust]).edits) == 1


def test_dangling_mentions(skill: Skill, train: list[Task]) -> None:
    p = propose(skill, train, [ins(COUNT, last(skill), "See references/units.md.")])
    assert "references/units.md, which does not exist" in only_reason(p) and set(p.reasons()) == {DANGLING}


def test_conflicting_edits_of_two_patterns(skill: Skill, train: list[Task]) -> None:
    mem = MomentumMemory()
    grads = [TextGradient("g1-a", 1, "a", "guessed instead of counting", "L2", COUNT, "d", ["a"], ""),
             TextGradient("g1-b", 1, "b", "guessed instead of counting", "L2", COUNT, "d", ["b"], ""),
             TextGradient("g1-c", 1, "c", "answer has extra words", "L2", COUNT, "d", ["c"], "")]
    mem.update(grads, 1)
    anchor = key(skill, COUNT, "- To count")
    first = [rep(COUNT, anchor, COUNT_RULE.replace("Do not guess.", "Never guess."), "1")]
    second = [rep(COUNT, anchor, COUNT_RULE.replace("Do not guess.", "Do not ever guess."), "2"),
              ins(COUNT, last(skill), "Reply with no extra words at all, not even a unit, when you answer.", "3")]
    p = Patcher(scripted(first, second)).propose(skill, mem.ranked(), [], train, step=1, candidates=4)
    assert [(pe.pattern_id, pe.rationale) for pe in p.edits] == [("P1", "1"), ("P2", "3")]
    assert set(p.reasons()) == {CONFLICT} and p.rejected[0][0]["pattern"] == "P2"
    assert p.rejected[0][1].startswith("conflicts with an earlier edit of this candidate")
    apply_edits_in_memory(skill, p.to_patch().edits)  # the candidate as a whole applies
    # The conflicting edit still makes a candidate of its own, and so does each pattern's edit alone.
    assert [[pe.rationale for pe in c] for c in p.candidates] == [["1", "3"], ["3"], ["1"], ["2"]]


def test_max_patterns_highest_weight_first(skill: Skill, train: list[Task]) -> None:
    mem = MomentumMemory()
    labels = ["aaa bbb ccc", "ddd eee fff", "ggg hhh iii", "jjj kkk lll"]
    grads = [TextGradient(f"g{i}", 1, f"t{i}", lab, "L2", COUNT, "d", [f"t{i}"], "")
             for n, lab in enumerate(labels) for i in range(n + 1)]
    mem.update(grads, 1)
    backend = scripted([ins(COUNT, last(skill), "Re-count once.")])
    Patcher(backend, max_patterns=3).propose(skill, mem.patterns, [], train, step=1)
    assert len(backend.calls) == 3
    shown = [c.messages[1].content.split("\n")[0] for c in backend.calls]
    assert [s.split(":")[-1].strip() for s in shown] == ["jjj kkk lll", "ggg hhh iii", "ddd eee fff"]


def test_model_failure_is_counted_not_raised(skill: Skill, train: list[Task]) -> None:
    p = Patcher(ScriptedBackend(lambda req: "no json here")).propose(skill, [pattern()], [], train, step=1)
    assert p.edits == [] and p.invalid_outputs == 6 and "model output invalid" in p.rejected[0][1]
    assert p.reasons() == {MODEL_INVALID: 2}  # the greedy call and one sampled retry

    def boom(req: CompletionRequest) -> str:
        raise BackendError("down")

    p = Patcher(ScriptedBackend(boom)).propose(skill, [pattern()], [], train, step=1)
    assert p.edits == [] and "model call failed" in p.rejected[0][1] and p.reasons() == {MODEL_FAILED: 2}


# ---------------------------------------------------------------------------- structural move


def move(text: str, condition: str, section: str = COUNT) -> dict[str, Any]:
    return {"section": section, "op": "move_to_references", "condition": condition, "text": text, "why": "moved"}


def test_structural_move_after_three_recurrences(skill: Skill, train: list[Task]) -> None:
    pat = pattern(steps=3, patches=1)
    assert pat.recurrence == 3 and Patcher.is_structural(pat)
    assert not Patcher.is_structural(pattern(steps=3)) and not Patcher.is_structural(pattern(steps=2, patches=1))
    in_l3 = pattern(steps=3, patches=1)
    in_l3.layer = "L3"
    assert not Patcher.is_structural(in_l3)  # already in references/: nothing to move out of the body
    detail = ("To count, list the matching rows to yourself one by one, then count them.\n"
              "Skip repeated header rows and total rows.")
    backend = scripted([move(detail, "When the question asks how many rows match.")])
    p = Patcher(backend).propose(skill, [pat], [], train, step=4)
    branches = backend.calls[0].json_schema["properties"]["candidates"]["items"]["anyOf"]
    assert {b["properties"]["op"]["const"] for b in branches} == {"move_to_references"}
    assert "in-place edit" in backend.calls[0].messages[1].content
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
    backend = scripted([move("To count, list the matching rows to yourself one by one, then count them.", "")])
    p = Patcher(backend).propose(skill, [pattern(steps=3, patches=2)], [robust], train, step=4)
    assert len(p.edits) == 2 and p.rejected == []  # the move variant failed; its fallback passed
    new = apply_patch(skill.root, p.to_patch())
    assert COUNT_RULE in new.body  # protected line kept
    assert "- Read references/miscounted-the-matching-rows.md when a task involves miscounted the matching rows." \
        in new.body  # empty condition: a generic one from the label


# ------------------------------------------------------------------------------ template text


@pytest.mark.parametrize("text", [
    "<a line to add",  # the case: a placeholder cut off by the token limit
    "<one short general rule>",  # the example's text when the class has no rule
    "Use <the guidance, a few lines> here.",  # a reply-format placeholder inside a sentence
    "Give general advice that holds for any task.",  # five words of the prompt's rules in a row
])
def test_placeholder_or_template_text_is_rejected_by_the_checks(skill: Skill, train: list[Task], text: str) -> None:
    p = propose(skill, train, [ins(COUNT, last(skill), text)])
    assert p.rejected and p.rejected[0][0]["reason_key"] == "copies the prompt's template", p.rejected
    assert "placeholder" in only_reason(p) or "prompt" in only_reason(p)


def test_a_new_section_made_of_the_template_is_rejected(skill: Skill, train: list[Task]) -> None:
    # What a one-step HTTP run wrote: a heading and a placeholder bullet, accepted_by_checks: true.
    p = propose(skill, train, [{"section": "new section", "op": "new_section", "title": "Reference file to fix",
                                "text": "- <a line to add", "why": "fix"}])
    assert p.edits == [] and p.rejected[0][0]["reason_key"] == "copies the prompt's template"


def test_real_guidance_and_the_skills_own_placeholders_pass(skill: Skill, train: list[Task]) -> None:
    from skillgrad_tui.core.patch_prompts import TEMPLATE_TEXTS
    from skillgrad_tui.core.template_text import check_no_template_text

    for ok in ("Check the count a second time.", "Run `python scripts/fill.py <input pdf> <output pdf>`.",
               "Answer with the number only, without units."):
        assert check_no_template_text("# Skill\n", "# Skill\n" + ok, TEMPLATE_TEXTS) is None, ok
    said = "# Skill\n- <one short general rule>\n"  # already in the skill: editing near it is no copy
    assert check_no_template_text(said, said + "- Count twice.\n", TEMPLATE_TEXTS) is None
    p = propose(skill, train, [ins(COUNT, last(skill), "Check the count a second time.")])
    assert p.rejected == [] and len(p.edits) == 1
