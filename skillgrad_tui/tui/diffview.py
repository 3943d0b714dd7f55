"""Side-by-side diffs of a proposed edit, rendered with rich (used by the review screen).

The diff is computed on whole files (the file before and after the edit, as the optimiser would
write it), grouped into hunks with difflib's opcodes, so the reviewer sees the edit in its
context. Each side is syntax-highlighted (Markdown, Python, ...) before the change backgrounds
are laid over it; within a replaced line the changed characters are emphasised.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

from rich.console import Group, RenderableType
from rich.style import Style
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from skillgrad_tui.core.errors import EditError
from skillgrad_tui.core.skill import Edit, Skill, apply_edits_in_memory

DEL_BG = Style(bgcolor="#4b1d24")
ADD_BG = Style(bgcolor="#1d4b2c")
DEL_WORD = Style(bgcolor="#8a2a36", bold=True)
ADD_WORD = Style(bgcolor="#2a8a48", bold=True)
SYNTAX_THEME = "ansi_dark"
LEXERS = {".md": "markdown", ".py": "python", ".json": "json", ".yaml": "yaml", ".yml": "yaml",
          ".toml": "toml", ".sh": "bash", ".txt": "text", ".csv": "text"}


@dataclass
class EditPreview:
    path: str
    old_text: str  # the whole file before the edit ("" for a new file)
    new_text: str  # the whole file after it
    error: str | None = None  # the edit no longer applies to the skill as loaded


def lexer_for(path: str) -> str:
    return LEXERS.get(PurePosixPath(path).suffix.lower(), "text")


def preview_edit(skill: Skill, edit: Edit, new: str | None = None) -> EditPreview:
    """The file before and after `edit` (with `new` replacing its new text, if given)."""
    if new is not None:
        edit = replace(edit, new=new)
    old_text = skill.files.get(edit.path, "")
    try:
        changed = apply_edits_in_memory(skill, [edit])
    except EditError as exc:
        # Still show what was proposed: the old and new snippets themselves.
        return EditPreview(edit.path, edit.old, edit.new, error=str(exc))
    return EditPreview(edit.path, old_text, changed.get(edit.path, old_text))


def _highlight_lines(text: str, lexer: str) -> list[Text]:
    if not text:
        return []
    highlighted = Syntax(text, lexer, theme=SYNTAX_THEME, background_color="default").highlight(text)
    lines = highlighted.split("\n", allow_blank=True)
    n = len(text.split("\n"))
    return list(lines[:n]) + [Text("") for _ in range(n - len(lines))]


def _mark_words(old: Text, new: Text) -> None:
    """Emphasise the characters that differ between a pair of replaced lines."""
    sm = difflib.SequenceMatcher(None, old.plain, new.plain, autojunk=False)
    if sm.ratio() < 0.3:
        return  # mostly rewritten: word marks would be noise
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag in ("replace", "delete") and i2 > i1:
            old.stylize(DEL_WORD, i1, i2)
        if tag in ("replace", "insert") and j2 > j1:
            new.stylize(ADD_WORD, j1, j2)


def diff_stats(old_text: str, new_text: str) -> tuple[int, int]:
    """(lines removed, lines added)."""
    sm = difflib.SequenceMatcher(None, old_text.split("\n"), new_text.split("\n"), autojunk=False)
    removed = added = 0
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag != "equal":
            removed += i2 - i1
            added += j2 - j1
    return removed, added


def side_by_side(preview: EditPreview, context: int = 3) -> RenderableType:
    """A table: old line number, old line, new line number, new line; one band per hunk."""
    lexer = lexer_for(preview.path)
    old_lines = preview.old_text.split("\n") if preview.old_text else []
    new_lines = preview.new_text.split("\n") if preview.new_text else []
    old_hl = _highlight_lines(preview.old_text, lexer)
    new_hl = _highlight_lines(preview.new_text, lexer)
    table = Table(box=None, show_header=True, expand=True, padding=(0, 1, 0, 0), show_edge=False,
                  header_style="bold")
    table.add_column("", justify="right", style="dim", no_wrap=True, width=4)
    table.add_column("before", ratio=1, overflow="fold")
    table.add_column("", justify="right", style="dim", no_wrap=True, width=4)
    table.add_column("after", ratio=1, overflow="fold")
    sm = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    groups = list(sm.get_grouped_opcodes(context))
    if not groups:
        table.add_row("", Text("(no change)", style="dim"), "", "")
    for g, group in enumerate(groups):
        if g:
            table.add_row("", Text("⋯", style="dim"), "", Text("⋯", style="dim"))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for k in range(i2 - i1):
                    table.add_row(str(i1 + k + 1), old_hl[i1 + k], str(j1 + k + 1), new_hl[j1 + k])
                continue
            for k in range(max(i2 - i1, j2 - j1)):
                left = old_hl[i1 + k].copy() if i1 + k < i2 else None
                right = new_hl[j1 + k].copy() if j1 + k < j2 else None
                if left is not None and right is not None and tag == "replace":
                    _mark_words(left, right)
                if left is not None:
                    left.stylize_before(DEL_BG)
                    left.pad_right(1)
                if right is not None:
                    right.stylize_before(ADD_BG)
                    right.pad_right(1)
                table.add_row(str(i1 + k + 1) if left is not None else "", left or Text(""),
                              str(j1 + k + 1) if right is not None else "", right or Text(""))
    if preview.error:
        return Group(Text(f"⚠ {preview.error}", style="bold red"), table)
    return table
