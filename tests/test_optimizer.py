"""The optimisation loop on a real skill folder and a real JSONL suite, with scripted models.

The task model is scripted to answer a question correctly only when the skill's text contains the
rule its category needs, so a patch that adds the rule really fixes tasks and a patch that adds a
"poison" rule really breaks them. The optimiser roles (diagnoser, contrastive diagnoser, patcher)
answer schema-valid JSON chosen from what their prompts say. Everything else is the real code:
evaluators, momentum memory, patch checks, atomic writes, the run directory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skillgrad_tui.core import atomic, runlog
from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.edit_menu import scripted_answer
from skillgrad_tui.core.events import Event
from skillgrad_tui.core.gate import TIE_SHORTER
from skillgrad_tui.core.llm.base import CancelToken, CompletionRequest
from skillgrad_tui.core.llm.scripted import ScriptedBackend
from skillgrad_tui.core.optimizer import (OptimizeOptions, ReviewDecision, ReviewRequest, RunResult, optimize,
                                          plan_schedule)
from skillgrad_tui.core.runlog import RunError, list_versions, replay
from skillgrad_tui.core.skill import content_hash, load_skill
from skillgrad_tui.core.suites import Suite, load_suite
from skillgrad_tui.core.suites.splits import split_tasks

SKILL_MD = """---
name: tiny-qa
description: Answer short questions with only the answer value.
---
# Tiny QA

## Answer format
- Reply with only the value, nothing else.

## Common pitfalls
- Do not add units.
"""

ARITH = [("What is 2 plus 3?", "5"), ("What is 4 plus 4?", "8"), ("What is 7 plus 1?", "8"),
         ("What is 6 plus 3?", "9"), ("What is 5 plus 5?", "10"), ("What is 9 plus 2?", "11"),
         ("What is 3 plus 3?", "6"), ("What is 8 plus 4?", "12")]
COLOUR = [("What colour is the sky on a clear day?", "blue"), ("What colour is fresh grass?", "green"),
          ("What colour is snow?", "white"), ("What colour is coal?", "black"),
          ("What colour is a ripe tomato?", "red"), ("What colour is a ripe banana?", "yellow"),
          ("What colour is a pumpkin?", "orange"), ("What colour is a plum?", "purple")]
EASY = [("Type the word yes.", "yes"), ("Type the word no.", "no"), ("Type the word ok.", "ok"),
        ("Type the word go.", "go")]

ARITH_RULE = "Always double-check every sum before answering."
COLOUR_RULE = "Write colour names in lowercase letters."
POISON_RULE = "Answer in full sentences."
ARITH_LABEL = "picked the wrong value"  # labels from the failure-class vocabulary (core/failures.py)
COLOUR_LABEL = "answer in wrong letter case"
WEAK = {ARITH_LABEL: "Read arithmetic questions slowly.", COLOUR_LABEL: "Read colour questions slowly."}
FIX = {ARITH_LABEL: ARITH_RULE, COLOUR_LABEL: COLOUR_RULE}
POISON = {ARITH_LABEL: POISON_RULE, COLOUR_LABEL: POISON_RULE}
ANSWERS = {q: a for q, a in ARITH + COLOUR + EASY}


# ------------------------------------------------------------------------------------ scripted models


def task_model(req: CompletionRequest) -> str:
    """Right only when the skill (system message) has the rule the question's category needs."""
    assert req.messages is not None
    system = req.messages[0].content
    found = [m for msg in req.messages[1:] if (m := re.search(r"Question: (.*)", msg.content))]
    question = found[-1].group(1).strip()
    answer = ANSWERS[question]
    if POISON_RULE in system:
        return f"The answer is {answer}, I think."
    if " plus " in question and ARITH_RULE not in system:
        return str(int(answer) + 1)
    if "colour" in question and COLOUR_RULE not in system:
        return answer.upper()
    return answer


def make_opt_model(adds: dict[str, str] | Callable[[str, int], str]) -> Callable[[CompletionRequest], str]:
    """Diagnoser, contrastive diagnoser and patcher. `adds` maps a pattern label (and how many
    steps it recurred in) to the rule the patcher appends under 'Common pitfalls'."""

    def respond(req: CompletionRequest) -> str:
        assert req.messages is not None and req.json_schema is not None
        props = req.json_schema.get("properties", {})
        user = req.messages[-1].content
        if "label" in props:
            label = ARITH_LABEL if " plus " in user else COLOUR_LABEL
            assert label in props["label"]["enum"]
            return json.dumps({"label": label, "anchor": "Common pitfalls",
                               "diagnosis": "The skill has no rule for this kind of question."})
        if "what_helped" in props:
            return json.dumps({"what_helped": props["what_helped"]["enum"][0], "robust": True})
        if "candidates" in props:
            m = re.search(r"Failure pattern P\d+, seen in \d+ task\(s\) over (\d+) step\(s\): (.+)", user)
            assert m, user
            recurrence, label = int(m.group(1)), m.group(2).strip()
            add = adds(label, recurrence) if callable(adds) else adds[label]
            if isinstance(add, dict):  # a whole answer (another operation than adding a line)
                return json.dumps({"candidates": [add]})
            answer = scripted_answer(req.json_schema, "Common pitfalls", add, "add the rule")
            return json.dumps({"candidates": [answer]})
        raise AssertionError(f"unexpected schema {props}")

    return respond


def slow_fix(label: str, recurrence: int) -> str:
    """Momentum pays off: the first patch for a pattern is weak, a recurring pattern gets the fix."""
    return FIX[label] if recurrence >= 2 else WEAK[label]


# ---------------------------------------------------------------------------------------- fixtures


def write_suite(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (q, a) in enumerate(ARITH):
        lines.append({"id": f"a{i}", "question": q, "answer": a, "evaluator": "exact"})
    for i, (q, a) in enumerate(COLOUR):
        lines.append({"id": f"c{i}", "question": q, "answer": a, "evaluator": "exact"})
    for i, (q, a) in enumerate(EASY):
        lines.append({"id": f"e{i}", "question": q, "answer": a, "evaluator": "exact"})
    path = folder / "tasks.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


def good_seed(suite: Suite) -> int:
    """A split seed whose train and val splits both hold arithmetic and colour tasks."""
    for seed in range(100):
        s = split_tasks(suite.tasks, seed)
        kinds = lambda ts, k: sum(t.id.startswith(k) for t in ts)  # noqa: E731
        if (kinds(s.train, "a") >= 3 and kinds(s.train, "c") >= 3 and kinds(s.val, "a") >= 1
                and kinds(s.val, "c") >= 1 and kinds(s.train, "e") >= 1):
            return seed
    raise AssertionError("no usable seed")


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.skill = tmp / "skills" / "tiny-qa"
        self.skill.mkdir(parents=True)
        (self.skill / "SKILL.md").write_text(SKILL_MD, encoding="utf-8")
        (self.skill / "assets").mkdir()
        (self.skill / "assets" / "icon.bin").write_bytes(b"\x00\x01\x02")
        self.suite = load_suite(write_suite(tmp / "suite"))
        self.seed = good_seed(self.suite)

    def files(self) -> dict[str, bytes]:
        return {p.relative_to(self.skill).as_posix(): p.read_bytes() for p in self.skill.rglob("*") if p.is_file()}

    def options(self, **kw: Any) -> OptimizeOptions:
        base: dict[str, Any] = {"seed": self.seed, "batch_size": 4, "run_dir": self.tmp / "run"}
        base.update(kw)
        return OptimizeOptions(**base)

    def run(self, adds: Any = FIX, **kw: Any) -> tuple[RunResult, list[Event]]:
        events: list[Event] = []
        review = kw.pop("review", None)
        cancel = kw.pop("cancel", None)
        sink = kw.pop("sink", events.append)
        res = optimize(self.skill, self.suite, ScriptedBackend(task_model, model_id="task"),
                       ScriptedBackend(make_opt_model(adds), model_id="opt"), self.options(**kw),
                       sink=sink, cancel=cancel, review=review)
        return res, events


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def memory(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "memory.json").read_text())


# ------------------------------------------------------------------------------------------- gates


def test_validation_gate_keeps_a_patch_that_fixes_tasks(env: Env) -> None:
    before = load_skill(env.skill).hash
    res, events = env.run(FIX, gate="validation")
    skill = load_skill(env.skill)
    assert ARITH_RULE in skill.body and COLOUR_RULE in skill.body
    assert res.final_skill_hash == skill.hash != before
    v = res.versions
    assert v[0].skill_hash == before and v[0].kept and v[0].val_score is not None and v[0].val_score < 1.0
    assert v[1].kept and v[1].val_score == 1.0 and v[1].parent == 0 and v[1].skill_hash == skill.hash
    assert res.best_version == 1
    # The event log is the same stream the sink saw, and it is complete.
    logged = list(replay(res.run_dir))
    assert kinds(logged) == kinds(events)
    assert logged[0].kind == "run_started" and logged[-1].kind == "run_finished"
    assert kinds(events).count("step_started") == kinds(events).count("step_finished") >= 1
    decided = [e for e in events if e.kind == "patch_decided"][0]
    assert decided.by == "gate" and decided.accepted == [0, 1] and "validation" in decided.reason
    # The candidate was scored from the run directory before the user's folder changed.
    val = [e for e in events if e.kind == "validation_scored" and e.step == 1][0]
    assert val.skill_hash == skill.hash and val.score == 1.0
    # Once the rules are in, the remaining failures pass: the contrastive diagnoser speaks.
    grads = [e for e in events if e.kind == "gradient_computed"]
    assert any(g.contrastive for g in grads[1:])
    # It names a line of the skill, and the lines the kept patch added are offered first.
    signal = next(c for g in grads[1:] for c in g.contrastive)
    assert any(rule in signal["what_helped"] for rule in (ARITH_RULE, COLOUR_RULE))
    assert signal["anchor"] == "Common pitfalls"
    assert res.reason in ("steps", "early_stop")
    assert (res.run_dir / "overlay.md").read_text().startswith("# Overlay")
    assert (res.run_dir / "overlays" / "step-1.md").exists()


def test_validation_rollback_leaves_the_skill_untouched_and_records_the_failed_patch(env: Env) -> None:
    before = env.files()
    res, events = env.run(POISON, gate="validation", steps=1)
    assert env.files() == before  # byte for byte, assets included
    assert res.versions[1].kept is False and res.versions[1].minibatch == 0.0
    assert res.versions[1].val_score is None  # it did not improve the minibatch: never validated
    assert "not improved" in res.versions[1].decision
    assert res.best_version == 0 and res.final_skill_hash == res.versions[0].skill_hash and not res.changed
    decided = [e for e in events if e.kind == "patch_decided"][0]
    assert decided.accepted == [] and decided.reason.startswith("no change:")
    assert "minibatch not improved" in decided.reason
    finished = [e for e in events if e.kind == "step_finished"][0]
    assert finished.kept is False and finished.skill_hash == res.versions[0].skill_hash
    assert finished.summary == decided.reason
    logs = [e for p in memory(res.run_dir)["patterns"] for e in p["log"]]
    assert any(e["event"] == "patch_failed" and POISON_RULE in e["text"] for e in logs)
    assert all(p["failed_patches"] >= 1 for p in memory(res.run_dir)["patterns"])
    # The rolled-back version is still stored and restorable.
    assert POISON_RULE in (runlog.RunLog(res.run_dir).load_version(1).body)
    # The run says why nothing changed, with the most common reasons.
    assert res.summary.startswith("no change over 1 step(s)") and "minibatch not improved" in res.summary
    assert res.account["accepted"] == 0 and res.account["candidates"] == len(res.versions) - 1
    assert res.account["rejected"]["minibatch not improved"] == res.account["candidates"]


def test_a_longer_candidate_that_changes_nothing_is_not_validated(env: Env) -> None:
    before = env.files()
    res, events = env.run(WEAK, gate="validation", steps=1)  # harmless but useless, and longer
    assert env.files() == before
    decided = [e for e in events if e.kind == "patch_decided"][0]
    assert decided.accepted == [] and "minibatch not improved" in decided.reason
    assert all(v.val_score is None for v in res.versions[1:])


def test_a_tie_goes_to_the_shorter_skill(env: Env) -> None:
    """Deleting a line no task needs ties the minibatch and validation: the shorter skill wins."""
    drop = {"section": "Common pitfalls", "op": "delete", "anchor": "- Do not add units.", "text": "", "why": "unused"}
    res, events = env.run(lambda label, n: drop, gate="validation", steps=1)
    assert "Do not add units" not in load_skill(env.skill).body and res.changed
    (kept,) = [e for e in events if e.kind == "candidate_decided" and e.kept]
    assert kept.reason == TIE_SHORTER and kept.gain == 0.0 and "shorter" in kept.sentence
    assert res.versions[kept.version].chars < res.versions[0].chars


def test_gate_all_accepts_every_edit_and_momentum_merges_across_steps(env: Env) -> None:
    res, events = env.run(slow_fix, gate="all", epochs=2, early_stop=10)
    skill = load_skill(env.skill)
    assert WEAK[ARITH_LABEL] in skill.body or WEAK[COLOUR_LABEL] in skill.body  # kept without validation
    assert ARITH_RULE in skill.body and COLOUR_RULE in skill.body  # the recurring patterns got fixed
    steps = [e for e in events if e.kind == "step_finished"]
    assert all(e.kept for e in steps if e.train_loss > 0)  # every step with failures kept a candidate
    kept = [v.version for v in res.versions if v.kept]
    assert kept == [0] + [v for v in kept[1:]] and len(kept) - 1 == sum(e.kept for e in steps)
    assert all(res.versions[v].parent == kept[i] for i, v in enumerate(kept[1:]))  # a chain of kept versions
    assert [e.by for e in events if e.kind == "patch_decided"] == ["all"] * (len(kept) - 1)
    mem = memory(res.run_dir)
    recurring = [p for p in mem["patterns"] if len(set(p["iterations"])) >= 2]
    assert recurring, mem
    p = recurring[0]
    # weight = sum over its gradients of decay ** (updates since): merged, not duplicated.
    last = max(e.step for e in events if e.kind == "memory_updated")
    expect = sum(0.8 ** (last - it) for it in p["iterations"])
    assert p["weight"] == pytest.approx(expect, abs=1e-4)
    assert len({q["label"] for q in mem["patterns"]}) == len(mem["patterns"])
    assert sum(1 for e in p["log"] if e["event"] == "patch") >= 2
    # Snapshots per stage are what resume reads.
    assert (res.run_dir / "memory" / "step-1-update.json").exists()
    assert (res.run_dir / "memory" / "step-1-final.json").exists()


def test_no_momentum_resets_the_memory_every_step(env: Env) -> None:
    res, _ = env.run(slow_fix, gate="all", epochs=2, early_stop=10, momentum=False)
    mem = memory(res.run_dir)
    assert mem["reset_each_step"] is True
    assert all(len(set(p["iterations"])) == 1 for p in mem["patterns"])
    # Without recurrence the weak edits never turn into the fix.
    assert ARITH_RULE not in load_skill(env.skill).body


def test_ask_gate_applies_only_what_the_person_accepts(env: Env) -> None:
    before = env.files()
    seen: list[ReviewRequest] = []

    def review(req: ReviewRequest) -> ReviewDecision:
        assert env.files() == before or seen  # nothing on disk changes before the first decision
        seen.append(req)
        labels = [it.pattern_label for it in req.items]
        accept = [it.index for it in req.items if it.pattern_label == ARITH_LABEL]
        reject = [it.index for it in req.items if it.pattern_label != ARITH_LABEL]
        assert all(it.edit.path == "SKILL.md" and it.tasks and it.gradients for it in req.items), labels
        return ReviewDecision(accepted=accept, rejected=reject,
                              replaced={i: req.items[i].edit.new.replace("before answering", "first")
                                        for i in accept})

    res, events = env.run(FIX, gate="ask", review=review, steps=1)
    body = load_skill(env.skill).body
    assert "Always double-check every sum first." in body  # the person's replacement text
    assert COLOUR_RULE not in body
    assert len(seen[0].items) == 2
    decided = [e for e in events if e.kind == "patch_decided"][0]
    assert decided.by == "user" and len(decided.accepted) == 1 and len(decided.rejected) == 1
    # The person's mix is a version of its own, scored on validation for the record, after the decision.
    (mine,) = [v for v in res.versions[1:] if v.kept]
    assert mine.origin == "reviewed" and mine.parent == 0 and mine.val_score is not None
    assert mine.skill_hash == load_skill(env.skill).hash
    logs = {(p["label"], e["event"]) for p in memory(res.run_dir)["patterns"] for e in p["log"]}
    assert (ARITH_LABEL, "patch") in logs and (COLOUR_LABEL, "patch_failed") in logs


def test_headless_ask_gate_is_refused(env: Env) -> None:
    with pytest.raises(SkillgradError, match="TUI"):
        env.run(FIX, gate="ask")
    from skillgrad_tui.commands.optimize import HANDLERS, add_parsers

    args = parse(["optimize", str(env.skill), "--suite", str(env.suite.root), "--gate", "ask"], add_parsers)
    assert HANDLERS["optimize"](args) == 2


# ------------------------------------------------------------------------------ stops and schedules


def test_early_stop_after_consecutive_all_pass_batches(env: Env) -> None:
    res, events = env.run(FIX, gate="validation", epochs=5, early_stop=2, batch_size=2)
    assert res.reason == "early_stop"
    finished = [e for e in events if e.kind == "step_finished"]
    assert [f.train_loss for f in finished[-2:]] == [0.0, 0.0]
    assert len(finished) < len(json.loads((res.run_dir / "state.json").read_text())["schedule"])


def test_plain_batches_cover_the_whole_train_split(env: Env) -> None:
    res, events = env.run(FIX, gate="all", failures_only=False, early_stop=10)
    train = {t.id for t in split_tasks(env.suite.tasks, env.seed).train}
    started = [e for e in events if e.kind == "step_started"]
    assert sorted(i for e in started for i in e.task_ids) == sorted(train)
    assert not any(e.kind == "task_finished" and e.step == 0 and e.phase == "train" for e in events)


def test_schedule_is_seeded_and_capped() -> None:
    pool = [f"t{i}" for i in range(10)]
    a = plan_schedule(pool, OptimizeOptions(seed=1, batch_size=4, epochs=2))
    assert [len(b) for b in a] == [4, 4, 2, 4, 4, 2]
    assert a == plan_schedule(pool, OptimizeOptions(seed=1, batch_size=4, epochs=2))
    assert a[0] != plan_schedule(pool, OptimizeOptions(seed=2, batch_size=4, epochs=2))[0]
    assert len(plan_schedule(pool, OptimizeOptions(seed=1, batch_size=4, steps=2))) == 2


def test_token_budget_stops_between_tasks_and_the_run_resumes(env: Env, tmp_path: Path) -> None:
    res, events = env.run(FIX, gate="validation", token_budget=400)
    assert res.reason == "budget" and events[-1].kind == "run_finished"
    assert res.prompt_tokens + res.completion_tokens < 400 + 200  # overshoot is at most one task
    done = sum(1 for e in events if e.kind == "task_finished")
    assert done < len(env.suite.tasks)
    state = json.loads((res.run_dir / "state.json").read_text())
    assert state["status"] == "running"
    # Resume without a budget: it finishes, reusing the finished tasks, and lands where an
    # uninterrupted run lands.
    resumed, ev2 = env.run(FIX, gate="validation", resume=res.run_dir)
    assert resumed.reason in ("steps", "early_stop")
    first = [e for e in ev2 if e.kind == "task_started"]
    reused = {(e.step, e.phase, e.task_id) for e in events if e.kind == "task_finished"}
    assert not reused & {(e.step, e.phase, e.task_id) for e in first}
    other = Env(tmp_path / "again")
    straight, _ = other.run(FIX, gate="validation")
    assert resumed.final_skill_hash == straight.final_skill_hash
    assert [strip(v) for v in resumed.versions] == [strip(v) for v in straight.versions]


def test_time_budget_and_cancel(env: Env, tmp_path: Path) -> None:
    res, _ = env.run(FIX, gate="validation", time_budget_s=0.0)
    assert res.reason == "budget" and len(res.versions) == 1
    token = CancelToken()
    seen: list[Event] = []

    def sink(e: Event) -> None:
        seen.append(e)
        if e.kind == "step_finished":
            token.cancel()

    other = Env(tmp_path / "cancel")
    res2, _ = other.run(FIX, gate="validation", cancel=token, sink=sink, early_stop=10)
    assert res2.reason == "cancelled"
    assert [e.kind for e in seen].count("step_finished") == 1


def test_a_skill_changed_outside_the_run_is_refused_on_resume(env: Env) -> None:
    res, _ = env.run(FIX, gate="validation", token_budget=400)
    (env.skill / "SKILL.md").write_text(SKILL_MD + "\nhand edit\n", encoding="utf-8")
    with pytest.raises(RunError, match="changed outside this run"):
        env.run(FIX, gate="validation", resume=res.run_dir)


def test_resume_of_a_finished_run_does_nothing(env: Env) -> None:
    res, _ = env.run(FIX, gate="validation")
    again, events = env.run(FIX, gate="validation", resume=res.run_dir)
    assert again.reason == res.reason and again.final_skill_hash == res.final_skill_hash
    assert events == []


def test_missing_validation_split_is_an_error(env: Env) -> None:
    tiny = Suite("tiny", env.suite.root, "jsonl", env.suite.tasks[:2], None)  # too small for a val split
    with pytest.raises(SkillgradError, match="validation gate needs"):
        optimize(env.skill, tiny, ScriptedBackend(task_model), ScriptedBackend(make_opt_model(FIX)),
                 env.options(gate="validation"))
    assert not (env.tmp / "run").exists()


# ------------------------------------------------------------------------------- commands (headless)


def parse(argv: list[str], add_parsers: Callable[..., None]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="skillgrad")
    sub = parser.add_subparsers(dest="command")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path)

    def model_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model")
        p.add_argument("--no-cache", action="store_true")

    add_parsers(sub, common, model_opts)
    return parser.parse_args(argv)


def test_optimize_history_and_rollback_commands(env: Env, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from skillgrad_tui.commands import optimize as cmd

    made: list[str] = []

    def fake_backend(settings: Any) -> Any:
        made.append(settings.local.model)
        opt = make_opt_model(FIX)  # one model for every role: the roles are the ones with a schema
        return ScriptedBackend(lambda r: opt(r) if r.json_schema else task_model(r), model_id="scripted")

    monkeypatch.setattr(cmd, "make_backend", fake_backend)
    original = load_skill(env.skill).hash
    run_dir = env.tmp / "cli-run"
    args = parse(["optimize", str(env.skill), "--suite", str(env.suite.root), "--seed", str(env.seed),
                  "--run-dir", str(run_dir), "--json"], cmd.add_parsers)
    assert cmd.HANDLERS["optimize"](args) == 0
    out = json.loads(capsys.readouterr().out)
    assert made == ["gemma3-270m"]  # one loaded model serves both roles when no optimizer model is set
    assert out["run_dir"] == str(run_dir.resolve()) and out["best_version"] == 1
    assert out["final_skill_hash"] == load_skill(env.skill).hash != original
    assert {"prompt", "completion"} <= out["tokens"].keys() and out["seconds"] >= 0

    assert cmd.HANDLERS["history"](parse(["history", str(run_dir), "--json"], cmd.add_parsers)) == 0
    hist = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in hist["versions"]][:2] == [0, 1] and hist["best_version"] == 1
    assert hist["versions"][1]["parent"] == 0 and hist["versions"][1]["decision"]
    assert cmd.HANDLERS["history"](parse(["history", str(run_dir)], cmd.add_parsers)) == 0
    assert "Skill versions" in capsys.readouterr().out

    # Rollback to the seed skill; the skill path comes from the run's RunStarted event.
    assert cmd.HANDLERS["rollback"](parse(["rollback", str(run_dir), "0"], cmd.add_parsers)) == 0
    assert load_skill(env.skill).hash == original
    assert cmd.HANDLERS["rollback"](parse(["rollback", str(run_dir), "7"], cmd.add_parsers)) == 2
    assert "no version 7" in capsys.readouterr().err

    # Headless printing (not --json): per-step lines and the versions table.
    args = parse(["optimize", str(env.skill), "--suite", str(env.suite.root), "--seed", str(env.seed),
                  "--run-dir", str(env.tmp / "run-2"), "--gate", "all", "--steps", "1"], cmd.add_parsers)
    assert cmd.HANDLERS["optimize"](args) == 0
    text = capsys.readouterr().out
    assert "step 1: loss" in text and "kept" in text and "Skill versions" in text


# ---------------------------------------------------------------------------------- SIGKILL + resume


def strip(v: runlog.VersionRecord) -> dict[str, Any]:
    d = v.to_dict()
    d.pop("created")
    return d


def _child(tmp: str, kill_at: int, resume: bool, q: Any) -> None:
    """Run (or resume) the optimiser and SIGKILL ourselves at the kill_at-th durable write."""
    env = Env.__new__(Env)
    env.tmp = Path(tmp)
    env.skill = env.tmp / "skills" / "tiny-qa"
    env.suite = load_suite(env.tmp / "suite" / "tasks.jsonl")
    env.seed = good_seed(env.suite)
    seen: list[str] = []

    def hook(stage: str, *_: object) -> None:
        seen.append(stage)
        if len(seen) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    runlog.fault_hook = hook
    atomic.fault_hook = hook
    kw: dict[str, Any] = {"gate": "validation", "epochs": 2, "early_stop": 10, "batch_size": 2}
    if resume:
        kw["resume"] = env.tmp / "run"
    env.run(slow_fix, **kw)
    q.put(seen)


def _spawn(tmp: Path, kill_at: int, resume: bool) -> tuple[list[str] | None, int]:
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(str(tmp), kill_at, resume, q))
    p.start()
    p.join(120)
    assert p.exitcode is not None
    return (q.get() if p.exitcode == 0 else None), p.exitcode


def _final(tmp: Path) -> tuple[str, list[dict[str, Any]], dict[str, Any], list[str]]:
    run_dir = tmp / "run"
    mem = json.loads((run_dir / "memory.json").read_text())
    steps = [e.kind for e in replay(run_dir) if e.kind in ("step_finished",)]
    return (load_skill(tmp / "skills" / "tiny-qa").hash, [strip(v) for v in list_versions(run_dir)], mem, steps)


def test_sigkill_at_any_point_then_resume_gives_the_same_skill(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    Env(ref)
    stages, code = _spawn(ref, 0, False)
    assert code == 0 and stages
    writes = len(stages)
    want_hash, want_versions, want_mem, _ = _final(ref)
    assert len(want_versions) >= 3 and any(not v["kept"] for v in want_versions)
    # Kill right after every kind of durable write (state, version folder, version index, memory
    # snapshot, event, and each stage of the user's skill write), early and late in the run, plus
    # evenly spaced points; then kill the first resume too.
    points = {1, writes // 4, writes // 2, (3 * writes) // 4, writes - 1}
    for kind in set(stages):
        at = [i + 1 for i, s in enumerate(stages) if s == kind]
        points |= {at[0], at[len(at) // 2], at[-1]}
    assert {"state", "version_dir", "versions_index", "json", "event", "journal_written", "renamed"} <= set(stages)
    for i, first in enumerate(sorted(points)):
        case = tmp_path / f"k{i}"
        Env(case)
        _, code = _spawn(case, first, False)
        assert code == -signal.SIGKILL, (first, code)
        _, code = _spawn(case, max(3, writes // 5), True)
        if code != 0:
            assert code == -signal.SIGKILL
            _, code = _spawn(case, 0, True)
        assert code == 0, first
        got_hash, got_versions, got_mem, steps = _final(case)
        assert got_hash == want_hash, f"kill at write {first}"
        assert got_versions == want_versions, f"kill at write {first}"
        assert got_mem == want_mem, f"kill at write {first}"
        assert steps, first


def test_sigkill_inside_the_user_skill_write_is_recovered(tmp_path: Path) -> None:
    """Kill between the journal commit and the renames of skill.apply_patch."""
    ref = tmp_path / "ref"
    Env(ref)
    _spawn(ref, 0, False)
    want = _final(ref)
    case = tmp_path / "case"
    Env(case)
    ctx = multiprocessing.get_context("fork")

    def child() -> None:
        def hook(stage: str, count: int) -> None:
            if stage == "journal_written":
                os.kill(os.getpid(), signal.SIGKILL)

        atomic.fault_hook = hook
        e = Env.__new__(Env)
        e.tmp, e.skill = case, case / "skills" / "tiny-qa"
        e.suite = load_suite(case / "suite" / "tasks.jsonl")
        e.seed = good_seed(e.suite)
        e.run(slow_fix, gate="validation", epochs=2, early_stop=10, batch_size=2)

    p = ctx.Process(target=child)
    p.start()
    p.join(120)
    assert p.exitcode == -signal.SIGKILL
    assert list((case / "skills" / ".skillgrad" / "journal").glob("*.journal.json"))
    _, code = _spawn(case, 0, True)
    assert code == 0
    assert _final(case)[:3] == want[:3]
    assert content_hash({k: v for k, v in Env.files(_as_env(case)).items()}) == want[0]


def _as_env(tmp: Path) -> Env:
    e = Env.__new__(Env)
    e.skill = tmp / "skills" / "tiny-qa"
    return e


def test_printer_renders_a_run_on_a_terminal_and_in_a_pipe(env: Env) -> None:
    """The same events drive the live progress bar (terminal) and plain lines (pipe)."""
    import io

    from rich.console import Console

    from skillgrad_tui.commands.printer import EventPrinter, versions_table

    res, _ = env.run(slow_fix, gate="validation", epochs=2, early_stop=10, batch_size=2)
    logged = list(replay(res.run_dir))
    for terminal in (True, False):
        buf = io.StringIO()
        console = Console(file=buf, force_terminal=terminal, width=160, color_system=None)
        printer = EventPrinter(console, verbose=True)
        for e in logged:
            printer(e)
        printer.close()
        console.print(versions_table(res.versions, best=res.best_version, current_hash=res.final_skill_hash))
        text = buf.getvalue()
        n_steps = sum(1 for e in logged if e.kind == "step_finished")
        assert len(re.findall(r"step \d+: loss", text)) == n_steps
        assert "rolled back" in text and "kept" in text and "finished: " in text
        assert f"{ARITH_LABEL}" in text and "(on disk)" in text


def test_cli_resume_needs_only_the_run(env: Env, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A budget-stopped run continues with `optimize --resume RUN`: skill and suite come from the run."""
    from skillgrad_tui.commands import optimize as cmd

    def fake_backend(settings: Any) -> Any:
        opt = make_opt_model(FIX)
        return ScriptedBackend(lambda r: opt(r) if r.json_schema else task_model(r), model_id="scripted")

    monkeypatch.setattr(cmd, "make_backend", fake_backend)
    run_dir = env.tmp / "cli-run"
    args = parse(["optimize", str(env.skill), "--suite", str(env.suite.root), "--seed", str(env.seed),
                  "--run-dir", str(run_dir), "--token-budget", "500"], cmd.add_parsers)
    assert cmd.HANDLERS["optimize"](args) == 0
    out = capsys.readouterr().out
    assert "budget" in out and f"skillgrad optimize --resume {run_dir.resolve()}" in out
    assert cmd.HANDLERS["optimize"](parse(["optimize", "--resume", str(run_dir), "--json"], cmd.add_parsers)) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["reason"] in ("steps", "early_stop") and res["best_version"] == 1
    assert load_skill(env.skill).hash == res["final_skill_hash"]
    assert cmd.HANDLERS["optimize"](parse(["optimize"], cmd.add_parsers)) == 2
    assert "give the skill folder" in capsys.readouterr().err
