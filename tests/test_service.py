"""The engine API (core/service.py): one suite rule, one run-directory rule, one reading of a
review decision, and one rule for which model each role gets, whatever calls it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from skillgrad_tui.config import Config, backend_factory, load_config
from skillgrad_tui.core.errors import SuiteError
from skillgrad_tui.core.events import null_sink
from skillgrad_tui.core.optimizer import ReviewDecision, ReviewItem, ReviewRequest, decided_edits
from skillgrad_tui.core.service import Engine, EngineSettings, reviewed_hash
from skillgrad_tui.core.skill import Edit, apply_edits_in_memory, load_skill
from skillgrad_tui.tui.scripted import scripted_backend_factory
from skillgrad_tui.tui.session import Session

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def skill(tmp_path: Path) -> Path:
    root = tmp_path / "skills" / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", root)
    return root


def bundle(skill: Path) -> Path:
    suite = skill.parent / "suites" / skill.name
    shutil.copytree(REPO / "skills" / "suites" / "table-qa", suite)
    return suite


def engine(skill: Path | None, settings: EngineSettings | None = None, suite: Path | None = None) -> Engine:
    return Engine(skill, settings or EngineSettings(), scripted_backend_factory(), suite_path=suite,
                  owns_backends=False)


def test_one_suite_rule_flag_then_config_then_bundled(skill: Path, tmp_path: Path) -> None:
    assert engine(skill).suite_path is None
    with pytest.raises(SuiteError, match="no task suite"):
        engine(skill).suite()
    bundled = bundle(skill)
    assert engine(skill).suite_path == bundled
    configured = tmp_path / "elsewhere"
    assert engine(skill, EngineSettings(suite_path=configured)).suite_path == configured
    flag = tmp_path / "flag"
    assert engine(skill, EngineSettings(suite_path=configured), suite=flag).suite_path == flag
    # The config layer builds the settings: [suite] path is resolved against the file.
    (skill.parent / "skillgrad.toml").write_text('[suite]\npath = "suites/table-qa"\n[run]\ndir = "my-runs"\n')
    config = load_config(skill)
    assert Session(skill, None, config, scripted_backend_factory()).suite_path == bundled
    assert config.engine_settings().runs_dir == "my-runs"


def test_splits_seeded_or_the_suite_own(skill: Path) -> None:
    bundle(skill)
    e = engine(skill)
    suite, val = e.select("val")
    assert val == e.tasks("val") and 0 < len(val) < len(suite.tasks)
    assert e.select(None)[1] == suite.tasks == e.select("all")[1]
    assert len(e.select("training", limit=3)[1]) == 3  # the WTQ file's own name
    with pytest.raises(SuiteError, match="--limit"):
        e.select("val", limit=0)


def test_one_run_directory_rule(skill: Path) -> None:
    e = engine(skill, EngineSettings(runs_dir="my-runs"))
    h = load_skill(skill).hash
    first = e.new_run_dir(h)
    assert first.parent == skill.parent / "my-runs" and first.name.endswith(h[:6])
    first.mkdir(parents=True)
    second = e.new_run_dir(h)
    assert second != first and second.name.startswith(first.name) and second.name.endswith("-2")
    assert e.eval_run_dir(h).parent == skill.parent / "evals"  # beside runs, never among them
    assert engine(skill).eval_run_dir(h).parent == skill.parent / ".skillgrad" / "evals"
    # A new optimiser run gets its directory from the same rule; a resumed one keeps its own.
    assert e.optimize_options("all").run_dir.parent == skill.parent / "my-runs"  # type: ignore[union-attr]
    assert e.optimize_options("all", resume=first).run_dir is None


def test_evaluation_writes_the_run_log_and_appends_on_a_second_run(skill: Path, tmp_path: Path) -> None:
    from skillgrad_tui.core.runlog import replay

    bundle(skill)
    e = engine(skill)
    done = e.run_evaluation(load_skill(skill), split="val", sink=null_sink)
    assert done.run_dir.parent == skill.parent / ".skillgrad" / "evals"
    kinds = [ev.kind for ev in replay(done.run_dir)]
    assert kinds[0] == "run_started" and kinds[-1] == "validation_scored"
    assert kinds.count("task_finished") == len(done.tasks)
    again = e.run_evaluation(load_skill(skill), split="val", sink=null_sink, run_dir=done.run_dir, limit=2)
    assert [ev.kind for ev in replay(again.run_dir)].count("run_started") == 2


def _request(skill: Path) -> ReviewRequest:
    s = load_skill(skill)
    first = Edit("L2", "SKILL.md", "## Read the table first", "## Read the whole table first")
    # Applies only on top of the first edit.
    second = Edit("L2", "SKILL.md", "## Read the whole table first", "## Read the whole table first, slowly")
    third = Edit("L2", "SKILL.md", "## Counting and arithmetic", "## Counting")
    return ReviewRequest(1, s, [ReviewItem(i, e, "p", [], [], "") for i, e in enumerate([first, second, third])])


def test_one_reading_of_a_review_decision(skill: Path) -> None:
    request = _request(skill)
    items = [i.edit for i in request.items]
    everything = decided_edits(request, ReviewDecision(accepted=[2, 1, 0], rejected=[]))
    assert everything.edits == items and everything.used == [0, 1, 2] and everything.dropped == []
    # Rejecting the first drops the second (it relied on it); the person's text replaces the third's.
    partial = decided_edits(request, ReviewDecision(accepted=[1, 2], rejected=[0], replaced={2: "## Sums"}))
    assert partial.used == [2] and [i for i, _ in partial.dropped] == [1]
    assert partial.edits == [Edit("L2", "SKILL.md", "## Counting and arithmetic", "## Sums")]
    # The hash the app expects is the hash of exactly those edits applied.
    files = {**request.skill.files, **apply_edits_in_memory(request.skill, partial.edits)}
    from dataclasses import replace

    assert reviewed_hash(request, ReviewDecision(accepted=[1, 2], rejected=[0], replaced={2: "## Sums"})) == \
        replace(request.skill, files=files).hash
    assert reviewed_hash(request, ReviewDecision(accepted=[], rejected=[0, 1, 2])) is None


def test_which_model_each_role_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    monkeypatch.setattr("skillgrad_tui.core.engine.backend_identity", lambda s: s.local.model)

    def make(settings: Any) -> Any:
        built.append(settings.local.model)
        return object()

    f = backend_factory(Config(), "m-task", make=make)
    assert f.key("optimizer") == f.key("task") == "m-task"  # type: ignore[attr-defined]  # one model, shared
    f = backend_factory(Config(), "m-task", optimizer_model="m-opt", make=make)
    assert f.key("optimizer") == "m-opt"  # type: ignore[attr-defined]
    config = Config()
    config.set("model", "optimizer", "m-config")
    assert backend_factory(config, "m-task", make=make).key("optimizer") == "m-config"  # type: ignore[attr-defined]
    f("task")
    assert built == ["m-task"]


def test_session_is_the_engine_with_the_app_names(skill: Path) -> None:
    bundle(skill)
    session = Session(skill, None, Config(), scripted_backend_factory())
    assert isinstance(session, Engine) and session.seed == 0 and session.stopped_runs() == []
    result = session.evaluate(load_skill(skill), session.eval_run_dir(load_skill(skill).hash), sink=null_sink,
                              cancel=None, split="val")
    assert result.n == len(session.tasks("val"))
    assert session.optimize_options("validation", None).steps == 10  # the app has no --steps flag
    summary = json.dumps(session.model_summary())
    assert "gemma3-270m" in summary


def test_eval_without_a_skill_writes_beside_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from skillgrad_tui.cli import main
    from skillgrad_tui.core.engine import scripted_backend
    from skillgrad_tui.tui.scripted import respond

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("skillgrad_tui.core.llm.factory.make_backend", lambda settings: scripted_backend(respond))
    suite = REPO / "skills" / "suites" / "table-qa"
    assert main(["eval", "none", "--suite", str(suite), "--split", "val", "--limit", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    run_dir = Path(summary["run_dir"])
    assert run_dir.parent == tmp_path.resolve() / ".skillgrad" / "evals" and run_dir.name.endswith("-none")
    assert summary["skill"] is None and summary["n"] == 2 and summary["split"] == "val"


def test_the_gate_names_come_from_one_place() -> None:
    import argparse

    from skillgrad_tui.cli import build_parser
    from skillgrad_tui.config import SCHEMA
    from skillgrad_tui.core.gate import GATES
    from skillgrad_tui.tui.app import GATES as APP_CYCLE

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    gate = next(a for a in sub.choices["optimize"]._actions if a.dest == "gate")
    assert tuple(gate.choices or ()) == GATES
    check = SCHEMA["optimize"]["gate"].check
    assert check is not None and all(check(g) is None for g in GATES) and check("sometimes")
    assert sorted(APP_CYCLE) == sorted(GATES) and APP_CYCLE[0] == "ask"
