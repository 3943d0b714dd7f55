"""Run directory: durable events (torn last line after a crash), content-addressed versions,
idempotent re-saves, restore into a real skill folder, state and trajectories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from skillgrad_tui.core import runlog
from skillgrad_tui.core.events import RunFinished, RunStarted, StepStarted, Warning_
from skillgrad_tui.core.records import Trajectory, Verdict
from skillgrad_tui.core.runlog import (RunError, RunLog, list_versions, new_run_id, replay,
                                       restore_version, run_skill_path)
from skillgrad_tui.core.skill import content_hash, load_skill, snapshot

SKILL_MD = """---
name: tiny-qa
description: Answer short questions with only the answer value.
---
# Tiny QA

## Answer format
- Reply with only the value.
"""


def make_skill(parent: Path) -> Path:
    root = parent / "tiny-qa"
    (root / "references").mkdir(parents=True)
    (root / "SKILL.md").write_text(SKILL_MD, encoding="utf-8")
    (root / "references" / "units.md").write_text("# Units\nUse plain numbers.\n", encoding="utf-8")
    (root / "assets").mkdir()
    (root / "assets" / "logo.bin").write_bytes(bytes(range(256)))
    return root


def test_run_id_has_time_and_hash() -> None:
    rid = new_run_id("abcdef0123", now=0)
    assert rid.endswith("-abcdef") and len(rid) == len("19700101-000000-abcdef")


def test_events_are_durable_and_a_torn_last_line_is_dropped(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunLog(run_dir, create=True) as log:
        log.emit(RunStarted(run_id="r", skill="/s", suite="q", skill_hash="h" * 64))
        log(StepStarted(step=1, task_ids=["a", "b"], skill_hash="h" * 64))
    # A writer killed mid-line leaves half a JSON object without a newline.
    with open(run_dir / "events.jsonl", "ab") as f:
        f.write(b'{"kind": "step_fini')
    kinds = [e.kind for e in replay(run_dir)]
    assert kinds == ["run_started", "step_started"]
    # Reopening truncates the torn line so the next event is a whole line of its own.
    with RunLog(run_dir) as log:
        log.emit(Warning_(message="resumed"))
        log.emit(RunFinished(reason="steps"))
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    assert [json.loads(x)["kind"] for x in lines] == ["run_started", "step_started", "warning", "run_finished"]
    started = next(replay(run_dir))
    assert isinstance(started, RunStarted) and started.skill_hash == "h" * 64


def test_a_corrupt_line_in_the_middle_is_an_error_naming_the_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunLog(run_dir, create=True) as log:
        log.emit(Warning_(message="one"))
    with open(run_dir / "events.jsonl", "ab") as f:
        f.write(b"garbage\n")
        f.write(json.dumps(Warning_(message="two").to_dict()).encode() + b"\n")
    with pytest.raises(RunError, match="events.jsonl"):
        list(replay(run_dir))


def test_one_writer_per_run_and_no_overwrite(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    log = RunLog(run_dir, create=True)
    try:
        with pytest.raises(RunError, match="in use"):
            RunLog(run_dir)
        with pytest.raises(RunError, match="not empty"):
            RunLog(run_dir, create=True)
    finally:
        log.close()
    with pytest.raises(RunError, match="not a run directory"):
        RunLog(tmp_path / "nothing")


def test_versions_are_content_addressed_and_restorable(tmp_path: Path) -> None:
    root = make_skill(tmp_path)
    skill = load_skill(root)
    v0_files = snapshot(skill)
    run_dir = tmp_path / ".skillgrad" / "runs" / "r1"
    with RunLog(run_dir, create=True) as log:
        v0 = log.save_version(v0_files, skill.name, step=0, parent=None, kept=True, val_score=0.5)
        changed = dict(v0_files)
        changed["SKILL.md"] = v0_files["SKILL.md"] + b"\n## Common pitfalls\n- Do not explain.\n"
        v1 = log.save_version(changed, skill.name, step=1, parent=0)
        # The same content saved again for the same step is the same version (a redone step).
        assert log.save_version(changed, skill.name, step=1, parent=0).version == 1
        # Identical content from a later step is a new record sharing the stored folder.
        v2 = log.save_version(v0_files, skill.name, step=2, parent=1)
        assert (v0.version, v1.version, v2.version) == (0, 1, 2)
        assert log.version_dir(2) == log.version_dir(0)
        assert sorted(p.name for p in (run_dir / "versions").iterdir()) == [v0.dirname, v1.dirname]
        assert load_skill(log.version_dir(1)).hash == v1.skill_hash == content_hash(changed)
        assert v1.chars > v0.chars > 0
        log.update_version(1, val_score=0.75, kept=True)
        with pytest.raises(ValueError):
            log.update_version(1, skill_hash="x")
        with pytest.raises(RunError, match="no version 9"):
            log.version(9)
    recs = list_versions(run_dir)
    assert [(r.version, r.val_score, r.kept) for r in recs] == [(0, 0.5, True), (1, 0.75, True), (2, None, False)]
    # Restore version 1 into the user's folder, then back to 0 (assets come back byte for byte).
    assert restore_version(run_dir, 1, root).hash == v1.skill_hash
    assert b"Common pitfalls" in (root / "SKILL.md").read_bytes()
    (root / "references" / "extra.md").write_text("# Extra\n", encoding="utf-8")
    restored = restore_version(run_dir, 0, root)
    assert restored.hash == v0.skill_hash
    assert not (root / "references" / "extra.md").exists()
    assert (root / "assets" / "logo.bin").read_bytes() == bytes(range(256))


def test_a_tampered_version_is_refused(tmp_path: Path) -> None:
    root = make_skill(tmp_path)
    skill = load_skill(root)
    run_dir = tmp_path / "run"
    with RunLog(run_dir, create=True) as log:
        log.save_version(snapshot(skill), skill.name, step=0, parent=None, kept=True)
        stored = log.version_dir(0)
    (stored / "SKILL.md").write_text(SKILL_MD + "tampered\n", encoding="utf-8")
    before = (root / "SKILL.md").read_bytes()
    with pytest.raises(RunError, match="do not match its hash"):
        restore_version(run_dir, 0, root)
    assert (root / "SKILL.md").read_bytes() == before


def test_a_version_folder_left_by_a_crash_is_reused_or_replaced(tmp_path: Path) -> None:
    root = make_skill(tmp_path)
    skill = load_skill(root)
    files = snapshot(skill)
    run_dir = tmp_path / "run"
    with RunLog(run_dir, create=True) as log:
        pass
    # A crash after the folder was renamed into place but before versions.json listed it:
    digest = content_hash(files)
    half = run_dir / "versions" / f"0-{digest[:12]}" / skill.name
    half.mkdir(parents=True)
    (half / "SKILL.md").write_bytes(files["SKILL.md"])  # incomplete: references/ missing
    (run_dir / "versions" / ".tmp-0-junk").mkdir()  # and a temp folder of an unfinished write
    with RunLog(run_dir) as log:
        assert not (run_dir / "versions" / ".tmp-0-junk").exists()
        rec = log.save_version(files, skill.name, step=0, parent=None, kept=True)
        assert log.version_files(rec.version) == files


def test_state_and_trajectories_round_trip(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunLog(run_dir, create=True) as log:
        assert log.read_state() is None
        log.write_state({"step": 3, "stage": "validate"})
        assert log.read_state() == {"step": 3, "stage": "validate"}
        d = log.traj_dir(3, "val")
        d.mkdir(parents=True)
        good = Trajectory(task_id="q/1", skill_hash="abc", model_id="m", seed=0, answer=["4"],
                          verdict=Verdict(1.0, True))
        other = Trajectory(task_id="q2", skill_hash="zzz", model_id="m", seed=0, verdict=Verdict(0.0, False))
        unscored = Trajectory(task_id="q3", skill_hash="abc", model_id="m", seed=0)
        for name, t in (("q_1", good), ("q2", other), ("q3", unscored)):
            (d / f"{name}.json").write_text(json.dumps(t.to_dict()))
        (d / "torn.json").write_text('{"task_id": "q4", "skill')
        loaded = log.load_trajectories(d, skill_hash="abc")
        assert list(loaded) == ["q/1"] and loaded["q/1"].answer == ["4"]
        assert set(log.load_trajectories(d)) == {"q/1", "q2"}
    assert not any(p.name.startswith(".tmp-") for p in run_dir.iterdir())


def test_run_skill_path_reads_the_first_run_started(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunLog(run_dir, create=True) as log:
        log.emit(RunStarted(run_id="r", skill=str(tmp_path / "s"), suite="q", skill_hash="h"))
    assert run_skill_path(run_dir) == tmp_path / "s"
    os.remove(run_dir / "events.jsonl")
    with pytest.raises(RunError):
        run_skill_path(run_dir)


def test_fault_hook_sees_every_durable_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(runlog, "fault_hook", seen.append)
    root = make_skill(tmp_path)
    skill = load_skill(root)
    with RunLog(tmp_path / "run", create=True) as log:
        log.emit(Warning_(message="x"))
        log.save_version(snapshot(skill), skill.name, step=0, parent=None)
        log.write_state({})
    assert seen == ["event", "version_dir", "versions_index", "state"]
