"""The answer's form, read from the evaluator's diffs: induced from failures, written into the
skill's examples by code, checked like any edit, and gated. With SmolLM2 it repairs the row-count
skill whose examples show bare numbers where the catalogue wants `N rows`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from skillgrad_tui.core.answer_form import FORM_ORIGIN, SLOT, answer_form, form_edits, induce
from skillgrad_tui.core.events import Event
from skillgrad_tui.core.llm.base import CompletionRequest
from skillgrad_tui.core.llm.scripted import ScriptedBackend
from skillgrad_tui.core.optimizer import OptimizeOptions, optimize
from skillgrad_tui.core.patcher import Patcher, check_no_training_values
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.skill import SKILL_MD, Edit, apply_edits_in_memory, load_skill
from skillgrad_tui.core.suites import load_suite

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "skills" / "suites" / "row-count"
BARE = [("a", ["12"], ["12 rows"]), ("b", ["9"], ["26 rows"]), ("c", ["rows: 3"], ["3 rows"])]


def defective(tmp: Path, defect: str) -> Path:
    dst = tmp / defect / "row-count"
    shutil.copytree(REPO / "skills" / "defective" / defect / "row-count", dst)
    return dst


def test_forms_and_their_induction() -> None:
    assert answer_form("12 rows") == f"{SLOT} rows" and answer_form(" rows:  7 ") == f"rows: {SLOT}"
    assert answer_form("Oslo") is None and answer_form("3 to 4") is None and answer_form("v1.2") is None
    shift = induce(BARE)
    assert shift is not None and shift.expected == f"{SLOT} rows" and shift.got == (SLOT, f"rows: {SLOT}")
    assert (shift.support, shift.failures, shift.tasks) == (3, 3, ("a", "b", "c"))
    assert "`N rows`" in shift.why() and "`N`" in shift.why()
    assert induce(BARE[:1]) is None  # one failure is not a pattern
    # Right form, wrong values: not a form shift, whatever the count.
    assert induce([("a", ["7 rows"], ["12 rows"]), ("b", ["8 rows"], ["26 rows"])]) is None
    # A shift in a minority of the failures is not the problem to fix.
    minority = BARE[:2] + [(f"w{i}", [f"{i} rows"], [f"{i + 1} rows"]) for i in range(3)]
    assert induce(minority) is None
    assert induce([("a", ["12", "13"], ["12 rows"]), ("b", ["Oslo"], ["Bergen"])]) is None


@pytest.mark.parametrize("defect, changed", [("wrong", 4), ("outdated", 4), ("contradictory", 3)])
def test_examples_in_a_wrong_form_are_rewritten_and_pass_the_checks(tmp_path: Path, defect: str, changed: int) -> None:
    skill = load_skill(defective(tmp_path, defect))
    shift = induce(BARE)
    assert shift is not None
    tasks = load_suite(SUITE / "tasks.jsonl").tasks
    edits = form_edits(skill, shift, set())
    assert len(edits) == changed and all(e.layer == "L2" and e.path == SKILL_MD for e in edits)
    after = apply_edits_in_memory(skill, edits)[SKILL_MD]
    for n in ("4", "18", "6"):
        assert f"Answer: {n} rows\n" in after
    assert "Answer: 4\n" not in after and "rows: 4" not in after
    assert "Write the answer in the form" not in after  # the examples show the form: no rule needed
    # The real suite's 60 tasks as training tasks: nothing is copied from them, nothing else breaks.
    assert Patcher(ScriptedBackend(lambda r: "{}")).check(skill, edits, [], [], tasks) is None


def test_an_older_layout_of_the_expected_words_is_rewritten_though_the_model_never_wrote_it(tmp_path: Path) -> None:
    # What SmolLM2 does with the outdated skill: its examples say `rows: 4`, it answers a bare `4`.
    shift = induce([("a", ["12"], ["12 rows"]), ("b", ["9"], ["26 rows"])])
    assert shift is not None and shift.got == (SLOT,)
    after = apply_edits_in_memory(load_skill(defective(tmp_path, "outdated")),
                                  form_edits(load_skill(tmp_path / "outdated" / "row-count"), shift, set()))[SKILL_MD]
    assert "Answer: 4 rows\n" in after and "Answer: rows: 4" not in after and "`7 rows`" in after
    # Other words in one-number answers are another kind of answer, left alone.
    other = induce([("a", ["12"], ["12 rows"]), ("b", ["9"], ["26 rows"])])
    assert other is not None and answer_form("page 4") is not None
    from skillgrad_tui.core.answer_form import _wrong_form

    assert not _wrong_form(answer_form("page 4") or "", other) and _wrong_form(f"Rows: {SLOT}", other)


def test_a_skill_with_no_example_gets_a_rule_with_a_number_no_training_answer_has(tmp_path: Path) -> None:
    skill = load_skill(defective(tmp_path, "missing"))
    shift = induce(BARE)
    assert shift is not None
    tasks = load_suite(SUITE / "tasks.jsonl").tasks
    avoid = {n for t in tasks for e in t.expected or [] for n in e.split() if n.isdigit()}
    edits = form_edits(skill, shift, avoid)
    assert len(edits) == 1
    after = apply_edits_in_memory(skill, edits)[SKILL_MD]
    assert after.startswith(skill.files[SKILL_MD].rstrip("\n"))  # appended, nothing lost
    assert "\n## Answer format\n- Write the answer in the form `N rows` (N is the value), e.g. `" in after
    example = after.rsplit("e.g. `", 1)[1].split(" rows`")[0]
    assert example not in avoid
    assert check_no_training_values(after, skill.files[SKILL_MD], tasks) is None
    assert Patcher(ScriptedBackend(lambda r: "{}")).check(skill, edits, [], [], tasks) is None
    # A training number in the rule's example is what the checks exist to refuse.
    leaked = form_edits(skill, shift, set())
    number = apply_edits_in_memory(skill, leaked)[SKILL_MD].rsplit("e.g. `", 1)[1].split(" rows`")[0]
    if number in avoid:
        assert check_no_training_values(apply_edits_in_memory(skill, leaked)[SKILL_MD],
                                        skill.files[SKILL_MD], tasks) is not None


def test_a_skill_that_already_shows_the_form_gets_no_edit() -> None:
    shift = induce(BARE)
    assert shift is not None
    assert form_edits(load_skill(REPO / "skills" / "row-count"), shift, set()) == []
    assert form_edits(load_skill(REPO / "skills" / "defective" / "bloated" / "row-count"), shift, set()) == []


# ----------------------------------------------------------------------- through the optimiser

EXAMPLES = "## Worked examples\nQuestion: How many apples?\nAnswer: 4\n\nQuestion: How many pears?\nAnswer: 9\n"


def write_env(tmp: Path) -> tuple[Path, Path]:
    skill = tmp / "skills" / "fruit-count"
    skill.mkdir(parents=True)
    (skill / SKILL_MD).write_text("---\nname: fruit-count\ndescription: Count the fruit in a basket.\n---\n\n"
                                  "# Fruit counts\n\n## Counting\n- Count every fruit named.\n\n" + EXAMPLES,
                                  encoding="utf-8")
    rows = [{"id": f"t{i:02d}", "question": f"How many fruit are in basket {i}?", "answer": f"{i + 20} fruit",
             "evaluator": "exact"} for i in range(16)]
    suite = tmp / "suite" / "tasks.jsonl"
    suite.parent.mkdir(parents=True)
    suite.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return skill, suite


def copying_model(req: CompletionRequest) -> str:
    """Answers in the form the skill's examples show: the trait of small models this module serves."""
    assert req.messages is not None
    n = int([m.content for m in req.messages if "basket " in m.content][-1].split("basket ")[1].split("?")[0]) + 20
    return f"{n} fruit" if "Answer: 4 fruit" in req.messages[0].content else str(n)


def opt_model(req: CompletionRequest) -> str:
    """The diagnoser names the computed class; the patcher offers nothing useful."""
    assert req.json_schema is not None
    props = req.json_schema["properties"]
    if "label" in props:
        return json.dumps({"label": props["label"]["enum"][0], "anchor": "Counting", "diagnosis": "form"})
    if "what_helped" in props:
        return json.dumps({"what_helped": props["what_helped"]["enum"][0], "robust": False})
    return json.dumps({"candidates": []})


def test_the_form_candidate_goes_through_minibatch_and_gate_and_is_written(tmp_path: Path) -> None:
    skill, suite_path = write_env(tmp_path)
    events: list[Event] = []
    options = OptimizeOptions(steps=1, batch_size=4, seed=0, gate="validation", run_dir=tmp_path / "run")
    result = optimize(skill, load_suite(suite_path), ScriptedBackend(copying_model, model_id="task"),
                      ScriptedBackend(opt_model, model_id="opt"), options, sink=events.append)
    proposed = [e for e in events if e.kind == "candidate_proposed"]
    assert proposed and proposed[0].origin == FORM_ORIGIN
    assert [e["new"].strip() for e in proposed[0].edits] == ["Answer: 4 fruit", "Answer: 9 fruit"]
    decided = [e for e in events if e.kind == "candidate_decided" and e.version == proposed[0].version]
    assert decided and decided[0].kept, decided
    text = (skill / SKILL_MD).read_text(encoding="utf-8")
    assert "Answer: 4 fruit\n" in text and "Answer: 9 fruit\n" in text and "- Count every fruit named." in text
    assert result.summary.startswith("changed")


def test_wrong_values_in_the_right_form_make_no_form_candidate(tmp_path: Path) -> None:
    skill, suite_path = write_env(tmp_path)
    md = skill / SKILL_MD
    md.write_text(md.read_text(encoding="utf-8").replace("Answer: 4\n", "Answer: 4 fruit\n")
                  .replace("Answer: 9\n", "Answer: 9 fruit\n"), encoding="utf-8")

    def off_by_one(req: CompletionRequest) -> str:
        return str(int(copying_model(req).split()[0]) + 1) + " fruit"

    events: list[Event] = []
    options = OptimizeOptions(steps=1, batch_size=4, seed=0, gate="validation", run_dir=tmp_path / "run")
    optimize(skill, load_suite(suite_path), ScriptedBackend(off_by_one, model_id="task"),
             ScriptedBackend(opt_model, model_id="opt"), options, sink=events.append)
    assert all(e.origin != FORM_ORIGIN for e in events if e.kind == "candidate_proposed")


# ----------------------------------------------------------------------- the real model

@pytest.mark.model
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_smollm_repairs_the_wrong_row_count_skill(tmp_path: Path, smollm_backend: Any) -> None:
    """One step from the skill whose examples answer `4` where the catalogue wants `4 rows`: the
    135M model's failures give the form, the rewritten examples win on validation, the skill changes."""
    root = defective(tmp_path, "wrong")
    lines = (SUITE / "tasks.jsonl").read_text(encoding="utf-8").splitlines()
    suite_dir = tmp_path / "suite"
    suite_dir.mkdir()
    shutil.copytree(SUITE / "csv", suite_dir / "csv")
    # The comment line and 40 tasks: 10 to validate on, enough for a clear gain to clear the noise.
    (suite_dir / "tasks.jsonl").write_text("\n".join(lines[:41]) + "\n", encoding="utf-8")
    events: list[Event] = []
    options = OptimizeOptions(steps=1, batch_size=4, seed=0, gate="validation", run_dir=tmp_path / "run")
    result = optimize(root, load_suite(suite_dir / "tasks.jsonl"), smollm_backend, smollm_backend, options,
                      sink=events.append)
    proposed = [e for e in events if e.kind == "candidate_proposed" and e.origin == FORM_ORIGIN]
    assert proposed, [e.origin for e in events if e.kind == "candidate_proposed"]
    decided = [e for e in events if e.kind == "candidate_decided" and e.version == proposed[0].version]
    assert decided and decided[0].kept, decided
    text = (root / SKILL_MD).read_text(encoding="utf-8")
    assert "Answer: 4 rows\n" in text and "Answer: 18 rows\n" in text
    assert result.summary.startswith("changed") and result.account["accepted"] >= 1


# ----------------------------------------------------------------------- worked examples

def test_a_skill_with_no_example_gets_a_worked_example_that_copies_no_other_task(tmp_path: Path) -> None:
    """The `missing` defect: the rule line alone moved SmolLM2 on 1 of 40 held-out tasks; the rule
    with one worked example (a training failure as the agent sees it, with its expected answer) on 22."""
    from skillgrad_tui.core.answer_form import worked_example

    skill = load_skill(defective(tmp_path, "missing"))
    tasks = load_suite(SUITE / "tasks.jsonl").tasks
    shift = induce([(t.id, [t.expected[0].split()[0]], list(t.expected)) for t in tasks[:4]])
    assert shift is not None
    avoid = {n for t in tasks for e in t.expected or [] for n in e.split() if n.isdigit()}
    source = next(t for t in tasks if t.id == "rows-202-184")
    example = worked_example("Table (5 rows):\nrow | Name\n1 | Ann\n2 | Bo\n3 | Cy\n[showing rows 1-3 of 5; 2 rows omitted]",
                             source.question, source.expected[0])
    edits = form_edits(skill, shift, avoid, example)
    after = apply_edits_in_memory(skill, edits)[SKILL_MD]
    assert after.startswith(skill.files[SKILL_MD].rstrip("\n"))
    rule_at, example_at = after.index("## Answer format\n- Write the answer"), after.index("## Worked example\n")
    assert rule_at < example_at and after.endswith("Question: How many rows does the table have?\nAnswer: 5 rows\n")
    patcher = Patcher(ScriptedBackend(lambda r: "{}"))
    # The example's values are its own task's, shown on purpose; checked as given, nothing else copied.
    assert patcher.check(skill, edits, [], [], tasks, shown=example) is None
    # Not declared as a worked example, the same text is a copied answer, as it should be.
    assert patcher.check(skill, edits, [], [], tasks) is not None
    # A training answer outside the example is still refused (the rule's e.g. with a training number).
    leaky = [Edit(e.layer, e.path, e.old, e.new.replace("e.g. `", "e.g. `26 rows` or `")) for e in edits]
    why = patcher.check(skill, leaky, [], [], tasks, shown=example)
    assert why is not None and "26" in why[1]


def test_the_family_question_may_be_repeated_but_not_one_tasks_question() -> None:
    from skillgrad_tui.core.patch_checks import family_phrasing

    tasks = load_suite(SUITE / "tasks.jsonl").tasks
    assert ("how", "many", "rows", "does") in family_phrasing(tasks)
    old = "# Skill\n"
    assert check_no_training_values(old + "Question: How many rows does the table have?\n", old, tasks) is None
    mixed = [Task(id=f"q{i}", question=q, kind="qa", evaluator="exact", expected=["x1"]) for i, q in enumerate(
        ["Which club won the cup in the rainy season?", "Who scored the first goal of the final?",
         "Which club won the league in spring?", "How many goals did the winners score?"])]
    assert family_phrasing(mixed) == set()
    assert check_no_training_values(old + "Which club won the cup in the rainy season?\n", old, mixed) is not None


def test_the_missing_skill_gets_a_worked_example_through_minibatch_and_gate(tmp_path: Path) -> None:
    """A scripted model that answers with the bare count unless the skill shows a worked example in
    `N rows` form (what SmolLM2 does with the `missing` skill): the code-made candidate is the rule
    plus one training failure as a worked example, it wins on validation and is written."""
    import re

    root = defective(tmp_path, "missing")

    def counting_model(req: CompletionRequest) -> str:
        assert req.messages is not None
        n = re.findall(r"Table \((\d+) rows\):", req.messages[1].content)[-1]
        return f"{n} rows" if re.search(r"\nAnswer: \d+ rows\n", req.messages[0].content) else n

    events: list[Event] = []
    options = OptimizeOptions(steps=1, batch_size=4, seed=0, gate="validation", run_dir=tmp_path / "run")
    result = optimize(root, load_suite(SUITE / "tasks.jsonl"), ScriptedBackend(counting_model, model_id="task"),
                      ScriptedBackend(opt_model, model_id="opt"), options, sink=events.append)
    proposed = [e for e in events if e.kind == "candidate_proposed" and e.origin == FORM_ORIGIN]
    assert proposed, [e.kind for e in events]
    assert "## Worked example" in proposed[0].edits[-1]["new"], proposed[0].edits
    decided = [e for e in events if e.kind == "candidate_decided" and e.version == proposed[0].version]
    assert decided and decided[0].kept, decided
    text = (root / SKILL_MD).read_text(encoding="utf-8")
    assert "## Worked example\nTable (" in text and "Question: How many rows does the table have?" in text
    assert re.search(r"\nAnswer: \d+ rows\n", text) and "## Where the count is" in text
    assert result.summary.startswith("changed")
