"""The app driving a short optimisation with the real embedded model (Gemma 3 270M, llama.cpp).

A three-question WikiTableQuestions suite with small tables (one task per split) keeps it to a few
minutes on a small CPU: seed evaluation, one step (diagnose, momentum, patch, gate "all"),
validation. The model is
built by the app's own backend factory, lazily, on the worker thread.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from skillgrad_tui.config import Config
from skillgrad_tui.core.events import RunFinished, TaskFinished
from skillgrad_tui.core.runlog import replay
from skillgrad_tui.core.skill import load_skill
from skillgrad_tui.tui.app import SkillgradApp
from skillgrad_tui.tui.screens.trajectory import load_trajectory_file

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "skills" / "suites" / "table-qa"
TASKS = ("nt-2", "nt-3", "nt-5")  # tables of 8 to 10 rows: one train, one val, one test task

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.anyio]


def small_wtq_suite(dst: Path) -> Path:
    lines = (SAMPLE / "data" / "training.tsv").read_text(encoding="utf-8").splitlines()
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.split("\t", 1)[0] in TASKS]
    assert len(keep) == len(TASKS) + 1
    (dst / "data").mkdir(parents=True)
    (dst / "data" / "training.tsv").write_text("\n".join(keep) + "\n", encoding="utf-8")
    for line in keep[1:]:
        rel = line.split("\t")[2]
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / rel, dst / rel)
    return dst


async def test_short_run_with_the_embedded_model(tmp_path: Path, gemma_path: Path) -> None:
    skill = tmp_path / "skills" / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", skill)
    suite = small_wtq_suite(tmp_path / "suite")
    config = Config(values={
        "model": {"default": str(gemma_path), "n_ctx": 2048},
        "cache": {"enabled": False},  # every answer comes from the model in this test
        "agent": {"table_rows": 12, "max_tokens": 16},
        "optimize": {"steps": 1, "batch_size": 1, "gate": "all"},
    })
    app = SkillgradApp(skill, suite, config=config)
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.session._backends == {}  # the first frame did not wait for the model
        await pilot.press("r")
        deadline = time.monotonic() + 900
        while app.running or app.last_result is None:
            assert time.monotonic() < deadline, "the run did not finish"
            await pilot.pause(0.2)
        result = app.last_result
        assert result.reason in ("steps", "no_failures", "early_stop"), result
        events = list(replay(result.run_dir))
        finished = [e for e in events if isinstance(e, TaskFinished)]
        assert finished and isinstance(events[-1], RunFinished)
        assert app.query_one("#traj-table").row_count > 0
        traj = load_trajectory_file(finished[0], result.run_dir)
        assert traj is not None and traj.model_id.startswith("sha256:")
        assert any(t.kind == "model" for t in traj.turns)
        assert app.progress.outcome == result.reason
    load_skill(skill)  # whatever the gate kept, the skill on disk is valid
