"""core/watcher.py: debounced, content-hashed change reports on a real folder (real inotify)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from skillgrad_tui.core.skill import Edit, Patch, apply_patch, load_skill
from skillgrad_tui.core.watcher import MISSING, SkillWatcher, folder_hash, is_ignored_name

REPO = Path(__file__).resolve().parents[1]
DEBOUNCE = 0.15


@pytest.fixture()
def skill_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", dst)
    return dst


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.event = threading.Event()

    def __call__(self, summary: str) -> None:
        self.calls.append(summary)
        self.event.set()

    def wait_quiet(self, seconds: float = DEBOUNCE * 6) -> None:
        """Long enough for any pending burst to have fired."""
        time.sleep(seconds)


def started(root: Path, rec: Recorder, ignore: list[str | None] | None = None) -> SkillWatcher:
    holder = ignore if ignore is not None else [None]
    w = SkillWatcher(root, rec, debounce_s=DEBOUNCE, ignore_hash=lambda: holder[0])
    w.start()
    time.sleep(0.1)  # inotify watches are in place once start() returns; a margin for slow CI
    return w


def test_folder_hash_matches_skill_hash_and_skips_editor_temps(skill_dir: Path) -> None:
    clean = folder_hash(skill_dir)
    assert clean == load_skill(skill_dir).hash
    for name in (".SKILL.md.swp", "SKILL.md~", "4913", ".#SKILL.md", "notes.tmp", ".SKILL.md.sgtmp-ab12"):
        (skill_dir / name).write_text("junk")
    assert folder_hash(skill_dir) == clean
    (skill_dir / "references").mkdir()
    (skill_dir / "references" / "units.md").write_text("# Units\n")
    assert folder_hash(skill_dir) != clean
    assert folder_hash(skill_dir / "nope") == MISSING


def test_ignored_names() -> None:
    for name in (".SKILL.md.swp", ".x.swx", "a~", ".#a", "4913", "x.tmp", "__pycache__", "m.pyc",
                 ".SKILL.md.sgtmp-x1"):
        assert is_ignored_name(name), name
    for name in ("SKILL.md", "units.md", "tool.py", "4914"):
        assert not is_ignored_name(name), name


def test_a_burst_of_saves_is_reported_once(skill_dir: Path) -> None:
    rec = Recorder()
    w = started(skill_dir, rec)
    try:
        md = skill_dir / "SKILL.md"
        text = md.read_text()
        for i in range(5):  # an editor saving in quick succession
            md.write_text(text + f"\n<!-- save {i} -->\n")
            time.sleep(DEBOUNCE / 5)
        assert rec.event.wait(5), "no change reported"
        rec.wait_quiet()
        assert len(rec.calls) == 1
        assert "SKILL.md" in rec.calls[0]
        assert w.reports == 1
    finally:
        w.stop()


def test_editor_temp_files_and_touches_are_ignored(skill_dir: Path) -> None:
    rec = Recorder()
    w = started(skill_dir, rec)
    try:
        (skill_dir / ".SKILL.md.swp").write_bytes(b"\0swap")
        (skill_dir / "4913").write_text("")
        os.remove(skill_dir / "4913")
        (skill_dir / "SKILL.md~").write_text("backup")
        os.utime(skill_dir / "SKILL.md")  # a touch: event, but no content change
        rec.wait_quiet()
        assert rec.calls == []
    finally:
        w.stop()


def test_own_write_is_ignored_by_hash_but_a_user_edit_is_not(skill_dir: Path) -> None:
    rec = Recorder()
    own: list[str | None] = [None]
    w = started(skill_dir, rec, own)
    try:
        skill = load_skill(skill_dir)
        old = "- To count, list the matching rows to yourself one by one, then count them. Do not guess."
        new = "- To count, list every matching row, then count them."
        # What the app does: apply a patch, then record the resulting hash as its own.
        after = apply_patch(skill_dir, Patch([Edit("L2", "SKILL.md", old, new)]))
        own[0] = after.hash
        rec.wait_quiet()
        assert rec.calls == []
        assert w.ignored_own == 1
        # The user's edit right after is reported.
        md = skill_dir / "SKILL.md"
        md.write_text(md.read_text().replace("Do not guess", "Never guess").replace(new, new + " Twice."))
        assert rec.event.wait(5)
        assert len(rec.calls) == 1
    finally:
        w.stop()


def test_delete_and_rename_do_not_kill_the_watcher(skill_dir: Path) -> None:
    rec = Recorder()
    w = started(skill_dir, rec)
    try:
        (skill_dir / "SKILL.md").rename(skill_dir / "skill.md.bak")
        assert rec.event.wait(5)
        rec.event.clear()
        (skill_dir / "skill.md.bak").rename(skill_dir / "SKILL.md")  # back to the original content
        rec.wait_quiet()
        assert len(rec.calls) == 2  # gone, and back (a new hash relative to "gone")
        rec.event.clear()
        refs = skill_dir / "references"
        refs.mkdir()
        (refs / "a.md").write_text("# A\n")
        assert rec.event.wait(5)
        rec.event.clear()
        shutil.rmtree(refs)
        assert rec.event.wait(5)
        rec.wait_quiet()
        assert len(rec.calls) == 4
        assert w.running
    finally:
        w.stop()
    assert not w.running
