"""The bundled row-count suite (a benchmark where the skill decides the score) and its skills."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from skillgrad_tui.core.agent import Agent, AgentSettings
from skillgrad_tui.core.evaluate import evaluate, score
from skillgrad_tui.core.records import Trajectory
from skillgrad_tui.core.skill import load_skill, validate_skill
from skillgrad_tui.core.suites import load_suite
from skillgrad_tui.core.suites.selection import default_suite_path
from skillgrad_tui.core.suites.splits import split_tasks
from skillgrad_tui.core.tables import read_wtq_csv

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "skills" / "suites" / "row-count"
GOOD = REPO / "skills" / "row-count"
DEFECTS = ("wrong", "outdated", "contradictory", "missing", "bloated")
WTQ = REPO.parent / "shared" / "benchmarks" / "wikitablequestions"


def _builder():
    spec = importlib.util.spec_from_file_location("make_row_count_suite", REPO / "bench" / "make_row_count_suite.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_suite_loads_with_its_size_and_splits() -> None:
    dev = load_suite(SUITE)
    heldout = load_suite(SUITE / "heldout.jsonl")
    assert (dev.format, len(dev.tasks), len(heldout.tasks)) == ("jsonl", 60, 40)
    assert default_suite_path(GOOD) == SUITE  # `skillgrad eval skills/row-count` finds it unasked
    dev_tables = {t.context_files[0] for t in dev.tasks}
    held_tables = {t.context_files[0] for t in heldout.tasks}
    assert len(dev_tables) == 60 and len(held_tables) == 40 and not dev_tables & held_tables
    parts = split_tasks(dev.tasks, 0)  # what optimize(seed=0) trains and gates on
    assert (len(parts.train), len(parts.val), len(parts.test)) == (30, 15, 15)


def test_every_answer_is_the_tables_row_count_in_house_format() -> None:
    for task in load_suite(SUITE).tasks + load_suite(SUITE / "heldout.jsonl").tasks:
        rows = read_wtq_csv(task.context_files[0])
        assert task.question == "How many rows does the table have?"
        assert task.expected == [f"{len(rows) - 1} rows"], task.id
        assert task.evaluator == "normalized"


def test_evaluator_checks_the_convention_not_just_the_number() -> None:
    task = load_suite(SUITE).tasks[0]
    n = task.expected[0].split()[0]
    verdict = lambda answer: score(task, Trajectory(task.id, "h", "m", 0, answer=answer)).passed  # noqa: E731
    assert verdict([f"{n} rows"]) and verdict([f"{n} Rows"])
    assert not verdict([n])  # the right number without the house unit fails
    assert not verdict([f"{int(n) + 1} rows"])  # the house unit with the wrong number fails
    assert not verdict([f"rows: {n}"]) and not verdict([])


@pytest.mark.skipif(not WTQ.is_dir(), reason=f"shared WTQ data not found at {WTQ}")
def test_builder_reproduces_the_bundled_suite(tmp_path: Path) -> None:
    _builder().write_suite(WTQ, tmp_path, 60, 40)
    for rel in ("tasks.jsonl", "heldout.jsonl", "LICENSE"):
        assert (tmp_path / rel).read_bytes() == (SUITE / rel).read_bytes(), rel
    copied = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.csv"))
    assert copied == sorted(p.relative_to(SUITE) for p in SUITE.rglob("*.csv"))
    for rel in copied:
        assert (SUITE / rel).read_bytes() == (WTQ / rel).read_bytes()


def test_defective_skills_are_valid_and_differ_only_in_the_body() -> None:
    good = load_skill(GOOD)
    assert "`7 rows`" in good.body and "Answer: 4 rows" in good.body
    for defect in DEFECTS:
        skill = load_skill(REPO / "skills" / "defective" / defect / "row-count")
        assert not [p for p in validate_skill(skill) if p.severity == "error"], defect
        assert (skill.name, skill.description) == (good.name, good.description), defect
        assert skill.body != good.body, defect
    missing = load_skill(REPO / "skills" / "defective" / "missing" / "row-count")
    assert "House format" not in missing.body and "Answer:" not in missing.body
    bloated = load_skill(REPO / "skills" / "defective" / "bloated" / "row-count")
    assert len(bloated.body) > 3 * len(good.body) and "Answer: 4 rows" in bloated.body


@pytest.mark.model
def test_good_skill_beats_the_missing_one_with_smollm(smollm_backend: object) -> None:
    """A handful of the smallest dev tables: SmolLM2 reads the count either way, but only the good
    skill makes it write the house format."""
    tasks = sorted(load_suite(SUITE).tasks, key=lambda t: (int(t.expected[0].split()[0]), t.id))[:4]
    agent = Agent(smollm_backend, AgentSettings())  # type: ignore[arg-type]
    good = evaluate(agent, load_skill(GOOD), tasks, seed=0)
    missing = evaluate(agent, load_skill(REPO / "skills" / "defective" / "missing" / "row-count"), tasks, seed=0)
    assert not any(t.error for t in good.trajectories + missing.trajectories)
    assert good.passed - missing.passed >= 2, ([t.answer for t in good.trajectories],
                                               [t.answer for t in missing.trajectories])
