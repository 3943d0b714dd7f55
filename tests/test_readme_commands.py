"""Every command of the README's headless block runs as written (issue 11: "Every command of the
README works as written"), through the real CLI entry, with the scripted stand-in model.

The commands are parsed from README.md, so a command added there without a check here fails. They
run in order in a copy of the repository's layout (skills/table-qa, its bundled suite, and a
../shared/benchmarks/wikitablequestions made from that suite's WTQ files), so `RUN` is the run the
README's `optimize` line made and `preds.tsv` the file its `eval --predictions` line wrote.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skillgrad_tui.cli import main

REPO = Path(__file__).resolve().parents[1]


def readme_commands(text: str) -> list[list[str]]:
    """The argv of each `skillgrad ...` line of the README's shell blocks: continuations joined,
    comments and output redirections dropped, `[--json]` run both without and with the flag."""
    commands: list[list[str]] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if not line.startswith(("skillgrad ", ".venv/bin/skillgrad ")):
                continue
            line = line.split(" > ", 1)[0]
            argv = shlex.split(line)[1:]
            if "[--json]" in argv:
                plain = [a for a in argv if a != "[--json]"]
                commands += [plain, plain + ["--json"]]
            else:
                commands.append(argv)
    return commands


def test_the_readme_lists_the_commands_this_test_checks() -> None:
    names = [argv[0] for argv in readme_commands((REPO / "README.md").read_text(encoding="utf-8"))]
    assert names == ["models", "models", "eval", "eval", "eval", "grade", "optimize", "history", "rollback",
                     "recover", "watch", "export", "init", "completion", "--version"]


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """<tmp>/repo with skills/table-qa and skills/suites/table-qa, <tmp>/shared beside it; the
    working directory is <tmp>/repo, as in the README; every model is the scripted one."""
    from skillgrad_tui.core.engine import scripted_backend
    from skillgrad_tui.tui.scripted import respond

    repo = tmp_path / "repo"
    shutil.copytree(REPO / "skills" / "table-qa", repo / "skills" / "table-qa")
    shutil.copytree(REPO / "skills" / "suites" / "table-qa", repo / "skills" / "suites" / "table-qa")
    wtq = tmp_path / "shared" / "benchmarks" / "wikitablequestions"
    shutil.copytree(REPO / "skills" / "suites" / "table-qa" / "csv", wtq / "csv")
    (wtq / "data").mkdir(parents=True)
    shutil.copy(REPO / "skills" / "suites" / "table-qa" / "data" / "training.tsv",
                wtq / "data" / "pristine-unseen-tables.tsv")
    monkeypatch.chdir(repo)
    monkeypatch.setattr("skillgrad_tui.core.llm.factory.make_backend", lambda settings: scripted_backend(respond))

    # `watch` runs until Ctrl-C: here it evaluates once at the start and stops.
    from skillgrad_tui.core.watch_loop import WatchLoop

    run = WatchLoop.run
    monkeypatch.setattr(WatchLoop, "run", lambda self, **kw: run(self, initial=True, stop=lambda: True))
    return repo


def only(paths: list[Path]) -> Path:
    assert len(paths) == 1, paths
    return paths[0]


def test_every_readme_command_runs_as_written(layout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from skillgrad_tui.core.runlog import list_versions, replay

    skills = layout / "skills"
    evals = skills / ".skillgrad" / "evals"
    runs = skills / ".skillgrad" / "runs"
    found: dict[str, Any] = {}

    def eval_dirs() -> list[Path]:
        return sorted(evals.iterdir()) if evals.is_dir() else []

    def check_models(argv: list[str], out: str) -> None:
        if "--json" in argv:
            assert isinstance(json.loads(out), list)
        else:
            assert "Models" in out

    def check_eval(argv: list[str], out: str) -> None:
        run_dir = eval_dirs()[-1]  # evaluations go to evals/ beside runs/, through the run log
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        kinds = [e.kind for e in replay(run_dir)]
        assert kinds[0] == "run_started" and kinds[-1] == "validation_scored"
        assert kinds.count("task_finished") == summary["n"]
        assert list((run_dir / "trajectories").rglob("*.json"))
        if "--limit" in argv:
            assert summary["n"] == int(argv[argv.index("--limit") + 1])
        if "--suite" in argv:
            assert summary["split"] == "pristine-unseen-tables"
        if "--json" in argv:
            assert json.loads(out)["run_dir"] == str(run_dir)
        if "--predictions" in argv:
            lines = Path(argv[argv.index("--predictions") + 1]).read_text(encoding="utf-8").splitlines()
            assert len(lines) == summary["n"] == 20

    def check_grade(argv: list[str], out: str) -> None:
        assert re.match(r"accuracy \d\.\d{4} \(\d+/20 questions with a prediction", out), out

    def check_optimize(argv: list[str], out: str) -> None:
        run_dir = only(sorted(runs.iterdir()))  # the bundled suite was found, the run lives in runs/
        kinds = [e.kind for e in replay(run_dir)]
        assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
        assert 1 <= kinds.count("step_finished") <= 5
        found["run"], found["version"] = run_dir, list_versions(run_dir)[0].version

    def check_history(argv: list[str], out: str) -> None:
        assert f"run {found['run']}" in " ".join(out.split())

    def check_rollback(argv: list[str], out: str) -> None:
        assert out.startswith(f"restored version {found['version']} ")

    def check_recover(argv: list[str], out: str) -> None:
        assert out.startswith("skills/table-qa: ")

    def check_watch(argv: list[str], out: str) -> None:
        assert "watching" in out and "val " in out and len(eval_dirs()) == 4

    def check_export(argv: list[str], out: str) -> None:
        assert Path(argv[argv.index("-o") + 1]).read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype")

    def check_init(argv: list[str], out: str) -> None:
        assert (skills / "skillgrad.toml").is_file()

    def check_completion(argv: list[str], out: str) -> None:
        assert "skillgrad" in out and "complete" in out

    checks: dict[str, Callable[[list[str], str], None]] = {
        "models": check_models, "eval": check_eval, "grade": check_grade, "optimize": check_optimize,
        "history": check_history, "rollback": check_rollback, "recover": check_recover, "watch": check_watch,
        "export": check_export, "init": check_init, "completion": check_completion}

    for argv in readme_commands((REPO / "README.md").read_text(encoding="utf-8")):
        argv = [{"RUN": str(found.get("run")), "VERSION": str(found.get("version"))}.get(a, a) for a in argv]
        if argv == ["--version"]:
            with pytest.raises(SystemExit) as exit_:
                main(argv)
            assert exit_.value.code == 0 and capsys.readouterr().out.startswith("skillgrad ")
            continue
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 0, f"skillgrad {' '.join(argv)} -> {code}\n{captured.err}"
        checks[argv[0]](argv, captured.out)
    assert found, "the README's optimize line made no run"
