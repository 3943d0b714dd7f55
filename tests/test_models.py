"""Model discovery, hashes and the `skillgrad models` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skillgrad_tui.core.errors import ModelError
from skillgrad_tui.core.llm.gguf_info import read_gguf_info
from skillgrad_tui.core.llm.models import GEMMA_NAME, SMOLLM_NAME, discover, resolve

REPO = Path(__file__).resolve().parents[1]


def test_both_embedded_models_are_listed_verified_with_metadata() -> None:
    found = {m.name: m for m in discover(models_dir=Path("/nonexistent"))}
    gemma, smol = found[GEMMA_NAME], found[SMOLLM_NAME]
    for m in (gemma, smol):
        assert m.error is None and m.path.is_file() and m.verified is True
        assert m.size == m.path.stat().st_size and len(m.sha256 or "") == 64
    assert gemma.chat_template is False and gemma.context_length == 32768
    assert smol.chat_template is True and smol.context_length == 8192


def test_models_json_cli(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "skillgrad_tui", "models", "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    for name in (GEMMA_NAME, SMOLLM_NAME):
        assert Path(rows[name]["path"]).is_file() and rows[name]["verified"] is True
        for key in ("size", "sha256", "chat_template", "context_length", "source"):
            assert key in rows[name]


def test_gguf_files_in_models_dir_and_config_are_listed(tmp_path: Path, smollm_path: Path) -> None:
    mdir = tmp_path / "models"
    mdir.mkdir()
    shutil.copyfile(smollm_path, mdir / "tiny.gguf")  # a symlink would be deduplicated with the original
    (mdir / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 8)
    found = {m.name: m for m in discover({"named": smollm_path}, models_dir=mdir)}
    assert found["tiny"].error is None and found["tiny"].chat_template
    assert found["named"].source == "config"
    assert found["broken"].error and "truncated" in found["broken"].error


def test_resolve_by_name_and_by_path(smollm_path: Path) -> None:
    assert resolve(SMOLLM_NAME).path == smollm_path
    assert resolve(str(smollm_path)).sha256 == resolve(SMOLLM_NAME).sha256
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        resolve("nope", models_dir=Path("/nonexistent"))


def test_bad_files_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        read_gguf_info(tmp_path / "x.gguf")
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04 zip, not gguf" * 4)
    with pytest.raises(ModelError, match="bad magic"):
        read_gguf_info(tmp_path / "x.gguf")
    out = subprocess.run([sys.executable, "-m", "skillgrad_tui", "eval", "skills/table-qa", "--limit", "1",
                          "--model", str(tmp_path / "x.gguf")], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "x.gguf" in out.stderr and "Traceback" not in out.stderr
