"""Finishing or undoing a write of a skill that a crash interrupted (`skillgrad recover`, the app).

A write past its commit point (its journal exists) is finished: the skill becomes the new version.
One that died before it left only temp files: they are removed and the skill is the old version.
Either way the account says which. It runs under the skill's lock, so it never races a live run
(which finishes its own writes).
"""

from __future__ import annotations

from pathlib import Path

from skillgrad_tui.core.errors import SkillError
from skillgrad_tui.core.skill import default_journal_dir, recover
from skillgrad_tui.core.skill_lock import SkillLock


def recover_skill(root: Path, *, command: str | None = None) -> str:
    """One line: what recovery did, or that there was nothing to do. SkillBusy while a run holds it."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise SkillError("skill folder does not exist or is not a folder", root)
    if not default_journal_dir(root).is_dir():  # nothing of ours was ever written: create nothing
        account = recover(root)
    else:
        with SkillLock(root, command=command):
            account = recover(root)
    return account or "nothing to recover: no interrupted write of this skill"
