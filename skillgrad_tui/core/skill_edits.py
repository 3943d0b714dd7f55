"""Checked edits of a skill, in memory: an Edit names its layer, file and the unique text it
replaces; applying a list gives the new text of every file it touches, refused unless the result
still loads and keeps the format's limits. Nothing here touches the disk."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from skillgrad_tui.core.file_write import is_temp_name
from skillgrad_tui.core.errors import EditError, SkillError
from skillgrad_tui.core.skill_format import (IGNORED_NAMES, SKILL_MD, Layer, Skill, assemble_skill,
                                             format_violations_of, line_at, split_front_matter)
from skillgrad_tui.core.skill_layout import is_reference_path, is_tool_path
from skillgrad_tui.core.vcs import VCS_NAMES


def _creatable(rel: str) -> bool:
    """Where an edit may create a new file: a reference, or a script (a tool)."""
    return is_reference_path(rel) or is_tool_path(rel)


@dataclass(frozen=True)
class Edit:
    layer: Layer
    path: str  # relative to the skill root, posix separators
    old: str  # "" creates a new L3 file
    new: str


@dataclass
class Patch:
    edits: list[Edit]
    rationale: str = ""
    gradients: list[str] = field(default_factory=list)  # labels/ids of the text gradients behind it
    tasks: list[str] = field(default_factory=list)  # ids of the tasks behind it


def _edit_path(skill: Skill, edit: Edit) -> str:
    raw = edit.path
    if not raw or "\\" in raw or "\0" in raw:
        raise EditError(f"bad path {raw!r}: use a relative path with '/' separators", skill.root)
    p = PurePosixPath(raw)
    if p.is_absolute() or ".." in p.parts:
        raise EditError(f"{raw} is outside the skill folder", skill.root / raw.lstrip("/"))
    rel = p.as_posix()
    if rel == ".":
        raise EditError("empty path", skill.root)
    if edit.layer not in ("L1", "L2", "L3"):
        raise EditError(f"unknown layer {edit.layer!r}", skill.root / rel)
    want = ("L1", "L2") if rel == SKILL_MD else ("L3",)
    if edit.layer not in want:
        raise EditError(f"a {edit.layer} edit cannot target {rel} (its layer is {' or '.join(want)})", skill.root / rel)
    return rel


def _region(path: Path, text: str, layer: Layer) -> tuple[int, int]:
    """Offsets [start, end) of the text an edit of `layer` may touch in this file."""
    if layer == "L3":
        return 0, len(text)
    split = split_front_matter(path, text)
    if layer == "L1":
        return split.yaml_start, split.yaml_start + len(split.yaml_text)
    return split.body_start, len(text)


def _apply_one(skill: Skill, edit: Edit, current: dict[str, str]) -> None:
    rel = _edit_path(skill, edit)
    path = skill.root / rel
    if "\0" in edit.new:
        raise EditError("new text contains a NUL byte", path)
    if edit.old == "":
        if rel in current or rel in skill.assets or (skill.root / rel).exists():
            raise EditError("file already exists: an edit with empty 'old' only creates new files", path)
        if not _creatable(rel):
            raise EditError("new files may only be created under references/ or scripts/ (code)", path)
        parts = PurePosixPath(rel).parts
        if is_temp_name(parts[-1]) or any(part in IGNORED_NAMES or part in VCS_NAMES for part in parts):
            raise EditError("reserved file name", path)
        if not edit.new.strip():
            raise EditError("a new file needs content", path)
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if i < len(parts) and (skill.root / sub).is_symlink():
                raise EditError(f"{sub} is a symbolic link: files are never written through a link", path)
            if skill.ignore is not None and skill.ignore.ignored(sub, is_dir=i < len(parts)):
                raise EditError(".gitignore names this path, so it would not be part of the skill", path)
        for parent in PurePosixPath(rel).parents:
            if parent.as_posix() in current or parent.as_posix() in skill.assets:
                raise EditError(f"{parent} is a file, not a folder", path)
        current[rel] = edit.new
        return
    if edit.old == edit.new:
        raise EditError("edit changes nothing (old == new)", path)
    if rel not in current:
        why = "is an asset (binary or not loaded), not editable text" if rel in skill.assets else "does not exist"
        raise EditError(f"{rel} {why}", path)
    text = current[rel]
    start, end = _region(path, text, edit.layer)
    where = {"L1": "front matter", "L2": "body", "L3": "file"}[edit.layer]
    hits: list[int] = []
    i = text.find(edit.old, start, end)
    while i >= 0:
        hits.append(i)
        i = text.find(edit.old, i + 1, end)
    if not hits:
        elsewhere = " (it is in the other part of SKILL.md: check the layer)" if edit.old in text else ""
        raise EditError(f"old text not found in the {where}{elsewhere}", path)
    if len(hits) > 1:
        lines = ", ".join(str(line_at(text, h)) for h in hits)
        msg = f"old text occurs {len(hits)} times in the {where} (lines {lines}); make it unique"
        raise EditError(msg, path, line_at(text, hits[0]))
    new_text = text[: hits[0]] + edit.new + text[hits[0] + len(edit.old) :]
    if edit.layer != "L3":
        _check_regions(path, text, new_text, edit, hits[0])
    current[rel] = new_text


def _check_regions(path: Path, old_text: str, new_text: str, edit: Edit, at: int) -> None:
    """An L1 edit must leave the body as it was and vice versa, e.g. no stray '---' line."""
    line = line_at(old_text, at)
    before = split_front_matter(path, old_text)
    try:
        after = split_front_matter(path, new_text)
    except SkillError:
        raise EditError("would break front matter (its delimiters)", path, line) from None
    if edit.layer == "L1" and after.body != before.body:
        raise EditError("would break front matter: the new text ends it early", path, line)
    if edit.layer == "L2" and after.yaml_text != before.yaml_text:
        raise EditError("would break front matter", path, line)


def apply_edits_in_memory(skill: Skill, edits: list[Edit]) -> dict[str, str]:
    """New full text of every file the edits touch, in order; the result must load and validate.
    Raises EditError naming the file (and line) of the first edit that does not apply."""
    if not edits:
        raise EditError("no edits", skill.root)
    current = dict(skill.files)
    for edit in edits:
        _apply_one(skill, edit, current)
    changed = {p: t for p, t in current.items() if skill.files.get(p) != t}
    for rel, text in changed.items():
        size = len(text.encode("utf-8"))
        if size > skill.max_file_bytes:
            raise EditError(f"result would be {size} bytes, over the limit of {skill.max_file_bytes}", skill.root / rel)
    try:
        result = assemble_skill(skill.root, current, dict(skill.asset_digests), skill.max_file_bytes, [], skill.ignore)
    except SkillError as exc:
        raise EditError(f"result would not load: {exc.message}", exc.path, exc.line) from None
    had = {p.message.split("'")[1] for p in format_violations_of(skill)}  # messages open with 'name' or 'description'
    for p in result.format_violations():  # a published skill may break a limit; an edit may not add one
        if p.message.split("'")[1] not in had:
            raise EditError(p.message, p.path, p.line)
    return changed


def check_edit(skill: Skill, edit: Edit) -> str | None:
    """None if the edit applies on its own, else the reason (with file and line)."""
    try:
        apply_edits_in_memory(skill, [edit])
    except EditError as exc:
        return str(exc)
    return None
