"""A model worker killed with SIGKILL in the middle of an evaluation: the CLI and the app report it,
stay consistent, and `--resume` finishes the run. Real model (SmolLM2-135M), real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skillgrad_tui.config import Config
from skillgrad_tui.core.skill import load_skill

REPO = Path(__file__).resolve().parents[1]
WORKER_MODULE = "skillgrad_tui.core.llm.worker_process"

pytestmark = [pytest.mark.model, pytest.mark.slow]


def worker_children(parent: int) -> list[int]:
    """Model worker processes whose parent is `parent` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z" and WORKER_MODULE in cmdline:
            found.append(int(entry.name))
    return found


def small_suite(dest: Path, n: int) -> Path:
    from test_optimize_e2e import small_wtq_suite

    return small_wtq_suite(dest, n)


def write_config(folder: Path, smollm_path: Path) -> None:
    (folder / "skillgrad.toml").write_text(
        f'[model]\ndefault = "{smollm_path}"\nn_ctx = 2048\n\n[cache]\nenabled = false\n\n'
        "[agent]\nmax_tokens = 16\ntable_rows = 12\n", encoding="utf-8")


def events_of(run_dir: Path) -> list[dict[str, object]]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.timeout(900)
def test_cli_reports_a_killed_worker_and_resume_finishes_the_run(tmp_path: Path, smollm_path: Path) -> None:
    skill = tmp_path / "skills" / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", skill)
    write_config(skill.parent, smollm_path)
    suite = small_suite(tmp_path / "suite", 8)
    command = [sys.executable, "-m", "skillgrad_tui", "optimize", str(skill), "--suite", str(suite),
               "--steps", "1", "--batch-size", "2", "--gate", "validation",
               "--candidates", "1"]  # the crash and the resume are the point, not the candidate pool
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    runs = skill.parent / ".skillgrad" / "runs"
    killed = None
    deadline = time.monotonic() + 600
    while killed is None:
        assert proc.poll() is None, f"the run ended before the kill: {proc.communicate()}"
        assert time.monotonic() < deadline, "no task finished in time"
        run_dirs = sorted(runs.glob("*")) if runs.is_dir() else []
        done = [e for e in events_of(run_dirs[0]) if e.get("kind") == "task_finished"] if run_dirs else []
        workers = worker_children(proc.pid)
        if done and workers:  # mid-evaluation: one task scored, the next one in the model
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "SIGKILL" in lines[0] and "SmolLM2" in lines[0] and "task nt-" in lines[0]  # signal, model, request
    assert "--resume" in lines[0]
    run_dir = sorted(runs.glob("*"))[0]
    kinds = [e.get("kind") for e in events_of(run_dir)]
    assert kinds[-1] == "run_finished" and events_of(run_dir)[-1].get("reason") == "error"
    assert json.loads((run_dir / "state.json").read_text())["status"] == "running"  # resumable
    load_skill(skill)  # the skill is intact

    resumed = subprocess.run([sys.executable, "-m", "skillgrad_tui", "optimize", "--resume", str(run_dir)],
                             capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "finished"
    assert not worker_children(proc.pid)


@pytest.mark.anyio
@pytest.mark.timeout(900)
async def test_app_survives_a_killed_worker_and_evaluates_again(tmp_path: Path, smollm_path: Path) -> None:
    from skillgrad_tui.core.events import TaskFinished
    from skillgrad_tui.tui.app import SkillgradApp

    skill = tmp_path / "skills" / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", skill)
    suite = small_suite(tmp_path / "suite", 8)
    config = Config(values={"model": {"default": str(smollm_path), "n_ctx": 2048}, "cache": {"enabled": False},
                            "agent": {"table_rows": 12, "max_tokens": 16}})
    app = SkillgradApp(skill, suite, config=config)
    seen: list[object] = []
    forward = app._sink
    app._sink = lambda event: (seen.append(event), forward(event))  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("v")
        deadline = time.monotonic() + 600
        killed = None
        while killed is None:
            assert time.monotonic() < deadline, "the evaluation never got going"
            workers = worker_children(os.getpid())
            if app.running and workers and any(isinstance(e, TaskFinished) for e in seen):
                os.kill(workers[0], signal.SIGKILL)
                killed = workers[0]
            await pilot.pause(0.05)
        while app.running:
            assert time.monotonic() < deadline
            await pilot.pause(0.1)
        assert app.is_running  # the app is still up
        assert app.progress.outcome == "error"
        messages = [n.message for n in app._notifications]
        crash = [m for m in messages if "SIGKILL" in m]
        assert crash and "SmolLM2" in crash[0] and "task nt-" in crash[0], messages
        # The worker restarts on demand: the next evaluation completes.
        await pilot.press("v")
        while not app.running:
            await pilot.pause(0.05)
        while app.running:
            assert time.monotonic() < deadline + 300
            await pilot.pause(0.2)
        assert app.progress.outcome != "error", [n.message for n in app._notifications]
        assert app.last_result is not None and app.last_result.n > 0
