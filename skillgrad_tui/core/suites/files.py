"""Reading suite files as UTF-8 text, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

from skillgrad_tui.core.errors import SuiteError


def read_text(path: Path, missing: str = "file not found") -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SuiteError(missing, path) from exc
    except UnicodeDecodeError as exc:
        raise SuiteError(f"not UTF-8: {exc.reason} at byte {exc.start}", path) from exc
