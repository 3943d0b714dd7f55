"""`skillgrad watch` (headless): one line per evaluation, debounced edits, Ctrl-C stops."""

from __future__ import annotations

import argparse
import io
import shutil
import threading
import time
from pathlib import Path

import pytest

from skillgrad_tui.config import Config
from skillgrad_tui.tui.scripted import scripted_backend_factory
from skillgrad_tui.tui.session import Session, default_suite_path
from skillgrad_tui.commands.watch_cmd import add_watch_arguments, watch_command
from skillgrad_tui.core.watch_loop import WatchLoop

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "skills" / "suites" / "table-qa"


@pytest.fixture()
def skill_dir(tmp_path: Path) -> Path:
    if not (SUITE / "data").is_dir():
        pytest.skip(f"sample suite missing at {SUITE}")
    dst = tmp_path / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", dst)
    return dst


def wait(cond: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_default_suite_resolution(tmp_path: Path) -> None:
    skill = REPO / "skills" / "table-qa"
    assert default_suite_path(skill, None, Config()) == SUITE  # <parent>/suites/<name>/
    explicit = tmp_path / "mine"
    assert default_suite_path(skill, explicit, Config()) == explicit
    cfg_file = tmp_path / "skillgrad.toml"
    cfg = Config(values={"suite": {"path": "suites/x"}}, source=cfg_file)
    assert default_suite_path(skill, None, cfg) == tmp_path / "suites" / "x"  # relative to the toml
    assert default_suite_path(tmp_path / "lonely", None, Config()) is None


def test_watch_loop_reevaluates_once_per_edit(skill_dir: Path) -> None:
    out = io.StringIO()
    session = Session(skill_dir, SUITE, Config(), scripted_backend_factory())
    loop = WatchLoop(session, debounce_s=0.15, out=out)
    stop = threading.Event()
    worker = threading.Thread(target=loop.run, kwargs={"stop": stop.is_set}, daemon=True)
    worker.start()
    try:
        wait(lambda: loop.evaluations == 1)  # the evaluation at start
        time.sleep(0.3)
        (skill_dir / ".SKILL.md.swp").write_bytes(b"\0")  # an editor's swap file: ignored
        time.sleep(0.6)
        assert loop.evaluations == 1
        md = skill_dir / "SKILL.md"
        for i in range(3):  # a burst of saves
            md.write_text(md.read_text() + f"\n- Note {i}: check the header row.\n")
            time.sleep(0.03)
        wait(lambda: loop.evaluations == 2)
        time.sleep(0.6)
        assert loop.evaluations == 2
        md.write_text("broken: no front matter\n")
        wait(lambda: "does not load" in out.getvalue())
        assert loop.evaluations == 2
    finally:
        stop.set()
        worker.join(timeout=20)
    lines = out.getvalue().splitlines()
    scored = [ln for ln in lines if " val " in ln and "/10 = " in ln]
    assert len(scored) == 2, lines
    assert "[start]" in scored[0] and "SKILL.md" in scored[1]
    assert "(+0.000)" in scored[1] or "(-" in scored[1] or "(+" in scored[1]
    assert (skill_dir.parent / ".skillgrad" / "evals").is_dir()  # trajectories kept, beside the skill


def test_ctrl_c_stops_the_watch_command(skill_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_watch_arguments(parser)
    args = parser.parse_args([str(skill_dir), "--suite", str(SUITE), "--debounce", "0.1"])
    calls = {"n": 0}

    def factory(role: str) -> object:
        calls["n"] += 1
        if calls["n"] > 1:
            raise AssertionError("one backend for both roles")
        base = scripted_backend_factory()(role)

        class Interrupting:  # the user presses Ctrl-C during the first evaluation
            model_id, n_ctx = base.model_id, base.n_ctx
            seen = 0

            def complete(self, request, cancel=None):  # type: ignore[no-untyped-def]
                Interrupting.seen += 1
                if Interrupting.seen == 3:
                    raise KeyboardInterrupt
                return base.complete(request, cancel)

            def count_tokens(self, text: str) -> int:
                return base.count_tokens(text)

            def close(self) -> None:
                pass

        return Interrupting()

    assert watch_command(args, backend_factory=factory) == 130  # type: ignore[arg-type]  # as a shell expects after SIGINT
    out = capsys.readouterr().out
    assert "watching" in out and out.rstrip().endswith("stopped")
