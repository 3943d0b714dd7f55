"""The candidate pool end to end with scripted models: each step's candidates go through the
minibatch and the noise-aware gate with the decisions their effect on the tasks calls for; the
lineage is in the run log and `skillgrad history`; the Pareto frontier and parent selection; a
run killed in the middle of candidate scoring resumes to the same result.

The task model answers right only when the skill has the rule its question needs (as in
test_optimizer.py); one extra rule fixes arithmetic but breaks the easy questions, so a candidate
can improve the minibatch (made of failures) and still lose on validation.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from skillgrad_tui.core import runlog
from skillgrad_tui.core.edit_menu import scripted_answer
from skillgrad_tui.core.events import Event
from skillgrad_tui.core.gate import DROPPED, SIGNIFICANT, TIE_LONGER, WITHIN_NOISE
from skillgrad_tui.core.llm.base import CompletionRequest
from skillgrad_tui.core.llm.scripted import ScriptedBackend
from skillgrad_tui.core.optimizer import OptimizeOptions, RunResult, optimize
from skillgrad_tui.core.pool import (MINIBATCH_NOT_IMPROVED, NOT_CHOSEN, pareto_frontier, pick_parent, rebase_edits,
                                     run_sentence, step_sentence)
from skillgrad_tui.core.runlog import list_versions, replay
from skillgrad_tui.core.skill import apply_edits_in_memory, load_skill
from skillgrad_tui.core.suites import load_suite
from skillgrad_tui.core.suites.splits import split_tasks
from test_optimizer import Env as BaseEnv  # the same tiny skill folder

ARITH = [(f"What is {a} plus {b}?", str(a + b)) for a, b in [(2, 3), (4, 4), (7, 1), (6, 3), (5, 5), (9, 2), (3, 3),
                                                              (8, 4), (1, 6), (2, 9)]]
EASY = [(f"Type the word {w}.", w) for w in ("yes", "no", "ok", "go", "up", "on", "in", "at", "by", "so")]
ANSWERS = dict(ARITH + EASY)
FIX = "Always double-check every sum before answering."
BREAK = "Repeat short words twice."
POISON = "Answer in full sentences."


def task_model(req: CompletionRequest) -> str:
    assert req.messages is not None
    system = req.messages[0].content
    question = [m.content for m in req.messages if "Question: " in m.content][-1].split("Question: ")[1]
    question = question.splitlines()[0].strip()
    answer = ANSWERS[question]
    if POISON in system:
        return f"The answer is {answer}, I think."
    if " plus " in question:
        return answer if FIX in system else str(int(answer) + 1)
    return answer + answer if BREAK in system else answer


def opt_model(texts: list[str]) -> Any:
    """Diagnoser: the computed class. Patcher: one answer per text, added under Common pitfalls."""

    def respond(req: CompletionRequest) -> str:
        assert req.json_schema is not None
        props = req.json_schema["properties"]
        if "label" in props:
            return json.dumps({"label": props["label"]["enum"][0], "anchor": "Common pitfalls",
                               "diagnosis": "No rule for sums."})
        if "what_helped" in props:
            return json.dumps({"what_helped": props["what_helped"]["enum"][0], "robust": True})
        return json.dumps({"candidates": [scripted_answer(req.json_schema, "Common pitfalls", t, "w")
                                          for t in texts]})

    return respond


def write_suite(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"a{i}", "question": q, "answer": a, "evaluator": "exact"} for i, (q, a) in enumerate(ARITH)]
    rows += [{"id": f"e{i}", "question": q, "answer": a, "evaluator": "exact"} for i, (q, a) in enumerate(EASY)]
    path = folder / "tasks.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def pick_seed(tasks: list[Any]) -> int:
    """A split seed with arithmetic to train on and both kinds of task in validation."""
    for seed in range(200):
        s = split_tasks(tasks, seed)
        arith_val = sum(t.id.startswith("a") for t in s.val)
        easy_val = len(s.val) - arith_val
        if sum(t.id.startswith("a") for t in s.train) >= 2 and arith_val >= 2 and easy_val >= 2:
            return seed
    raise AssertionError("no usable seed")


class Env(BaseEnv):
    """test_optimizer's skill folder, with this module's suite and split seed."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.suite = load_suite(write_suite(tmp / "suite"))
        self.seed = pick_seed(self.suite.tasks)

    @classmethod
    def existing(cls, tmp: Path) -> "Env":
        """The environment a killed run left, untouched (for the resume)."""
        env = cls.__new__(cls)
        env.tmp, env.skill = tmp, tmp / "skills" / "tiny-qa"
        env.suite = load_suite(tmp / "suite" / "tasks.jsonl")
        env.seed = pick_seed(env.suite.tasks)
        return env

    def run(self, texts: Any, **kw: Any) -> tuple[RunResult, list[Event]]:  # type: ignore[override]
        events: list[Event] = []
        options = OptimizeOptions(**{"seed": self.seed, "batch_size": 4, "run_dir": self.tmp / "run",
                                     "candidates": 3, "steps": 1, **kw})
        res = optimize(self.skill, self.suite, ScriptedBackend(task_model, model_id="task"),
                       ScriptedBackend(opt_model(texts), model_id="opt"), options, sink=events.append)
        return res, events


def of(events: list[Event], kind: str) -> list[Any]:
    return [e for e in events if e.kind == kind]


def test_candidates_go_through_pool_minibatch_and_gate_with_the_expected_decisions(tmp_path: Path) -> None:
    env = Env(tmp_path)
    res, events = env.run([POISON, FIX, f"{FIX} {BREAK}"])
    proposed = {e.version: e for e in of(events, "candidate_proposed")}
    assert len(proposed) == 3 and all(e.parent == 0 and e.step == 1 for e in proposed.values())
    by_rule = {}
    for v, e in proposed.items():
        text = e.edits[0]["new"]
        by_rule["break" if BREAK in text else "poison" if POISON in text else "fix"] = v
    assert proposed[by_rule["poison"]].origin == "each pattern's simplest edit"  # the smallest change
    mb = {e.version: e for e in of(events, "candidate_scored") if e.phase == "minibatch"}
    assert mb[by_rule["poison"]].improved is False and mb[by_rule["poison"]].score == 0.0
    assert mb[by_rule["fix"]].improved and mb[by_rule["break"]].improved and mb[by_rule["fix"]].score == 1.0
    validated = {e.version for e in of(events, "candidate_scored") if e.phase == "val"}
    assert validated == {by_rule["fix"], by_rule["break"]}  # only minibatch improvers are validated
    decided = {e.version: e for e in of(events, "candidate_decided")}
    assert decided[by_rule["poison"]].reason == MINIBATCH_NOT_IMPROVED and not decided[by_rule["poison"]].kept
    assert decided[by_rule["fix"]].kept and decided[by_rule["fix"]].reason == SIGNIFICANT
    fix = decided[by_rule["fix"]]
    assert fix.gain > 0 and fix.se > 0 and "± " in fix.sentence and fix.n == len(split_tasks(env.suite.tasks,
                                                                                           env.seed).val)
    brk = decided[by_rule["break"]]
    assert not brk.kept and brk.reason in (WITHIN_NOISE, DROPPED, TIE_LONGER, NOT_CHOSEN)
    assert brk.gain is not None and brk.gain < fix.gain
    # The user's skill is the fix; the lineage is in the versions and in history.
    assert FIX in load_skill(env.skill).body and BREAK not in load_skill(env.skill).body
    versions = {v.version: v for v in list_versions(res.run_dir)}
    assert versions[by_rule["fix"]].kept and "kept" in versions[by_rule["fix"]].decision
    assert versions[by_rule["poison"]].minibatch == 0.0 and versions[by_rule["poison"]].val_score is None
    assert not versions[by_rule["break"]].kept and versions[by_rule["break"]].val_score is not None
    (account,) = of(events, "step_account")
    a = account.account
    assert (a["proposed"], a["applied"], a["passed_checks"], a["candidates"]) == (3, 3, 3, 3)
    assert (a["scored_minibatch"], a["improved_minibatch"], a["validated"], a["accepted"]) == (3, 2, 2, 1)
    assert a["rejected"][MINIBATCH_NOT_IMPROVED] == 1 and sum(a["rejected"].values()) == 2
    assert account.summary.startswith(f"kept version {by_rule['fix']}")
    assert res.changed and res.summary.startswith("changed: 1 of 1 step(s)")


def test_history_shows_the_lineage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from skillgrad_tui.commands import optimize as cmd

    env = Env(tmp_path)
    res, _ = env.run([POISON, FIX])
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cmd.add_parsers(sub, lambda p: p.add_argument("--config"), lambda p: p.add_argument("--model"))
    assert cmd.HANDLERS["history"](parser.parse_args(["history", str(res.run_dir), "--json"])) == 0
    hist = json.loads(capsys.readouterr().out)
    rows = {v["version"]: v for v in hist["versions"]}
    assert all(rows[v]["parent"] == 0 and rows[v]["step"] == 1 for v in rows if v)
    assert any("kept" in rows[v]["decision"] for v in rows if v)
    assert hist["lineage"][0]["version"] == 0 and {c["version"] for c in hist["lineage"][0]["children"]} == \
        {v for v in rows if v}
    assert hist["summary"].startswith("changed")
    assert cmd.HANDLERS["history"](parser.parse_args(["history", str(res.run_dir)])) == 0
    text = capsys.readouterr().out
    assert "minibatch" in text and "Gate decisions:" in text and "changed:" in text


def test_a_run_that_changes_nothing_says_why(tmp_path: Path) -> None:
    env = Env(tmp_path)
    res, events = env.run([POISON])
    assert not res.changed and res.summary.startswith("no change over 1 step(s)")
    assert f"{MINIBATCH_NOT_IMPROVED} (1)" in res.summary
    (finished,) = of(events, "run_finished")
    assert finished.summary == res.summary and finished.account["candidates"] == 1
    assert res.to_dict()["summary"] == res.summary and res.to_dict()["changed"] is False


def test_accounts_and_sentences() -> None:
    base = {"failed_tasks": 3, "gradients": 3, "proposed": 6, "applied": 6, "passed_checks": 1, "candidates": 1,
            "improved_minibatch": 0, "validated": 0, "rejected": {"copies a training value": 4, "no change": 1,
                                                                   MINIBATCH_NOT_IMPROVED: 1}}
    s = step_sentence(base, None)
    assert s.startswith("no change: 6 edit(s) proposed, 6 applied, 1 passed the checks")
    assert "most common reasons: copies a training value (4), minibatch not improved (1), no change (1)" in s
    assert step_sentence({"failed_tasks": 0}, None) == "no change: every task of the minibatch passed"
    assert step_sentence({"failed_tasks": 2, "gradients": 0}, None) == "no change: no failure could be diagnosed"
    assert run_sentence(base, 0, []).startswith("no change: no step ran")
    assert run_sentence(base, 2, [3]).startswith("changed: 1 of 2 step(s) kept a candidate (version(s) 3)")


def test_pareto_frontier_and_parent_selection() -> None:
    val = {0: {"a": 0, "b": 0, "c": 1}, 1: {"a": 1, "b": 0, "c": 0}, 2: {"a": 1, "b": 1, "c": 0},
           3: {"a": 0, "b": 0, "c": 0}}
    front = pareto_frontier(val)
    assert front == {0: 1, 2: 2}  # 1 is dominated by 2; 3 is best nowhere
    picks = [pick_parent(front, seed) for seed in range(200)]
    assert set(picks) == {0, 2} and picks.count(2) > picks.count(0)
    assert pick_parent(front, 7) == pick_parent(front, 7)


def test_rebase_turns_a_candidate_from_another_parent_into_edits_for_the_current(tmp_path: Path) -> None:
    env = Env(tmp_path)
    skill = load_skill(env.skill)
    other = skill.files["SKILL.md"].replace("Answer short questions", "Answer questions") + "- More.\n"
    target = {"SKILL.md": other, "references/notes.md": "# Notes\n"}
    edits = rebase_edits(skill, target)
    assert [e.layer for e in edits] == ["L1", "L2", "L3"]
    after = apply_edits_in_memory(skill, edits)
    assert after == target
    with pytest.raises(ValueError, match="cannot delete"):
        rebase_edits(skill, {})


def test_pareto_parent_selection_runs_and_applies_exactly_the_candidate(tmp_path: Path) -> None:
    env = Env(tmp_path)
    res, events = env.run([POISON, FIX, f"{FIX} {BREAK}"], steps=2, parent_selection="pareto", epochs=3,
                          early_stop=10)
    started = of(events, "step_started")
    assert len(started) >= 2
    assert load_skill(env.skill).hash == res.final_skill_hash
    kept = [v for v in res.versions if v.kept]
    assert load_skill(env.skill).hash == kept[-1].skill_hash


# ------------------------------------------------------------------- SIGKILL mid candidate scoring


def _scoring_in_progress(run_dir: Path) -> bool:
    try:
        state = json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return False
    pend = state.get("pending") or {}
    cands = pend.get("candidates") or []
    return state.get("stage") == "candidates" and any(c["mb"] is not None for c in cands) and not pend["decided"]


def _child(tmp: str, kill_mid_scoring: bool, nth: int, q: Any) -> None:
    resume = (Path(tmp) / "run" / "state.json").exists()
    env = Env.existing(Path(tmp)) if resume else Env(Path(tmp))
    seen = [0]

    def hook(stage: str, *_: object) -> None:
        if kill_mid_scoring and stage == "state" and _scoring_in_progress(env.tmp / "run"):
            seen[0] += 1
            if seen[0] == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    runlog.fault_hook = hook
    kw: dict[str, Any] = {"steps": 2, "epochs": 2, "early_stop": 10, "batch_size": 2}
    if resume:
        kw["resume"] = env.tmp / "run"
    res, _ = env.run([POISON, FIX, f"{FIX} {BREAK}"], **kw)
    q.put(res.final_skill_hash)


def _spawn(tmp: Path, kill: bool, nth: int = 1) -> int:
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(str(tmp), kill, nth, q))
    p.start()
    p.join(120)
    assert p.exitcode is not None
    return p.exitcode


def _final(tmp: Path) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    run_dir = tmp / "run"
    versions = [{k: v for k, v in r.to_dict().items() if k != "created"} for r in list_versions(run_dir)]
    state = json.loads((run_dir / "state.json").read_text())
    return load_skill(tmp / "skills" / "tiny-qa").hash, versions, state["account"]


def test_sigkill_in_the_middle_of_candidate_scoring_resumes_to_the_same_run(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    assert _spawn(ref, False) == 0
    want = _final(ref)
    for nth in (1, 2):  # after the first candidate's score, and after the second's
        case = tmp_path / f"k{nth}"
        assert _spawn(case, True, nth) == -signal.SIGKILL
        state = json.loads((case / "run" / "state.json").read_text())
        assert state["stage"] == "candidates" and not state["pending"]["decided"]
        scored = [c for c in state["pending"]["candidates"] if c["mb"] is not None]
        assert 0 < len(scored) < len(state["pending"]["candidates"]) or nth > 1
        assert _spawn(case, False) == 0
        assert _final(case) == want, nth
        assert any(e.kind == "warning" and "resuming at step" in e.message for e in replay(case / "run"))


def test_pool_and_gate_options_from_the_cli_and_skillgrad_toml(tmp_path: Path) -> None:
    import argparse

    from skillgrad_tui.commands import optimize as cmd
    from skillgrad_tui.config import load_config
    from skillgrad_tui.core.errors import SkillgradError
    from skillgrad_tui.core.service import Engine

    env = Env(tmp_path)
    (env.skill.parent / "skillgrad.toml").write_text(
        "[optimize]\ncandidates = 5\ngate_k = 2.5\nparent = \"pareto\"\nval_repeats = 2\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cmd.add_parsers(sub, lambda p: p.add_argument("--config"), lambda p: p.add_argument("--model"))
    config = load_config(env.skill)

    def options(args: argparse.Namespace) -> Any:  # as `skillgrad optimize` builds them, through the engine
        engine = Engine(env.skill, config.engine_settings(), lambda role: None, suite_path=env.suite.root)
        return engine.optimize_options(args.gate, tmp_path / "run", None, cmd._overrides(args), whole_epoch=True)

    opts = options(parser.parse_args(["optimize", str(env.skill)]))
    assert (opts.candidates, opts.gate_k, opts.parent_selection, opts.val_repeats) == (5, 2.5, "pareto", 2)
    args = parser.parse_args(["optimize", str(env.skill), "--candidates", "1", "--gate-k", "0", "--parent",
                              "current", "--val-repeats", "1"])
    opts = options(args)
    assert (opts.candidates, opts.gate_k, opts.parent_selection, opts.val_repeats) == (1, 0.0, "current", 1)
    (env.skill.parent / "skillgrad.toml").write_text("[optimize]\ngate_k = -1\n", encoding="utf-8")
    with pytest.raises(SkillgradError, match="gate_k"):
        load_config(env.skill)
    with pytest.raises(SkillgradError, match="candidates must be at least 1"):
        env.run([FIX], candidates=0)
