"""CLI conventions (issue 13 item 4): --version, a quiet exit on a closed pipe, help for every
option, `init`, shell completion, predictions from eval that grade reads, Ctrl-C in watch = 130."""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest

from skillgrad_tui.cli import build_parser, main
from skillgrad_tui.config import SCHEMA, Config, load_config, validate
from skillgrad_tui.core.llm.base import CompletionRequest
from skillgrad_tui.core.llm.scripted import ScriptedBackend

REPO = Path(__file__).resolve().parents[1]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from skillgrad_tui import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"skillgrad {__version__}"


def test_every_option_of_every_command_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {a.option_strings or a.dest}" for name, p in sub.choices.items() for a in p._actions
               if not isinstance(a, argparse._HelpAction) and not a.help]
    assert missing == []


@pytest.mark.parametrize("argv", [["models", "--json"], ["completion", "bash"]])
def test_a_closed_pipe_ends_quietly(argv: list[str]) -> None:
    # The reader is gone before the first write (`... | head -c 0`): no BrokenPipeError traceback.
    proc = subprocess.Popen([sys.executable, "-m", "skillgrad_tui", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_init_writes_a_commented_config_that_changes_nothing(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    skill = tmp_path / "skills" / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", skill)
    assert main(["init", str(skill)]) == 0
    written = tmp_path / "skills" / "skillgrad.toml"
    assert str(written) in capsys.readouterr().out
    config = load_config(skill)  # found where it was written, and every key at its default
    assert config.source == written and config.values == {s: {} for s in SCHEMA}
    text = written.read_text(encoding="utf-8")
    names = "|".join(k for keys in SCHEMA.values() for k in keys)
    live = tomllib.loads(re.sub(rf"(?m)^# ((?:{names}) = )", r"\1", text))  # uncommented: valid, defaults
    values = validate(live, written)
    assert values["optimize"]["steps"] == Config().get("optimize", "steps")
    assert sum(len(v) for v in values.values()) == sum(len(v) for v in SCHEMA.values())
    assert main(["init", str(skill)]) == 2 and "exists already" in capsys.readouterr().err
    assert main(["init", str(skill), "--force"]) == 0
    assert main(["init", str(tmp_path)]) == 2 and "no SKILL.md" in capsys.readouterr().err


def test_completion_scripts_know_the_commands_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    bash = capsys.readouterr().out
    assert "optimize" in bash and "--n-ctx" in bash and "--predictions" in bash
    assert main(["completion", "zsh"]) == 0 and "#compdef skillgrad" in capsys.readouterr().out
    if shutil.which("bash"):  # the script is valid bash
        check = subprocess.run(["bash", "-n"], input=bash, text=True, capture_output=True)
        assert check.returncode == 0, check.stderr


def test_eval_predictions_file_is_what_grade_reads(wtq_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    split = "pristine-unseen-tables"
    from skillgrad_tui.core.suites import load_suite

    tasks = load_suite(wtq_dir, split).tasks[:3]
    first = tasks[0]

    def answer(req: CompletionRequest) -> str:  # right for the first question only
        assert req.messages is not None
        text = req.messages[-2].content if len(req.messages) > 1 else ""
        return first.expected[0] if first.question in text else "no idea"

    monkeypatch.setattr("skillgrad_tui.core.llm.factory.make_backend",
                        lambda settings: ScriptedBackend(answer, model_id="scripted"))
    predictions = tmp_path / "predictions.tsv"
    assert main(["eval", str(REPO / "skills" / "table-qa"), "--suite", str(wtq_dir), "--split", split,
                 "--limit", "3", "--predictions", str(predictions), "--run-dir", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    lines = predictions.read_text(encoding="utf-8").splitlines()
    assert [ln.split("\t")[0] for ln in lines] == [t.id for t in tasks]
    assert main(["grade", "--suite", str(wtq_dir), "--split", split, "--predictions", str(predictions)]) == 0
    out = capsys.readouterr().out.splitlines()
    # The official figure first (questions with a prediction), then ours over the whole split.
    assert out[0].startswith("accuracy 0.3333 (1/3 questions with a prediction")
    assert out[1].startswith("over the whole split: 1/") and "without a prediction counted wrong" in out[1]
    assert main(["grade", "--suite", str(wtq_dir), "--split", split, "--predictions", str(predictions),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["official_accuracy"] == pytest.approx(1 / 3) and report["predicted"] == 3


def test_ctrl_c_in_watch_exits_130(tmp_path: Path) -> None:
    from skillgrad_tui.tui.scripted import scripted_backend_factory
    from skillgrad_tui.tui.session import Session
    from skillgrad_tui.core.watch_loop import WatchLoop

    suite = REPO / "skills" / "suites" / "table-qa"
    skill = tmp_path / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", skill)
    loop = WatchLoop(Session(skill, suite, Config(), scripted_backend_factory()), out=io.StringIO())
    calls = threading.Event()

    def interrupted() -> bool:  # what Ctrl-C does to the loop's wait
        calls.set()
        raise KeyboardInterrupt

    assert loop.run(initial=False, stop=interrupted) == 130 and calls.is_set()
    assert loop.run(initial=False, stop=lambda: True) == 0  # asked to stop: a normal end


def test_tui_refuses_a_folder_that_is_not_a_skill_and_a_missing_terminal(tmp_path: Path) -> None:
    # No TTY here (pytest captures): a clear one-line error, not escape codes and a hang.
    run = [sys.executable, "-m", "skillgrad_tui"]
    lonely = subprocess.run(run + ["tui", str(tmp_path)], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert lonely.returncode == 2 and "not a skill folder (no SKILL.md)" in lonely.stderr
    piped = subprocess.run(run + ["tui", str(REPO / "skills" / "table-qa")], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
    assert piped.returncode == 2 and "needs a terminal" in piped.stderr and "\x1b[" not in piped.stdout
