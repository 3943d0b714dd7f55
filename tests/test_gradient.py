"""Failure and contrastive diagnosers: prompts, label/anchor/layer rules enforced in code, and
never crashing on model output. Real skill folder (a copy of skills/table-qa plus one reference),
real WikiTableQuestions tasks scored by the official evaluator; one test runs the real Gemma."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from skillgrad_tui.core.errors import BackendError
from skillgrad_tui.core.evaluators import get_evaluator
from skillgrad_tui.core.failures import QA_CLASSES
from skillgrad_tui.core.helped_lines import LineChoice, helped_choices
from skillgrad_tui.core.gradient import (NEW_SECTION, ContrastiveDiagnoser, FailureDiagnoser,
                                         PreservationSignal, TextGradient, anchor_choices, clean_label,
                                         resolve_anchor, skill_context)
from skillgrad_tui.core.llm.base import CompletionRequest
from skillgrad_tui.core.llm.scripted import ScriptedBackend
from skillgrad_tui.core.records import Task, Trajectory, Turn
from skillgrad_tui.core.skill import Skill, load_skill
from skillgrad_tui.core.suites import Suite, load_suite

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WTQ = SHARED / "benchmarks" / "wikitablequestions"
REFERENCE = "references/dates.md"


@pytest.fixture(scope="module")
def suite() -> Suite:
    if not WTQ.is_dir():
        pytest.skip(f"shared WikiTableQuestions data not found at {WTQ}")
    return load_suite(WTQ, "training")


@pytest.fixture()
def skill(tmp_path: Path) -> Skill:
    root = tmp_path / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", root)
    (root / "references").mkdir()
    (root / REFERENCE).write_text("# Dates\n\nCompare years as numbers.\n", encoding="utf-8")
    md = root / "SKILL.md"
    md.write_text(md.read_text(encoding="utf-8") + f"\nRead {REFERENCE} when a question compares dates.\n",
                  encoding="utf-8")
    return load_skill(root)


def failed(task: Task, answer: list[str], model_turn: str = "") -> Trajectory:
    verdict = get_evaluator(task.evaluator).score(task, answer)
    assert not verdict.passed
    turns = [Turn("prompt", task.question), Turn("model", model_turn or "\n".join(answer))]
    return Trajectory(task.id, "h", "m", 0, turns=turns, answer=answer, verdict=verdict)


def scripted(*outputs: Any) -> ScriptedBackend:
    """Answers in order (the last one repeats); dicts are sent as JSON text."""
    queue = [json.dumps(o) if isinstance(o, dict) else o for o in outputs]

    def respond(req: CompletionRequest) -> str:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return ScriptedBackend(respond)


def test_valid_output_gives_a_gradient_with_its_failure_class(skill: Skill, suite: Suite) -> None:
    task = suite.by_id()["nt-0"]  # last year in the USL A-League: 2004
    traj = failed(task, ["2003"], "The last row says 2003.")
    backend = scripted({"label": "picked the wrong value", "anchor": "Read the table first",
                        "diagnosis": "The skill does not say how to find the last matching row."})
    g = FailureDiagnoser(backend, seed=3).diagnose(skill, task, traj, step=2)
    assert g is not None and g.source == "model"
    assert (g.label, g.failure_class) == ("picked the wrong value", "wrong_value")
    assert (g.anchor, g.layer) == ("Read the table first", "L2")
    assert g.evidence == ["nt-0"] and g.step == 2 and g.task_id == "nt-0" and g.id == "g2-nt-0"
    assert g.diff == traj.verdict.summary() and "2004" in g.diff and "2003" in g.diff
    req = backend.calls[0]
    assert req.seed == 3 and req.json_schema is not None and req.max_tokens == 160
    props = req.json_schema["properties"]
    assert props["label"]["enum"][0] == "picked the wrong value"  # the computed class first
    assert set(props["label"]["enum"]) == {c.label for c in QA_CLASSES}
    assert set(props["anchor"]["enum"]) == set(anchor_choices(skill)) and "Comparisons" in props["anchor"]["enum"]
    assert props["anchor"]["enum"][0] == "Read the table first"  # where this class's fix usually goes, first
    assert REFERENCE in props["anchor"]["enum"] and "layer" not in props
    system, user = req.messages
    assert system.role == "system" and system.content == skill_context(skill)
    assert system.content.index("# Answering questions over a table") < system.content.index(REFERENCE)
    assert task.question in user.content and "Expected answer: 2004" in user.content
    assert "Model answer: 2003" in user.content and g.diff in user.content
    assert "The last row says 2003." in user.content
    assert "Failure class (computed from the diff): picked the wrong value." in user.content
    assert TextGradient.from_dict(json.loads(json.dumps(g.to_dict()))) == g


def test_the_computed_class_leads_the_vocabulary(skill: Skill, suite: Suite) -> None:
    task = suite.by_id()["nt-5"]  # how many people stayed at least 3 years in office? -> 4
    backend = scripted({"label": "extra words around answer", "anchor": "Answer format", "diagnosis": "d"})
    g = FailureDiagnoser(backend).diagnose(skill, task, failed(task, ["4 people"]), step=1)
    assert g is not None and g.failure_class == "extra_words"
    assert backend.calls[0].json_schema["properties"]["label"]["enum"][0] == "extra words around answer"
    assert "Failure class (computed from the diff): extra words around answer" in backend.calls[0].messages[1].content


def test_same_skill_same_system_message_for_every_task(skill: Skill, suite: Suite) -> None:
    backend = scripted({"label": "picked the wrong value", "anchor": "Comparisons", "diagnosis": "x"})
    d = FailureDiagnoser(backend)
    for tid in ("nt-0", "nt-2"):
        task = suite.by_id()[tid]
        d.diagnose(skill, task, failed(task, ["nothing"]), step=1)
    assert backend.calls[0].messages[0] == backend.calls[1].messages[0]  # shared KV prefix
    assert backend.calls[0].messages[1] != backend.calls[1].messages[1]


@pytest.mark.parametrize("bad", ["", "I think the row was wrong", '{"label": "x"}',
                                 '{"label": "a b c", "anchor": "Comparisons", "diagnosis": "y"}',
                                 '{"label": "picked the wrong value", "anchor": "SECTION_L1_2", "diagnosis": "y"}'])
def test_malformed_output_is_retried_counted_and_the_class_becomes_the_gradient(skill: Skill, suite: Suite,
                                                                                bad: str) -> None:
    task = suite.by_id()["nt-5"]
    backend = ScriptedBackend(lambda req: bad)
    d = FailureDiagnoser(backend)
    g = d.diagnose(skill, task, failed(task, ["7"]), step=1)
    assert len(backend.calls) == 3  # json_attempts: the backend retried with new seeds
    assert [c.seed for c in backend.calls] == [0, 1, 2]
    assert d.invalid_outputs == 3 and d.last_error and d.from_code == 1
    assert g is not None and g.source == "code" and g.failure_class == "wrong_value"
    assert g.label == "picked the wrong value" and g.anchor == "Read the table first"  # placed by the class
    assert "find the right row" in g.diagnosis


def test_retry_that_succeeds_still_counts_the_bad_output(skill: Skill, suite: Suite) -> None:
    task = suite.by_id()["nt-5"]
    backend = scripted("not json", {"label": "picked the wrong value", "anchor": "Counting and arithmetic",
                                    "diagnosis": "Count rows one by one."})
    d = FailureDiagnoser(backend)
    g = d.diagnose(skill, task, failed(task, ["7"]), step=1)
    assert g is not None and g.anchor == "Counting and arithmetic" and g.source == "model"
    assert d.invalid_outputs == 1 and d.from_code == 0


def test_backend_error_is_counted_not_raised(skill: Skill, suite: Suite) -> None:
    def boom(req: CompletionRequest) -> str:
        raise BackendError("server went away")

    task = suite.by_id()["nt-5"]
    d = FailureDiagnoser(ScriptedBackend(boom))
    g = d.diagnose(skill, task, failed(task, ["7"]), step=1)
    assert g is not None and g.source == "code"
    assert d.backend_errors == 1 and "server went away" in (d.last_error or "")


def test_a_passed_task_has_no_gradient(skill: Skill, suite: Suite) -> None:
    task = suite.by_id()["nt-5"]
    ok = Trajectory(task.id, "h", "m", 0, answer=["4"], verdict=get_evaluator("wtq").score(task, ["4"]))
    backend = scripted({"label": "picked the wrong value", "anchor": "Comparisons", "diagnosis": "x"})
    assert FailureDiagnoser(backend).diagnose(skill, task, ok, step=1) is None and backend.calls == []


def test_labels_with_task_values_are_repaired_or_rejected(skill: Skill, suite: Suite) -> None:
    text = skill.files["SKILL.md"]
    album = suite.by_id()["nt-168"]  # what year did the album "jezebel" ... release? -> 1995
    assert clean_label("Jezebel release year 1995 missed", album, text) == ("release year missed", True)
    assert clean_label("the jezebel 1995", album, text) == (None, True)
    city = suite.by_id()["nt-1"]  # in what city did piotr's last 1st place finish occur? -> Bangkok, Thailand
    assert clean_label("city Bangkok picked wrong", city, text) == ("city picked wrong", True)
    assert clean_label("last placed row ignored", city, text) == ("last placed row ignored", False)
    long = clean_label("did not look at every single row of the table", city, text)
    assert long == ("not look at every single row", True)  # cut to 6 words, leading stopword dropped
    for cls in QA_CLASSES:  # the vocabulary survives cleaning whatever the task
        assert clean_label(cls.label, album, text) == (cls.label, False)


def test_anchor_and_layer_rules(skill: Skill) -> None:
    assert resolve_anchor(skill, "## answer format") == ("Answer format", "section")
    assert resolve_anchor(skill, "dates.md") == (REFERENCE, "file")
    assert resolve_anchor(skill, REFERENCE) == (REFERENCE, "file")
    assert resolve_anchor(skill, "New Section") == (NEW_SECTION, "new")
    assert resolve_anchor(skill, "skill description") == ("description", "description")
    assert resolve_anchor(skill, "counting") == ("Counting and arithmetic", "section")
    assert resolve_anchor(skill, "zzz", hint="compare the highest values") == ("Comparisons", "section")
    assert resolve_anchor(skill, "zzz", hint="qqq") == (NEW_SECTION, "new")


@pytest.mark.parametrize("anchor,want", [(REFERENCE, (REFERENCE, "L3")), ("description", ("description", "L1")),
                                         ("Comparisons", ("Comparisons", "L2")),
                                         ("new section", ("new section", "L2"))])
def test_layer_follows_the_anchor(skill: Skill, suite: Suite, anchor: str, want: tuple[str, str]) -> None:
    task = suite.by_id()["nt-7"]
    backend = scripted({"label": "picked the wrong value", "anchor": anchor,
                        "diagnosis": "Compare the values. " * 14})
    g = FailureDiagnoser(backend).diagnose(skill, task, failed(task, ["Lake Tuz"]), step=1)
    assert g is not None and (g.anchor, g.layer) == want
    assert g.diagnosis == ("Compare the values. " * 14).strip()


def test_contrastive_diagnoser_names_a_line_of_the_skill(skill: Skill, suite: Suite, tmp_path: Path) -> None:
    task = suite.by_id()["nt-5"]  # how many people stayed at least 3 years in office? -> 4
    before = failed(task, ["7"], "7")
    now = Trajectory(task.id, "h2", "m", 0, turns=[Turn("model", "4")], answer=["4"],
                     verdict=get_evaluator("wtq").score(task, ["4"]))
    assert now.verdict is not None and now.verdict.passed
    rule = "List the matching rows one by one, then count the list."
    root = tmp_path / "edited" / "table-qa"
    shutil.copytree(skill.root, root)
    md = root / "SKILL.md"
    md.write_text(md.read_text().replace("## Counting and arithmetic\n", f"## Counting and arithmetic\n- {rule}\n", 1))
    edited = load_skill(root)
    with_table = root.parent / "with-table"
    shutil.copytree(root, with_table)
    (with_table / "SKILL.md").write_text((root / "SKILL.md").read_text().replace(
        f"- {rule}\n", f"| Year | Team | Result |\n| 1987 | Browns | Won |\n- {rule}\n", 1))
    ordered = helped_choices(load_skill(with_table), skill)
    assert [c.text for c in ordered[:3]] == [f"- {rule}", "| Year | Team | Result |", "| 1987 | Browns | Won |"]
    choices = helped_choices(edited, skill)
    key = "- List the matching rows one by one, then..."  # the line's start, as the patcher's anchors
    assert choices[0] == LineChoice(key, f"- {rule}", "Counting and arithmetic", True)  # the added line leads
    assert not any(c.new for c in choices[1:]) and len({c.key for c in choices}) == len(choices)
    assert all(not c.text.startswith("#") for c in choices)
    assert not any('"' in c.key or "\\" in c.key for c in choices)  # llama.cpp's converter breaks on them
    assert any('"' in c.text for c in choices)  # ... while the recorded lines keep their quotes
    backend = scripted({"what_helped": key, "robust": True})
    c = ContrastiveDiagnoser(backend)
    s = c.compare(edited, task, now, before, step=4, before_skill=skill)
    assert s == PreservationSignal("p4-nt-5", 4, "nt-5", f"- {rule}", "Counting and arithmetic", True)
    assert PreservationSignal.from_dict(s.to_dict()) == s
    schema = backend.calls[0].json_schema
    assert schema["properties"]["what_helped"]["enum"] == [c.key for c in choices]
    assert set(schema["properties"]) == {"what_helped", "robust"}  # the anchor follows from the line
    user = backend.calls[0].messages[1].content
    assert "Before (failed): 7" in user and "Now (passed): 4" in user
    assert f"- - {rule}   (new since the failing version)" in user
    assert backend.calls[0].max_tokens == 120
    # Without the earlier version every line is offered as old; the description is a choice too.
    plain = helped_choices(skill)
    assert not any(c.new for c in plain) and plain[0].where == "description"
    bad = ContrastiveDiagnoser(ScriptedBackend(lambda req: "{}"))
    assert bad.compare(skill, task, now, before, step=4) is None and bad.invalid_outputs == 3
    # What the small model wrote before the enum (it copied the reply instructions) cannot pass.
    echo = ContrastiveDiagnoser(scripted({"what_helped": "the skill text or rule that made the difference",
                                          "robust": True}))
    assert echo.compare(skill, task, now, before, step=4) is None and echo.invalid_outputs >= 1


@pytest.mark.model
def test_real_model_diagnoses_a_real_failure_without_raising(gemma_backend: Any, skill: Skill,
                                                             suite: Suite) -> None:
    from skillgrad_tui.core.tables import format_table, read_wtq_csv

    task = suite.by_id()["nt-10"]  # how many times did an italian cyclist win a round? -> 6
    table = format_table(read_wtq_csv(task.context_files[0]), max_rows=10).text
    ask = CompletionRequest.chat(("user", f"{table}\n\nQuestion: {task.question}\nAnswer:"), max_tokens=8)
    reply = gemma_backend.complete(ask).text.strip()
    answer = [reply.splitlines()[0] if reply else ""]
    verdict = get_evaluator("wtq").score(task, answer)
    if verdict.passed:  # the 270M model answered right: diagnose a wrong count instead
        answer, verdict = ["5"], get_evaluator("wtq").score(task, ["5"])
    traj = Trajectory(task.id, skill.hash, gemma_backend.model_id, 0,
                      turns=[Turn("prompt", task.question), Turn("model", answer[0])], answer=answer,
                      verdict=verdict)
    d = FailureDiagnoser(gemma_backend, max_tokens=160)
    g = d.diagnose(skill, task, traj, step=1)
    assert d.backend_errors == 0 and g is not None  # the model's gradient, or the class's
    assert g.label in {c.label for c in QA_CLASSES} and g.failure_class
    assert g.layer in ("L1", "L2", "L3") and g.diff == verdict.summary()
    assert g.anchor in anchor_choices(skill)
    assert (g.source == "code") == (d.from_code == 1)


@pytest.mark.model
def test_real_model_names_a_line_that_made_a_task_pass(smollm_backend: Any, skill: Skill, suite: Suite,
                                                      tmp_path: Path) -> None:
    """SmolLM2 once answered every comparison with the prompt's own words; choosing from the
    skill's lines, it must now name one, and the signal says where that line lives."""
    task = suite.by_id()["nt-5"]
    before = failed(task, ["7"], "7")
    now = Trajectory(task.id, "h2", "m", 0, turns=[Turn("model", "4")], answer=["4"],
                     verdict=get_evaluator("wtq").score(task, ["4"]))
    root = tmp_path / "edited" / "table-qa"
    shutil.copytree(skill.root, root)
    md = root / "SKILL.md"
    rule = "- List the matching rows one by one, then count the list."
    md.write_text(md.read_text().replace("## Counting and arithmetic\n", f"## Counting and arithmetic\n{rule}\n", 1))
    edited = load_skill(root)
    c = ContrastiveDiagnoser(smollm_backend)
    s = c.compare(edited, task, now, before, step=1, before_skill=skill)
    assert c.backend_errors == 0 and c.invalid_outputs == 0 and s is not None
    assert s.what_helped in {ch.text for ch in helped_choices(edited, skill)}
    assert s.anchor in anchor_choices(edited)
