"""The agent with a scripted backend (prompt shape, answer parsing, tools, spreadsheets) and the
forward pass + `skillgrad eval` with the real embedded model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from skillgrad_tui.core.agent import Agent, AgentSettings, extract_code, parse_answer, skill_block
from skillgrad_tui.core.errors import Cancelled
from skillgrad_tui.core.evaluate import evaluate, load_trajectory, trajectory_file
from skillgrad_tui.core.events import Event, TaskFinished
from skillgrad_tui.core.llm.base import CancelToken, CompletionRequest
from skillgrad_tui.core.llm.scripted import ScriptedBackend
from skillgrad_tui.core.skill import load_skill
from skillgrad_tui.core.suites import load_suite

REPO = Path(__file__).resolve().parents[1]
TABLE_SKILL = REPO / "skills" / "table-qa"
TABLE_SUITE = REPO / "skills" / "suites" / "table-qa"
XLSX_SUITE = REPO / "skills" / "suites" / "xlsx"


def _last_user(req: CompletionRequest) -> str:
    return [m.content for m in req.messages or () if m.role == "user"][-1]


@pytest.mark.parametrize("reply, items", [
    ("Italy", ["Italy"]),
    (" The answer is 17.", ["17"]),
    ("Answer: 4\n\nBecause row 3 ...", ["4"]),
    ("- Italy\n- France\n- Italy", ["Italy", "France"]),
    ("1. Lake Burdur\n2. Lake Van", ["Lake Burdur", "Lake Van"]),
    ('"Quoted name"', ["Quoted name"]),
    ("A Tribe Called Quest", ["A Tribe Called Quest"]),
    ("", []),
])
def test_parse_answer(reply: str, items: list[str]) -> None:
    assert parse_answer(reply) == items


def test_extract_code_takes_the_fenced_block() -> None:
    assert extract_code("Here:\n```python\nprint(1)\n```\nDone") == "print(1)"
    assert extract_code("print(2)") == "print(2)"


def test_inline_prompt_puts_the_skill_first_and_the_table_after() -> None:
    skill = load_skill(TABLE_SKILL)
    task = load_suite(TABLE_SUITE).tasks[0]
    backend = ScriptedBackend(lambda req: "2004")
    traj = Agent(backend, AgentSettings(table_rows=5)).run(skill, task, seed=3)
    req = backend.calls[0]
    assert req.messages[0].role == "system" and req.messages[0].content.startswith(skill_block(skill))
    assert skill.body.strip() in req.messages[0].content
    user = _last_user(req)
    assert task.question in user and "Table (" in user
    assert "omitted" in user  # 5-row budget on a longer table: the prompt says rows were cut
    assert req.messages[-1].role == "assistant" and req.seed == 3
    assert traj.answer == ["2004"] and traj.turns[0].kind == "prompt" and traj.turns[1].kind == "model"


def test_consecutive_tasks_share_the_skill_prefix() -> None:
    skill = load_skill(TABLE_SKILL)
    tasks = load_suite(TABLE_SUITE).tasks[:3]
    backend = ScriptedBackend(lambda req: "x")
    agent = Agent(backend)
    for t in tasks:
        agent.run(skill, t, seed=0)
    firsts = {c.messages[0].content for c in backend.calls}
    assert len(firsts) == 1


def test_tool_mode_activates_the_skill_reads_a_reference_and_answers(tmp_path: Path) -> None:
    root = tmp_path / "table-qa"
    root.mkdir()
    (root / "SKILL.md").write_text((TABLE_SKILL / "SKILL.md").read_text() +
                                   "\nRead references/dates.md when the question is about dates.\n")
    (root / "references").mkdir()
    (root / "references" / "dates.md").write_text("# Dates\nCompare years first.\n")
    skill = load_skill(root)
    script = iter([
        json.dumps({"tool": "activate_skill", "argument": "table-qa"}),
        json.dumps({"tool": "read_reference", "argument": "references/dates.md"}),
        json.dumps({"tool": "run_python", "argument": "print(6 * 7)"}),
        json.dumps({"tool": "answer", "argument": "42"}),
    ])
    backend = ScriptedBackend(lambda req: next(script))
    task = load_suite(TABLE_SUITE).tasks[1]
    traj = Agent(backend, AgentSettings(mode="tools", max_turns=5)).run(skill, task, seed=0)
    results = [t.content for t in traj.turns if t.kind == "tool_result"]
    assert "Answering questions over a table" in results[0]
    assert "Compare years first." in results[1]
    assert "42" in results[2]
    assert traj.answer == ["42"] and traj.error is None
    assert skill.body not in backend.calls[0].messages[0].content  # only L1 up front


def test_spreadsheet_task_runs_the_script_in_the_sandbox_and_retries_on_error(tmp_path: Path) -> None:
    suite = load_suite(XLSX_SUITE)
    task = suite.by_id()["54242"]
    original = task.context_files[0].read_bytes()
    replies = iter([
        "```python\nraise ValueError('first try fails')\n```",
        "```python\nimport openpyxl, glob\nwb = openpyxl.load_workbook(glob.glob('*.xlsx')[0])\n"
        "wb.save('output.xlsx')\nprint('saved')\n```",
    ])
    backend = ScriptedBackend(lambda req: next(replies))
    traj = Agent(backend).run(None, task, seed=0, out_dir=tmp_path)
    assert traj.error is None and Path(traj.answer).is_file()
    assert Path(traj.answer).parent == tmp_path
    assert "first try fails" in _last_user(backend.calls[1])  # the error went back to the model
    assert task.context_files[0].read_bytes() == original  # the user's input is untouched
    from skillgrad_tui.core.sandbox import choose_mode

    assert traj.sandbox is not None and traj.sandbox.startswith(choose_mode() + ":")  # which mode ran
    assert "SKILL_SCRIPTS" not in _last_user(backend.calls[0])  # no scripts, no word about them


def test_spreadsheet_scripts_can_import_the_skills_scripts_and_nothing_else(tmp_path: Path) -> None:
    """The skill's scripts/ are the one thing of the user's a sandboxed script can read."""
    skill_root = tmp_path / "xlsx"
    (skill_root / "scripts").mkdir(parents=True)
    (skill_root / "SKILL.md").write_text("---\nname: xlsx\ndescription: Edit workbooks.\n---\n"
                                         "# Xlsx\nUse scripts/cells.py to fill cells.\n")
    (skill_root / "scripts" / "cells.py").write_text("def fill(ws):\n    ws['A1'] = 'filled'\n")
    skill = load_skill(skill_root)
    task = load_suite(XLSX_SUITE).by_id()["54242"]
    code = ("```python\nimport glob, openpyxl, cells\nwb = openpyxl.load_workbook(glob.glob('*.xlsx')[0])\n"
            "cells.fill(wb.active)\nwb.save('output.xlsx')\n"
            f"print(open({str(skill_root / 'SKILL.md')!r}).read())\n```")
    backend = ScriptedBackend(lambda req: code)
    traj = Agent(backend, AgentSettings(max_turns=1)).run(skill, task, seed=0, out_dir=tmp_path / "out")
    assert "SKILL_SCRIPTS" in _last_user(backend.calls[0])
    from skillgrad_tui.core.sandbox import choose_mode

    if choose_mode() == "hook":
        pytest.skip("no OS confinement here: reads are not confined in hook mode")
    assert traj.answer is None  # reading SKILL.md failed, so the run failed after the import worked
    report = [t.content for t in traj.turns if t.kind == "tool_result"][0]
    assert "ModuleNotFoundError" not in report  # the import of the skill's script worked...
    assert ("FileNotFoundError" in report or "PermissionError" in report) and "SKILL.md" in report  # ...the read not
    assert (skill_root / "scripts" / "cells.py").read_text().startswith("def fill")


def test_evaluate_emits_events_saves_trajectories_and_reuses_done(tmp_path: Path) -> None:
    tasks = load_suite(TABLE_SUITE).tasks[:3]
    answers = {t.question: t.expected[0] for t in tasks[:2]}
    backend = ScriptedBackend(lambda req: next((a for q, a in answers.items() if q in _last_user(req)), "nope"))
    events: list[Event] = []
    result = evaluate(Agent(backend), None, tasks, seed=0, sink=events.append, traj_dir=tmp_path)
    assert (result.passed, result.n) == (2, 3) and abs(result.accuracy - 2 / 3) < 1e-9
    finished = [e for e in events if isinstance(e, TaskFinished)]
    assert [e.passed for e in finished] == [True, True, False]
    saved = load_trajectory(trajectory_file(tmp_path, tasks[0].id))
    assert saved is not None and saved.verdict is not None and saved.verdict.passed
    calls = len(backend.calls)
    again = evaluate(Agent(backend), None, tasks, seed=0, done={tasks[0].id: saved})
    assert len(backend.calls) == calls + 2 and again.passed == 2


def test_cancel_between_tasks_raises() -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        evaluate(Agent(ScriptedBackend(lambda r: "x")), None, load_suite(TABLE_SUITE).tasks[:2], seed=0,
                 cancel=token)


@pytest.mark.model
def test_eval_cli_on_five_wtq_tasks_with_the_real_model_then_from_cache(wtq_dir: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "skillgrad_tui", "eval", str(TABLE_SKILL), "--suite", str(wtq_dir),
           "--split", "pristine-unseen-tables", "--limit", "5", "--json", "--run-dir", str(tmp_path / "a")]
    env_cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    import os

    env = {**os.environ, **env_cache}
    # The embedded model lives in the real user cache; point the config at it explicitly.
    from skillgrad_tui.core.llm.models import gemma_path

    cfg = tmp_path / "skillgrad.toml"
    cfg.write_text(f'[model]\ndefault = "{gemma_path()[0]}"\nn_ctx = 4096\n')
    cold = subprocess.run(cmd + ["--config", str(cfg)], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=900)
    assert cold.returncode == 0, cold.stderr
    a = json.loads(cold.stdout)
    assert a["n"] == 5 and len(a["per_task"]) == 5 and 0.0 <= a["accuracy"] <= 1.0
    assert a["prompt_tokens"] > 0 and a["completion_tokens"] > 0
    assert {"id", "passed", "answer", "expected"} <= set(a["per_task"][0])
    # the eval run log keeps trajectories by phase and split, as every run does
    assert len(list((tmp_path / "a" / "trajectories" / "eval" / "pristine-unseen-tables").glob("*.json"))) == 5
    cmd[-1] = str(tmp_path / "b")
    warm = subprocess.run(cmd + ["--config", str(cfg)], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=900)
    b = json.loads(warm.stdout)
    assert [t["answer"] for t in b["per_task"]] == [t["answer"] for t in a["per_task"]]
    assert b["seconds"] < a["seconds"] / 5  # every response came from the cache
