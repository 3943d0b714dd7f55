"""SIGKILL trial of the optimiser: kill runs at random points, most of them inside writes of the
user's skill, resume them, and check that nothing is corrupted and every run ends where an
uninterrupted run ends. Writes JSON.

Each trial is a real child process running the real optimiser on a real skill folder and JSONL
suite, with the scripted models of tests/test_optimizer.py (the model is not the point here; the
disk is). A trial kills its run in one of three ways:
  - "skill-write": SIGKILL at a random step of a write of the skill (temp written, journal
    written = the commit point, a rename, a deletion);
  - "any-write": SIGKILL right after a random durable write of any kind (state, version, event...);
  - "timer": SIGKILL from outside after a random time, wherever the run happens to be.
Right after the kill the skill folder must be a version the run knows once recovered (recovery
finishes a committed write or undoes an uncommitted one; nothing else is allowed). Then the run is
resumed, with a chance of a second kill during the resume, until it finishes; its final skill,
versions and momentum memory must equal the uninterrupted run's.

    .venv/bin/python bench/crash_trial.py --trials 30 --out bench/results/crash_trial.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_optimizer import Env, _child  # noqa: E402  (the run the SIGKILL test of test_optimizer uses)

from skillgrad_tui.core import atomic, runlog  # noqa: E402
from skillgrad_tui.core.recovery import recover_skill  # noqa: E402
from skillgrad_tui.core.skill import load_skill  # noqa: E402

SKILL_WRITE_STAGES = ("temp_written", "journal_written", "renamed", "deleted")
CTX = multiprocessing.get_context("fork")


def run_child(tmp: Path, kill_at: int = 0, resume: bool = False, kill_after_s: float | None = None) -> int:
    q = CTX.Queue()
    p = CTX.Process(target=_child, args=(str(tmp), kill_at, resume, q))
    p.start()
    if kill_after_s is not None:
        p.join(kill_after_s)
        if p.exitcode is None:
            os.kill(p.pid, signal.SIGKILL)
    p.join(300)
    if p.exitcode is None:
        p.kill()
        p.join()
        raise RuntimeError("a trial run hung")
    if p.exitcode == 0:
        run_child.stages = q.get(timeout=10)  # type: ignore[attr-defined]
    return int(p.exitcode)


def final_state(tmp: Path) -> dict[str, Any]:
    run_dir = tmp / "run"
    versions = [{k: v for k, v in r.to_dict().items() if k != "created"} for r in runlog.list_versions(run_dir)]
    return {"skill": load_skill(tmp / "skills" / "tiny-qa").hash, "versions": versions,
            "memory": json.loads((run_dir / "memory.json").read_text())}


def mid_write_evidence(skill: Path) -> str | None:
    """What a kill left of a skill write: a journal (committed) or temp files (not committed)."""
    if list((skill.parent / ".skillgrad" / "journal").glob("*.journal.json")):
        return "committed"
    if any(atomic.is_temp_name(p.name) for p in skill.rglob("*")):
        return "uncommitted"
    return None


def trial(base: Path, i: int, rng: random.Random, ref: dict[str, Any], stages: list[str],
          ref_seconds: float) -> dict[str, Any]:
    case = base / f"t{i}"
    Env(case)
    kind = rng.choices(["skill-write", "any-write", "timer"], weights=[6, 2, 2])[0]
    at: int | None = None
    delay: float | None = None
    if kind == "skill-write":
        at = rng.choice([n + 1 for n, s in enumerate(stages) if s in SKILL_WRITE_STAGES])
        code = run_child(case, kill_at=at)
    elif kind == "any-write":
        at = rng.randint(1, len(stages) - 1)
        code = run_child(case, kill_at=at)
    else:
        delay = rng.uniform(0.05, ref_seconds)
        code = run_child(case, kill_after_s=delay)
    killed = code == -signal.SIGKILL
    stage = stages[at - 1] if at else None
    evidence = mid_write_evidence(case / "skills" / "tiny-qa")
    # Recovery must leave a version the (uninterrupted) run knows: old or new, never a mix. Half
    # of the committed writes are left for the resumed run to finish by itself.
    known = {v["skill_hash"] for v in ref["versions"]}
    recovered: str | None = "left to the resumed run"
    corrupted = False
    if evidence != "committed" or rng.random() < 0.5:
        recovered = recover_skill(case / "skills" / "tiny-qa")
        corrupted = load_skill(case / "skills" / "tiny-qa").hash not in known
    resumes = 0
    while code != 0:
        resumes += 1
        second_kill = rng.randint(1, max(2, len(stages) // 2)) if resumes == 1 and rng.random() < 0.3 else 0
        code = run_child(case, kill_at=second_kill, resume=True)
        if resumes > 3:
            break
    got = final_state(case) if code == 0 else None
    corrupted = corrupted or got is None or got["skill"] not in known
    return {"trial": i, "kind": kind, "kill_at_write": at, "stage": stage, "kill_after_s": delay,
            "killed": killed, "inside_skill_write": stage in SKILL_WRITE_STAGES or evidence is not None,
            "left": evidence, "recovery": recovered, "corrupted": corrupted, "resumes": resumes,
            "finished": code == 0, "same_final_skill": got is not None and got["skill"] == ref["skill"],
            "same_versions_and_memory": got is not None and got["versions"] == ref["versions"]
            and got["memory"] == ref["memory"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--workdir", type=Path, help="where the trial skills go (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "crash_trial.json")
    args = parser.parse_args()
    import tempfile

    base = args.workdir or Path(tempfile.mkdtemp(prefix="skillgrad-crash-trial-"))
    rng = random.Random(args.seed)
    Env(base / "ref")
    start = time.perf_counter()
    if run_child(base / "ref") != 0:
        raise SystemExit("the uninterrupted reference run failed")
    ref_seconds = time.perf_counter() - start
    stages: list[str] = run_child.stages  # type: ignore[attr-defined]
    ref = final_state(base / "ref")
    rows = []
    for i in range(args.trials):
        rows.append(trial(base, i, rng, ref, stages, ref_seconds))
        print(json.dumps(rows[-1]), flush=True)
    summary = {
        "trials": len(rows), "killed": sum(r["killed"] for r in rows),
        "killed_inside_skill_writes": sum(r["killed"] and r["inside_skill_write"] for r in rows),
        "kills_past_the_commit_point": sum(r["left"] == "committed" for r in rows),
        "kills_before_the_commit_point": sum(r["left"] == "uncommitted" for r in rows),
        "second_kills_during_resume": sum(r["resumes"] > 1 for r in rows),
        "corrupted_skills": sum(r["corrupted"] for r in rows),
        "finished": sum(r["finished"] for r in rows),
        "same_final_skill": sum(r["same_final_skill"] for r in rows),
        "same_versions_and_memory": sum(r["same_versions_and_memory"] for r in rows),
        "durable_writes_per_run": len(stages),
        "skill_write_steps_per_run": sum(s in SKILL_WRITE_STAGES for s in stages),
        "reference_run_seconds": round(ref_seconds, 2),
    }
    report = {"summary": summary, "trials": rows, "seed": args.seed,
              "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                          "cores": os.cpu_count()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(summary, indent=2))
    ok = summary["corrupted_skills"] == 0 and summary["same_final_skill"] == summary["trials"] \
        and summary["same_versions_and_memory"] == summary["trials"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
