"""One writer per skill, with real processes: a second run is refused at once with a line naming
the first; a dead holder's lock is taken over; the hash check and the write share one lock."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_optimizer import FIX, SKILL_MD, Env, good_seed, slow_fix

from skillgrad_tui.core import atomic
from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.events import Event
from skillgrad_tui.core.skill import Edit, Patch, apply_patch, load_skill
from skillgrad_tui.core.suites import load_suite

CTX = multiprocessing.get_context("fork")


def _env(tmp: Path) -> Env:
    env = Env.__new__(Env)
    env.tmp = tmp
    env.skill = tmp / "skills" / "tiny-qa"
    env.suite = load_suite(tmp / "suite" / "tasks.jsonl")
    env.seed = good_seed(env.suite)
    return env


def _first_run(tmp: str, started: Any, release: Any, q: Any) -> None:
    """A run that pauses (holding the skill) once its first step starts, until told to go on."""
    env = _env(Path(tmp))

    def sink(event: Event) -> None:
        if event.kind == "step_started" and not started.is_set():
            started.set()
            release.wait(60)

    res, _ = env.run(slow_fix, gate="validation", epochs=2, early_stop=10, batch_size=2, sink=sink)
    q.put(("done", res.final_skill_hash))


def _second_run(tmp: str, q: Any) -> None:
    env = _env(Path(tmp))
    started = time.monotonic()
    try:
        env.run(FIX, gate="all", run_dir=env.tmp / "run-b")
        q.put(("ran", time.monotonic() - started))
    except SkillgradError as exc:
        q.put(("refused", str(exc), time.monotonic() - started))


def test_a_second_run_on_the_same_skill_is_refused_naming_the_holder(tmp_path: Path) -> None:
    ref = Env(tmp_path / "ref")
    want, _ = ref.run(slow_fix, gate="validation", epochs=2, early_stop=10, batch_size=2)
    Env(tmp_path / "case")
    started, release, qa, qb = CTX.Event(), CTX.Event(), CTX.Queue(), CTX.Queue()
    a = CTX.Process(target=_first_run, args=(str(tmp_path / "case"), started, release, qa))
    a.start()
    try:
        assert started.wait(60), "the first run never started a step"
        b = CTX.Process(target=_second_run, args=(str(tmp_path / "case"), qb))
        b.start()
        b.join(60)
        outcome = qb.get(timeout=5)
    finally:
        release.set()
        a.join(120)
    assert outcome[0] == "refused", outcome
    message = outcome[1]
    assert f"pid {a.pid}" in message and "run run" in message and "since " in message, message
    assert message.count("\n") == 0 and outcome[2] < 10
    assert not (tmp_path / "case" / "run-b").exists()  # refused before it created anything
    assert a.exitcode == 0 and qa.get(timeout=5) == ("done", want.final_skill_hash)
    assert load_skill(tmp_path / "case" / "skills" / "tiny-qa").hash == want.final_skill_hash


def _hold_and_die(root: str) -> None:
    from skillgrad_tui.core.skill_lock import SkillLock

    SkillLock(Path(root), run_id="doomed-run", command="skillgrad optimize (test)").acquire()
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    from skillgrad_tui.core.skill_lock import SkillLock, holder_of

    env = Env(tmp_path)
    p = CTX.Process(target=_hold_and_die, args=(str(env.skill),))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    assert holder_of(env.skill) is None  # the kernel released it with the process
    with SkillLock(env.skill, run_id="next") as lock:
        assert lock.taken_over is not None and lock.taken_over.pid == p.pid
        assert lock.taken_over.run_id == "doomed-run"
        holder = holder_of(env.skill)
        assert holder is not None and holder.pid == os.getpid() and holder.run_id == "next"
    assert holder_of(env.skill) is None


def _patch_slowly(root: str, expect: str, q: Any) -> None:
    def pause(stage: str, count: int) -> None:
        if stage == "temp_written":
            q.put("writing")
            time.sleep(1.5)

    atomic.fault_hook = pause
    apply_patch(Path(root), Patch([Edit("L2", "SKILL.md", "- Do not add units.", "- Do not add units.\n- A.")]),
                expect_hash=expect)
    q.put("written")


def test_the_hash_check_and_the_write_share_one_lock(tmp_path: Path) -> None:
    """A second writer that checked the same starting hash waits for the first write, then sees the
    skill changed and refuses: the two edits never merge into a version nobody recorded."""
    from skillgrad_tui.core.skill import SkillChanged

    env = Env(tmp_path)
    start = load_skill(env.skill).hash
    q = CTX.Queue()
    a = CTX.Process(target=_patch_slowly, args=(str(env.skill), start, q))
    a.start()
    assert q.get(timeout=30) == "writing"
    t0 = time.monotonic()
    with pytest.raises(SkillChanged) as info:
        apply_patch(env.skill, Patch([Edit("L2", "SKILL.md", "- Do not add units.", "- Do not add units.\n- B.")]),
                    expect_hash=start)
    assert time.monotonic() - t0 > 0.5  # it waited for A's write to finish
    a.join(30)
    assert a.exitcode == 0 and q.get(timeout=5) == "written"
    text = (env.skill / "SKILL.md").read_text()
    assert "- A." in text and "- B." not in text
    assert info.value.expected == start and info.value.found == load_skill(env.skill).hash


def test_rollback_and_recover_are_refused_while_a_run_holds_the_skill(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from skillgrad_tui.cli import main
    from skillgrad_tui.core.skill_lock import SkillLock

    env = Env(tmp_path)
    res, _ = env.run(FIX, gate="all", steps=1)
    held, done = threading.Event(), threading.Event()

    def run_holding_the_lock() -> None:  # another thread counts as another writer, like a process
        with SkillLock(env.skill, run_id="live-run", command="skillgrad optimize tiny-qa"):
            held.set()
            done.wait(30)

    holder = threading.Thread(target=run_holding_the_lock)
    holder.start()
    try:
        assert held.wait(10)
        assert main(["rollback", str(res.run_dir), "0"]) == 2
        err = capsys.readouterr().err
        assert "in use by pid" in err and "live-run" in err and "skillgrad optimize tiny-qa" in err
        assert main(["recover", str(env.skill)]) == 2
        assert "in use by pid" in capsys.readouterr().err
        assert (env.skill / "SKILL.md").read_text() != SKILL_MD  # untouched: still the run's version
    finally:
        done.set()
        holder.join(10)
    assert main(["rollback", str(res.run_dir), "0"]) == 0
    assert (env.skill / "SKILL.md").read_text() == SKILL_MD
