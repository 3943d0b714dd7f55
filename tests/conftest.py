"""Shared fixtures: the real embedded models, the shared benchmark data, an isolated config dir."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def _isolated_user_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # A developer's own ~/.config/skillgrad/skillgrad.toml must not change test outcomes.
    old = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg-config"))
    yield
    if old is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = old


@pytest.fixture(autouse=True, scope="session")
def _fresh_response_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Model tests must run the model: a developer's warm response cache would answer them, and a
    # test that passes from cache here could fail on a fresh CI machine. Subprocesses inherit it.
    from skillgrad_tui.core.llm.cache import CACHE_ENV

    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("response-cache") / "responses.sqlite3")
    yield
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "benchmarks").is_dir():
        pytest.skip(f"shared benchmark data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def wtq_dir(shared_dir: Path) -> Path:
    return shared_dir / "benchmarks" / "wikitablequestions"


@pytest.fixture(scope="session")
def sheets_dir(shared_dir: Path) -> Path:
    return shared_dir / "benchmarks" / "spreadsheetbench"


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    from skillgrad_tui.core.llm.models import gemma_path as locate

    return locate()[0]


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    from skillgrad_tui.core.llm.models import smollm_path as locate

    return locate()[0]


@pytest.fixture(scope="session")
def gemma_backend(gemma_path: Path) -> Iterator[object]:
    """One loaded Gemma shared by the model tests (loading is cheap, but not free on 2 cores)."""
    from skillgrad_tui.core.llm.llama_backend import LlamaBackend

    backend = LlamaBackend(gemma_path, model_id="test-gemma", n_ctx=2048)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def smollm_backend(smollm_path: Path) -> Iterator[object]:
    from skillgrad_tui.core.llm.llama_backend import LlamaBackend

    backend = LlamaBackend(smollm_path, model_id="test-smollm", n_ctx=2048)
    yield backend
    backend.close()


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio: the app's pilot tests use it


@pytest.fixture()
def skill_dir(tmp_path: Path) -> Path:
    """A copy of skills/table-qa under tmp/skills/, so that its bundled suite is found beside it
    through skills/suites/ (the tests that need the suite point at the repository's)."""
    suite = REPO / "skills" / "suites" / "table-qa"
    if not (suite / "data").is_dir():
        pytest.skip(f"sample suite missing at {suite}")
    dst = tmp_path / "skills" / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", dst)
    return dst
