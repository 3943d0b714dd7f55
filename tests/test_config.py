"""skillgrad.toml: lookup order, validation with the key and file named, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from skillgrad_tui.config import Config, load_config, save_config, user_config_path
from skillgrad_tui.core.errors import ConfigError


def _skill(tmp_path: Path) -> Path:
    skill = tmp_path / "my-skill"
    skill.mkdir()
    return skill


def test_defaults_without_a_file(tmp_path: Path) -> None:
    cfg = load_config(_skill(tmp_path))
    assert cfg.source is None and cfg.get("model", "n_ctx") == 0 and cfg.get("cache", "enabled")


def test_file_beside_the_skill_wins_over_user_config(tmp_path: Path) -> None:
    skill = _skill(tmp_path)
    user = user_config_path()
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text("[model]\nn_ctx = 1024\n")
    try:
        assert load_config(skill).get("model", "n_ctx") == 1024
        (tmp_path / "skillgrad.toml").write_text("[model]\nn_ctx = 2048\n[models]\nbig = 'm/big.gguf'\n")
        cfg = load_config(skill)
        assert cfg.get("model", "n_ctx") == 2048 and cfg.source == tmp_path / "skillgrad.toml"
        assert cfg.models == {"big": tmp_path / "m" / "big.gguf"}
    finally:
        user.unlink()


@pytest.mark.parametrize("body, message", [
    ("[model]\nn_ctxx = 1\n", "unknown key 'model.n_ctxx'"),
    ("[modle]\n", "unknown section [modle]"),
    ("[model]\nn_ctx = 'big'\n", "'model.n_ctx' must be 0 or \"auto\""),
    ("[model]\nn_ctx = true\n", "got a boolean"),
    ("[model]\nn_ctx = 10\n", "or >= 256, got 10"),
    ("[optimize]\ngate = 'maybe'\n", "'optimize.gate' must be one of validation, all, ask"),
    ("[cache]\nenabled = 'yes'\n", "'cache.enabled' must be true or false"),
])
def test_bad_values_name_the_key_and_the_file(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "skillgrad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_config(explicit=path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_toml_syntax_error_has_the_line(tmp_path: Path) -> None:
    path = tmp_path / "skillgrad.toml"
    path.write_text("[model]\nn_ctx = 1\nthis is not toml\n")
    with pytest.raises(ConfigError) as info:
        load_config(explicit=path)
    assert info.value.line == 3 and f"{path}:3" in str(info.value)


def test_round_trip_through_tomli_w(tmp_path: Path) -> None:
    cfg = Config()
    cfg.set("model", "default", "smollm2-135m")
    cfg.set("optimize", "batch_size", 8)
    with pytest.raises(ConfigError):
        cfg.set("optimize", "batch_size", 0)
    path = tmp_path / "sub" / "skillgrad.toml"
    save_config(cfg, path)
    again = load_config(explicit=path)
    assert again.get("model", "default") == "smollm2-135m" and again.get("optimize", "batch_size") == 8
    assert not list(path.parent.glob(".skillgrad.toml.*"))
