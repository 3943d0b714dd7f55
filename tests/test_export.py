"""Export a run as JSON, CSV and a self-contained HTML report (issue 13 item 3), from the CLI and the app."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from skillgrad_tui.cli import main
from skillgrad_tui.core.export import export_run
from skillgrad_tui.core.llm.scripted import ScriptedBackend
from skillgrad_tui.core.optimizer import optimize
from skillgrad_tui.core.runlog import list_versions
from test_optimizer import FIX, Env, make_opt_model, task_model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = Env(tmp_path_factory.mktemp("export"))
    res = optimize(env.skill, env.suite, ScriptedBackend(task_model, model_id="task"),
                   ScriptedBackend(make_opt_model(FIX), model_id="opt"), env.options(steps=2))
    assert res.changed  # a run with a kept version: something to show
    return res.run_dir


def test_json_csv_and_html_hold_every_version(run_dir: Path) -> None:
    versions = list_versions(run_dir)
    data = json.loads(export_run(run_dir, "json"))
    assert [v["version"] for v in data["versions"]] == [v.version for v in versions]
    assert data["result"]["reason"] == "steps" and len(data["steps"]) == 2
    rows = list(csv.DictReader(io.StringIO(export_run(run_dir, "csv"))))
    assert [int(r["version"]) for r in rows] == [v.version for v in versions]
    assert {r["kept"] for r in rows} == {"True", "False"}
    page = export_run(run_dir, "html")
    assert page.startswith("<!doctype html>") and "<svg" in page and "<polyline" in page
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert page.count('<tr class="kept">') == sum(v.kept for v in versions)


def test_export_command_writes_a_file_and_refuses_what_is_not_a_run(run_dir: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.html"
    assert main(["export", str(run_dir), "--format", "html", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert main(["export", str(run_dir), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("version,step,parent,kept")
    assert main(["export", str(tmp_path), "--format", "json"]) == 2
    assert "not a run directory" in capsys.readouterr().err
