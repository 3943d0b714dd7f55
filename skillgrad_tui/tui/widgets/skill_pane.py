"""The skill pane: the folder as a tree (layers marked) and the selected file, highlighted.

SKILL.md lines carry an L1 badge in the front matter and L2 in the body; references/ and
scripts/ are L3; anything else is an asset (listed, hashed, never loaded). A skill that no
longer loads (e.g. a half-saved SKILL.md while watching) is still shown: the raw file with the
offending line marked, and the error in the summary line.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static, Tree

from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.skill import SKILL_MD, TEXT_DIRS, Skill, is_ignored_name
from skillgrad_tui.tui.diffview import SYNTAX_THEME, lexer_for

LAYER_STYLE = {"L1": "bold black on #d0a030", "L2": "bold black on #4aa0d0", "L3": "bold black on #70b070",
               "--": "dim"}
MAX_VIEW_CHARS = 60_000  # a huge reference file is cut, not rendered whole on every refresh


def chars(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def layer_of_path(rel: str) -> str:
    if rel == SKILL_MD:
        return "L1+L2"
    return "L3" if rel.split("/", 1)[0] in TEXT_DIRS else "asset"


def front_matter_end(text: str) -> int:
    """0-based index of the closing '---' line of the front matter, or -1 if there is none."""
    lines = text.splitlines()
    if not lines or lines[0].lstrip("\ufeff").rstrip() != "---":
        return -1
    for i, line in enumerate(lines[1:], start=1):
        if line.rstrip() == "---":
            return i
    return -1


def render_file(rel: str, text: str, error_line: int | None = None) -> Table:
    """Each line: a layer badge, its number, the highlighted line (wrapped lines keep the gutter).
    SKILL.md is L1 up to the closing '---' of the front matter and L2 after it."""
    if len(text) > MAX_VIEW_CHARS:
        text = text[:MAX_VIEW_CHARS] + "\n… (cut here: the file is longer)"
    lines = text.split("\n")
    if text:
        hl = Syntax(text, lexer_for(rel), theme=SYNTAX_THEME, background_color="default").highlight(text)
        hl_lines = list(hl.split("\n", allow_blank=True))
    else:
        hl_lines = []
    hl_lines += [Text("") for _ in range(len(lines) - len(hl_lines))]
    fm_end = front_matter_end(text) if rel == SKILL_MD else -1
    while len(lines) > 1 and not lines[-1]:
        lines.pop()
    table = Table(box=None, show_header=False, padding=(0, 1, 0, 0), expand=True, show_edge=False)
    table.add_column(no_wrap=True, width=2)
    table.add_column(no_wrap=True, justify="right", width=len(str(len(lines))))
    table.add_column(ratio=1, overflow="fold")
    for i, line in enumerate(hl_lines[: len(lines)]):
        if rel == SKILL_MD:
            layer = "L1" if 0 <= i <= fm_end else "L2"
        else:
            layer = "L3" if rel.split("/", 1)[0] in TEXT_DIRS else "--"
        if lines[i].lstrip().startswith("#") and layer != "L1":
            line.stylize("bold")
        number_style = "bold white on red" if error_line == i + 1 else "dim"
        table.add_row(Text(layer, LAYER_STYLE[layer]), Text(str(i + 1), number_style), line)
    return table


def list_folder(root: Path) -> list[str]:
    """Relative paths of the folder's files, for a skill that does not load."""
    found: list[str] = []
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_ignored_name(d))
        for name in filenames:
            if not is_ignored_name(name):
                found.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(found)


class SkillPane(Vertical):
    """Tree of the skill's files and a view of the selected one."""

    class FileShown(Message):
        def __init__(self, rel: str) -> None:
            super().__init__()
            self.rel = rel

    def __init__(self, root: Path, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.root = root
        self.skill: Skill | None = None
        self.error: SkillgradError | None = None
        self.current = SKILL_MD

    def compose(self) -> ComposeResult:
        yield Static("", id="skill-summary")
        with Container(id="skill-body"):
            tree: Tree[str] = Tree(self.root.name, id="skill-tree")
            tree.show_root = False
            tree.guide_depth = 2
            yield tree
            with VerticalScroll(id="skill-view"):
                yield Static("", id="skill-file")

    # -- state from the app ------------------------------------------------------------------------

    def show_skill(self, skill: Skill | None, error: SkillgradError | None = None) -> None:
        self.skill, self.error = skill, error
        self._summary()
        self._fill_tree()
        self.show_file(self.current if self._exists(self.current) else SKILL_MD)

    def _exists(self, rel: str) -> bool:
        if self.skill is not None:
            return rel in self.skill.files or rel in self.skill.assets
        return (self.root / rel).is_file()

    def _summary(self) -> None:
        summary = self.query_one("#skill-summary", Static)
        if self.skill is None:
            msg = str(self.error) if self.error else "no skill loaded"
            self.border_subtitle = "does not load"
            summary.update(Text.assemble(("✗ ", "bold red"), (msg, "red")))
            return
        size = self.skill.text_size()
        warn = [p for p in self.skill.problems if p.severity == "warning"]
        self.border_title = f"skill {self.skill.name}"
        self.border_subtitle = self.skill.short_hash[:8]
        text = Text.assemble(
            ("L1", LAYER_STYLE["L1"]), f" {chars(size['L1'])} ", ("L2", LAYER_STYLE["L2"]),
            f" {chars(size['L2'])} ", ("L3", LAYER_STYLE["L3"]), f" {chars(size['L3'])} chars",
        )
        if warn:
            text.append(f"  ⚠ {len(warn)}", "yellow")
        summary.update(text)

    def _fill_tree(self) -> None:
        tree = self.query_one("#skill-tree", Tree)
        tree.clear()
        if self.skill is not None:
            paths = sorted([*self.skill.files, *self.skill.assets],
                           key=lambda p: (p != SKILL_MD, p.count("/"), p))
        else:
            paths = list_folder(self.root)
        dirs: dict[str, object] = {}
        for rel in paths:
            parent = tree.root
            parts = rel.split("/")
            for depth in range(len(parts) - 1):
                key = "/".join(parts[: depth + 1])
                if key not in dirs:
                    dirs[key] = parent.add(parts[depth] + "/", expand=True)
                parent = dirs[key]  # type: ignore[assignment]
            layer = layer_of_path(rel)
            label = Text.assemble(parts[-1], " ", (layer, "dim"))
            parent.add_leaf(label, data=rel)

    def show_file(self, rel: str) -> None:
        self.current = rel
        view = self.query_one("#skill-file", Static)
        path = self.root / rel
        if self.skill is not None and rel in self.skill.files:
            view.update(render_file(rel, self.skill.files[rel]))
        elif self.skill is not None and rel in self.skill.assets:
            size = path.stat().st_size if path.exists() else 0
            view.update(Text(f"{rel}: asset, {size} bytes (listed and hashed, never loaded as text)", "dim"))
        else:
            try:
                raw = path.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                view.update(Text(f"{rel}: cannot read ({exc.strerror})", "red"))
                return
            line = None
            if self.error is not None and self.error.path is not None and self.error.path.name == path.name:
                line = self.error.line
            view.update(render_file(rel, raw, error_line=line))
        self.post_message(self.FileShown(rel))

    def on_tree_node_selected(self, event: Tree.NodeSelected[str]) -> None:
        if event.node.data:
            event.stop()
            self.show_file(event.node.data)
