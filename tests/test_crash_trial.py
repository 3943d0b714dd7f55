"""The SIGKILL trial (bench/crash_trial.py), small: real processes killed at random points, most
inside writes of the skill; no corrupted skill, and every resume ends on the uninterrupted run's
skill, versions and memory. `make crash-trial` runs the full one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_random_sigkills_then_resume_end_on_the_same_skill(tmp_path: Path) -> None:
    out = tmp_path / "trial.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "crash_trial.py"), "--trials", "5", "--seed", "3",
                           "--workdir", str(tmp_path / "work"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads(out.read_text())["summary"]
    assert summary["trials"] == 5 and summary["corrupted_skills"] == 0
    assert summary["same_final_skill"] == summary["same_versions_and_memory"] == 5
    assert summary["killed_inside_skill_writes"] >= 2
