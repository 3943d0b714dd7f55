"""The engine must stay usable without the UI: nothing under skillgrad_tui/core imports Textual."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "skillgrad_tui" / "core"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_never_imports_textual_or_the_ui() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert files, "core package not found"
    offenders = {
        str(f.relative_to(CORE)): sorted(n for n in _imports(f)
                                         if n.split(".")[0] == "textual" or n.startswith("skillgrad_tui.tui"))
        for f in files
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"core modules import the UI layer: {offenders}"
