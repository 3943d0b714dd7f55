"""Crash safety of multi-file writes: fault injection in-process at every step, and a child
process SIGKILLed in the middle of a patch, after which recover() must leave exactly the old or
exactly the new files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skillgrad_tui.core import atomic
from skillgrad_tui.core.errors import SkillError
from skillgrad_tui.core.skill import Edit, Patch, apply_patch, load_skill, recover, restore_snapshot, snapshot

REPO = Path(__file__).resolve().parents[1]

OLD = {
    "SKILL.md": b"---\nname: demo\ndescription: Demo skill.\n---\n# Demo\nRead references/a.md when stuck, references/b.md otherwise.\nRun scripts/s.py.\n",
    "references/a.md": b"alpha\n",
    "references/b.md": b"beta\n",
    "scripts/s.py": b"print('s')\n",
}
PATCH = Patch(
    [
        Edit("L2", "SKILL.md", "otherwise.", "otherwise, references/c.md last."),
        Edit("L3", "references/a.md", "alpha", "ALPHA"),
        Edit("L3", "references/b.md", "beta", "BETA"),
        Edit("L3", "references/c.md", "", "gamma\n"),
    ]
)
NEW = {
    **OLD,
    "SKILL.md": OLD["SKILL.md"].replace(b"otherwise.", b"otherwise, references/c.md last."),
    "references/a.md": b"ALPHA\n",
    "references/b.md": b"BETA\n",
    "references/c.md": b"gamma\n",
}
# restore_snapshot(NEW -> OLD) rewrites 3 files and deletes references/c.md


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def skill_root(tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    write_tree(root, OLD)
    return root


@pytest.fixture(autouse=True)
def no_hook() -> Iterator[None]:
    yield
    atomic.fault_hook = None


class Crash(Exception):
    pass


def crash_at(stage: str, count: int) -> Callable[[str, int], None]:
    def hook(s: str, c: int) -> None:
        if (s, c) == (stage, count):
            raise Crash(f"{s} {c}")

    return hook


def test_write_creates_replaces_deletes(tmp_path: Path) -> None:
    root, jdir = tmp_path / "f", tmp_path / "j"
    write_tree(root, {"a.txt": b"a", "sub/b.txt": b"b", "gone/x.txt": b"x"})
    (root / "a.txt").chmod(0o750)
    atomic.write_files_atomically(root, {"a.txt": b"A", "new/n.txt": b"n"}, ["gone/x.txt"], journal_dir=jdir)
    assert read_tree(root) == {"a.txt": b"A", "new/n.txt": b"n", "sub/b.txt": b"b"}
    assert (root / "a.txt").stat().st_mode & 0o777 == 0o750
    assert not (root / "gone").exists()
    assert list(jdir.iterdir()) == []  # journal gone, temp journal gone
    with pytest.raises(ValueError):
        atomic.write_files_atomically(root, {"../out.txt": b"x"}, journal_dir=jdir)


def test_temp_name_pattern() -> None:
    assert atomic.is_temp_name(".a.md.sgtmp-0f3a9c1b2d4e")
    assert not atomic.is_temp_name("a.md") and not atomic.is_temp_name("notes.sgtmp.md")


STAGES = [("temp_written", 1), ("temp_written", 4), ("journal_written", 0), ("renamed", 1), ("renamed", 3), ("renamed", 4)]


@pytest.mark.parametrize(("stage", "count"), STAGES)
def test_patch_crash_at_each_step_then_recover(skill_root: Path, stage: str, count: int) -> None:
    jdir = skill_root.parent / ".skillgrad" / "journal"
    atomic.fault_hook = crash_at(stage, count)
    with pytest.raises(Crash):
        apply_patch(skill_root, PATCH)
    atomic.fault_hook = None
    committed = stage not in ("temp_written",)
    if committed:
        assert list(jdir.glob("*.journal.json")), "the journal outlives a crash after the commit point"
        with pytest.raises(SkillError, match="interrupted write .* is pending"):
            load_skill(skill_root)
        assert "finished an interrupted write" in (recover(skill_root) or "")
        assert read_tree(skill_root) == NEW
    else:  # an error before the commit point cleans up its temps itself
        assert read_tree(skill_root) == OLD
        assert recover(skill_root) is None
    assert recover(skill_root) is None  # idempotent
    assert load_skill(skill_root).files["references/a.md"] == (NEW if committed else OLD)["references/a.md"].decode()


@pytest.mark.parametrize(("stage", "count"), [("renamed", 2), ("deleted", 1)])
def test_restore_crash_then_recover(skill_root: Path, stage: str, count: int) -> None:
    apply_patch(skill_root, PATCH)
    atomic.fault_hook = crash_at(stage, count)
    with pytest.raises(Crash):
        restore_snapshot(skill_root, OLD, set_aside=skill_root.parent / "kept")
    atomic.fault_hook = None
    recover(skill_root)
    assert read_tree(skill_root) == OLD


def test_recover_removes_stray_temps_without_journal(skill_root: Path) -> None:
    (skill_root / "references" / ".a.md.sgtmp-deadbeef0001").write_bytes(b"half")
    (skill_root / ".SKILL.md.sgtmp-deadbeef0002").write_bytes(b"half")
    assert "undid an unfinished write: removed 2 temp file(s)" in (recover(skill_root) or "")
    assert read_tree(skill_root) == OLD


def test_recover_refuses_a_journal_it_cannot_finish(skill_root: Path) -> None:
    atomic.fault_hook = crash_at("renamed", 1)
    with pytest.raises(Crash):
        apply_patch(skill_root, PATCH)
    atomic.fault_hook = None
    jpath = next((skill_root.parent / ".skillgrad" / "journal").glob("*.journal.json"))
    first = json.loads(jpath.read_text())["replace"][0]["target"]
    (skill_root / first).write_bytes(b"edited by hand after the crash\n")
    with pytest.raises(SkillError, match=f"cannot finish the interrupted write: {first}") as info:
        recover(skill_root)
    assert info.value.path == jpath
    jpath.write_text("{not json")
    with pytest.raises(SkillError, match="unreadable write journal"):
        recover(skill_root)


# ------------------------------------------------------------------------ a real killed process

CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from skillgrad_tui.core import atomic, skill as sk
from tests.test_atomic import PATCH, OLD

def hook(stage, count):
    if (stage, count) == ({stage!r}, {count}):
        print("PAUSED", flush=True)
        time.sleep(120)  # the parent SIGKILLs us here

atomic.fault_hook = hook
if {restore!r}:
    sk.restore_snapshot(Path({root!r}), OLD, set_aside=Path({root!r}).parent / "kept")
else:
    sk.apply_patch(Path({root!r}), PATCH)
print("DONE", flush=True)
"""


def run_child_until_paused(root: Path, stage: str, count: int, restore: bool) -> subprocess.Popen[str]:
    code = CHILD.format(repo=str(REPO), root=str(root), stage=stage, count=count, restore=restore)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "PAUSED":
        child.kill()
        pytest.fail(f"child did not reach {stage} {count}: {line!r} {child.stderr.read() if child.stderr else ''}")
    return child


def kill(child: subprocess.Popen[str]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    for stream in (child.stdout, child.stderr):
        if stream is not None:
            stream.close()


@pytest.mark.parametrize(
    ("stage", "count", "expect"),
    [("temp_written", 2, "old"), ("journal_written", 0, "new"), ("renamed", 2, "new")],
)
def test_sigkill_mid_patch(skill_root: Path, stage: str, count: int, expect: str) -> None:
    child = run_child_until_paused(skill_root, stage, count, restore=False)
    kill(child)
    on_disk = {k: v for k, v in read_tree(skill_root).items() if not atomic.is_temp_name(Path(k).name)}
    if stage == "renamed":  # the crash really left a mix on disk...
        assert on_disk not in (OLD, NEW)
        assert any(on_disk.get(k) == NEW[k] != OLD.get(k) for k in NEW)
        assert any(on_disk.get(k) == OLD[k] != NEW[k] for k in OLD)
    if stage == "temp_written":
        assert any(atomic.is_temp_name(p.name) for p in skill_root.rglob("*"))
    recover(skill_root)  # ...and recovery leaves exactly one version
    assert read_tree(skill_root) == (NEW if expect == "new" else OLD)
    assert load_skill(skill_root).problems == []


def test_sigkill_mid_restore_with_deletion(skill_root: Path) -> None:
    apply_patch(skill_root, PATCH)
    child = run_child_until_paused(skill_root, "deleted", 1, restore=True)
    kill(child)
    recover(skill_root)
    assert read_tree(skill_root) == OLD


def test_reader_waits_for_writer_and_never_sees_a_mix(skill_root: Path) -> None:
    child = run_child_until_paused(skill_root, "renamed", 1, restore=False)
    result: dict[str, object] = {}

    def read() -> None:
        try:
            result["skill"] = load_skill(skill_root)
        except SkillError as exc:
            result["error"] = exc

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.5)
    assert reader.is_alive(), "load_skill must wait while a write holds the lock"
    kill(child)
    reader.join(timeout=30)
    assert "skill" not in result and "is pending" in str(result["error"])
    recover(skill_root)
    assert snapshot(load_skill(skill_root)) == NEW
