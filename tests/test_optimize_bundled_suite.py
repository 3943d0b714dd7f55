"""`skillgrad optimize SKILL` finds the suite bundled beside the skill, as eval, watch and the app do
(the README's `skillgrad optimize skills/table-qa --steps 5` failed with "no task suite")."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from skillgrad_tui.core.llm.scripted import ScriptedBackend
from test_optimizer import FIX, Env, make_opt_model, parse, task_model


def test_optimize_without_suite_uses_the_bundled_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from skillgrad_tui.commands import optimize as cmd

    env = Env(tmp_path)
    bundled = env.skill.parent / "suites" / env.skill.name
    shutil.copytree(env.suite.root, bundled)  # skills/suites/tiny-qa beside skills/tiny-qa
    opt = make_opt_model(FIX)

    def fake_backend(settings: Any) -> Any:
        return ScriptedBackend(lambda r: opt(r) if r.json_schema else task_model(r), model_id="scripted")

    monkeypatch.setattr(cmd, "make_backend", fake_backend)
    args = parse(["optimize", str(env.skill), "--seed", str(env.seed), "--steps", "1",
                  "--run-dir", str(tmp_path / "run")], cmd.add_parsers)
    assert cmd.HANDLERS["optimize"](args) == 0, capsys.readouterr().err
    assert "step 1: loss" in capsys.readouterr().out
    shutil.rmtree(bundled)  # and with no suite anywhere, the one-line error
    args = parse(["optimize", str(env.skill), "--run-dir", str(tmp_path / "run-2")], cmd.add_parsers)
    assert cmd.HANDLERS["optimize"](args) == 2
    assert "no task suite" in capsys.readouterr().err
