"""Nothing of the user's is lost or touched without a word: rollback keeps what the version lacks,
an interrupted write is finished by a named command, and the small defects of issue 14."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_atomic import NEW, OLD, kill, read_tree, run_child_until_paused, write_tree
from test_optimizer import FIX, SKILL_MD, Env, env, make_opt_model, parse, task_model  # noqa: F401 (fixture)

from skillgrad_tui.core import atomic
from skillgrad_tui.core.llm.scripted import ScriptedBackend
from skillgrad_tui.core.skill import Edit, Patch, apply_patch, load_skill


PATCH_OLD = "- Do not add units."


class Crash(Exception):
    pass


def cli(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> int:
    """`skillgrad ARGV` with the scripted models in place of the real ones."""
    from skillgrad_tui.cli import main
    from skillgrad_tui.commands import optimize as cmd

    def fake_backend(settings: Any) -> Any:
        opt = make_opt_model(FIX)
        return ScriptedBackend(lambda r: opt(r) if r.json_schema else task_model(r), model_id="scripted")

    monkeypatch.setattr(cmd, "make_backend", fake_backend)
    monkeypatch.setattr("skillgrad_tui.core.llm.factory.make_backend", fake_backend)
    return main(argv)


def crash_after_commit_point(skill: Path, edit: Edit | None = None) -> None:
    """A patch that dies between its journal (the commit point) and its renames: the disk is left
    as a SIGKILL there leaves it."""
    def hook(stage: str, count: int) -> None:
        if stage == "journal_written":
            raise Crash()

    atomic.fault_hook = hook
    try:
        with pytest.raises(Crash):
            apply_patch(skill, Patch([edit or Edit("L2", "SKILL.md", PATCH_OLD, PATCH_OLD + "\n- Added.")]))
    finally:
        atomic.fault_hook = None


# ------------------------------------------------------------------------------ 2. rollback keeps


def test_rollback_moves_files_the_version_lacks_into_the_run_dir(env: Env, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = env.tmp / "run"
    assert cli(monkeypatch, ["optimize", str(env.skill), "--suite", str(env.suite.root), "--seed", str(env.seed),
                             "--run-dir", str(run_dir), "--gate", "all", "--steps", "1"]) == 0
    capsys.readouterr()
    (env.skill / "references").mkdir()
    (env.skill / "references" / "notes.md").write_text("my notes\n")  # added after the run started
    (env.skill / "assets" / "mine.bin").write_bytes(b"\x00mine")
    assert cli(monkeypatch, ["rollback", str(run_dir), "1"]) == 0
    out = capsys.readouterr().out
    assert not (env.skill / "references" / "notes.md").exists()  # the skill is version 1 again...
    kept = next((run_dir / "set-aside").iterdir())
    assert (kept / "references" / "notes.md").read_text() == "my notes\n"  # ...and nothing is lost
    assert (kept / "assets" / "mine.bin").read_bytes() == b"\x00mine"
    assert "references/notes.md" in out and "assets/mine.bin" in out and str(kept) in out
    versions = json.loads((run_dir / "versions.json").read_text())
    assert load_skill(env.skill).hash == versions[1]["skill_hash"]


# ----------------------------------------------------------------------------------- 5. recover


@pytest.mark.parametrize(("stage", "count", "said", "result"), [
    ("journal_written", 0, "finished an interrupted write", NEW),  # past the commit point
    ("temp_written", 2, "undid an unfinished write", OLD),  # before it
])
def test_recover_finishes_or_undoes_a_killed_write_and_says_which(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        stage: str, count: int, said: str, result: dict[str, bytes]) -> None:
    root = tmp_path / "demo"
    write_tree(root, OLD)
    kill(run_child_until_paused(root, stage, count, restore=False))  # a real process, SIGKILLed mid-write
    assert cli(monkeypatch, ["recover", str(root)]) == 0
    out = capsys.readouterr().out
    assert said in out and ("new version" if result is NEW else "as it was before") in out
    assert out.strip().count("\n") == 0
    assert read_tree(root) == result
    assert cli(monkeypatch, ["recover", str(root)]) == 0
    assert "nothing to recover" in capsys.readouterr().out


def test_eval_and_new_runs_name_the_recover_command_and_apply_nothing(env: Env, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    crash_after_commit_point(env.skill)
    before = (env.skill / "SKILL.md").read_bytes()
    assert cli(monkeypatch, ["eval", str(env.skill), "--suite", str(env.suite.root)]) == 2
    err = capsys.readouterr().err
    assert f"skillgrad recover {env.skill}" in err and "skill.recover" not in err
    assert err.strip().count("\n") == 0
    assert (env.skill / "SKILL.md").read_bytes() == before  # not applied behind the user's back
    assert cli(monkeypatch, ["optimize", str(env.skill), "--suite", str(env.suite.root), "--seed", str(env.seed),
                             "--run-dir", str(env.tmp / "r")]) == 2
    assert f"skillgrad recover {env.skill}" in capsys.readouterr().err


def test_watch_names_the_recover_command(env: Env) -> None:
    import io

    from skillgrad_tui.config import Config
    from skillgrad_tui.tui.session import Session
    from skillgrad_tui.core.watch_loop import WatchLoop

    crash_after_commit_point(env.skill)
    out = io.StringIO()
    session = Session(env.skill, env.suite.root, Config(),
                      lambda role: ScriptedBackend(task_model, model_id=role))
    WatchLoop(session, out=out).evaluate("start")
    assert "does not load" in out.getvalue() and f"skillgrad recover {env.skill}" in out.getvalue()


# ------------------------------------------------------------------------------- 6. small defects


def test_batch_size_zero_is_an_error(env: Env, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--batch-size", "--steps", "--epochs"):
        with pytest.raises(SystemExit) as info:
            cli(monkeypatch, ["optimize", str(env.skill), "--suite", str(env.suite.root), flag, "0"])
        assert info.value.code == 2
        assert f"argument {flag}: must be at least 1, got 0" in capsys.readouterr().err
    assert not (env.skill.parent / ".skillgrad").exists()


def test_eval_creates_nothing_beside_a_skill_that_does_not_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    env = Env(tmp_path)
    (env.skill / "SKILL.md").write_text("no front matter\n")
    assert cli(monkeypatch, ["eval", str(env.skill), "--suite", str(env.suite.root)]) == 2
    assert "SKILL.md:1" in capsys.readouterr().err
    assert sorted(p.name for p in env.skill.parent.iterdir()) == ["tiny-qa"]  # no .skillgrad/journal/*.lock


def test_a_budget_stop_on_resume_says_which_time_counts(env: Env, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from skillgrad_tui.commands.optimize import add_parsers

    with pytest.raises(SystemExit):
        parse(["optimize", "--help"], add_parsers)
    help_text = " ".join(capsys.readouterr().out.split())
    assert "earlier sessions' time counts too" in help_text and "earlier sessions' tokens count too" in help_text
    res, _ = env.run(FIX, gate="validation", token_budget=300)
    state = json.loads((res.run_dir / "state.json").read_text())
    state["seconds"] = 20.0  # as if the first session had taken 20 s
    (res.run_dir / "state.json").write_text(json.dumps(state))
    assert cli(monkeypatch, ["optimize", "--resume", str(res.run_dir), "--time-budget", "10"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "stopped by the time budget: 10 s for the whole run" in out and "20.0 s of it before this session" in out
    assert f"continue with: skillgrad optimize --resume {res.run_dir}" in out
