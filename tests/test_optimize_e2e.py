"""End to end with the real embedded models: two optimisation steps on a small slice of the
table-qa suite (the repository's WikiTableQuestions subset).

A 270M model writes poor diagnoses and patches; what the Gemma test demands is that the loop
survives whatever it writes: the skill on disk is always a valid skill equal to a stored version,
and the run log tells the whole story, from run_started to run_finished, with every step started
and finished. The SmolLM2 test starts from a deliberately defective skill and demands real work:
the 135M model's answers become edits that apply, and the run accounts for every one of them.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from skillgrad_tui.core.agent import AgentSettings
from skillgrad_tui.core.events import Event
from skillgrad_tui.core.optimizer import OptimizeOptions, optimize
from skillgrad_tui.core.runlog import list_versions, replay
from skillgrad_tui.core.skill import load_skill
from skillgrad_tui.core.suites import load_suite

REPO = Path(__file__).resolve().parents[1]
N_TASKS = 8  # seeded split: 4 train (2 steps of 2), 2 val, 2 test


def small_wtq_suite(dest: Path, n: int) -> Path:
    """The first n questions of skills/suites/table-qa, with only the tables they use."""
    src = REPO / "skills" / "suites" / "table-qa"
    lines = (src / "data" / "training.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1 : n + 1]
    (dest / "data").mkdir(parents=True)
    (dest / "data" / "training.tsv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    col = header.split("\t").index("context")
    for row in rows:
        rel = row.split("\t")[col]
        for ext in (".csv", ".tsv"):
            table = (src / rel).with_suffix(ext)
            if table.exists():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(table, (dest / rel).with_suffix(ext))
    return dest


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.timeout(1500)  # ~2 min on an idle 2-core machine; far longer when the cores are shared
def test_two_steps_with_the_embedded_gemma(tmp_path: Path, gemma_backend: object) -> None:
    skill_root = tmp_path / "skills" / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", skill_root)
    suite = load_suite(small_wtq_suite(tmp_path / "suite", N_TASKS))
    assert len(suite.tasks) == N_TASKS
    events: list[Event] = []
    options = OptimizeOptions(steps=2, batch_size=2, seed=0, gate="validation", failures_only=False,
                              run_dir=tmp_path / "run")
    start = time.perf_counter()
    result = optimize(skill_root, suite, gemma_backend, gemma_backend, options,  # type: ignore[arg-type]
                      agent_settings=AgentSettings(max_tokens=16, table_rows=12), sink=events.append)
    seconds = time.perf_counter() - start

    # The skill on disk loads and is one of the run's versions (the last kept one).
    skill = load_skill(skill_root)
    versions = list_versions(result.run_dir)
    assert skill.hash == result.final_skill_hash
    kept = [v for v in versions if v.kept]
    assert kept and kept[-1].skill_hash == skill.hash
    for v in versions[1:]:  # every candidate was scored on the minibatch, and decided on
        assert v.minibatch is not None and v.decision
        assert (v.val_score is not None) or "not improved" in v.decision

    # A complete log: the sink saw what the file holds, in the same order.
    logged = list(replay(result.run_dir))
    assert [e.kind for e in logged] == [e.kind for e in events]
    assert logged[0].kind == "run_started" and logged[-1].kind == "run_finished"
    assert result.reason == "steps"
    for k in (1, 2):
        assert [e.kind for e in logged if getattr(e, "step", None) == k and e.kind in
                ("step_started", "step_finished")] == ["step_started", "step_finished"]
    assert sum(1 for e in logged if e.kind == "task_finished" and e.phase == "train") == 4
    state = json.loads((result.run_dir / "state.json").read_text())
    assert state["status"] == "finished" and state["step"] == 3
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    assert result.summary and result.account["failed_tasks"] >= 0
    print(f"\n{result.summary}")
    print(f"\n2 steps with Gemma 270M: {seconds:.1f}s, {result.prompt_tokens}+{result.completion_tokens} tokens, "
          f"{len(versions)} versions, kept {[v.version for v in kept]}, "
          f"{sum(1 for e in logged if e.kind == 'gradient_computed' and e.gradients)} steps with gradients")


DEFECT = ("## Answer format\n- Answer in a full sentence that repeats the question, then explain how you found "
          "the answer.\n- Round every number to the nearest ten.\n")


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.timeout(900)  # ~40 s on an idle 2-core machine; longer when the cores are shared
def test_two_steps_from_a_defective_skill_with_smollm_apply_edits_and_account_for_them(
        tmp_path: Path, smollm_backend: object) -> None:
    skill_root = tmp_path / "skills" / "table-qa"
    shutil.copytree(REPO / "skills" / "table-qa", skill_root)
    md = skill_root / "SKILL.md"
    text = md.read_text(encoding="utf-8")
    md.write_text(text[: text.index("## Answer format")] + DEFECT, encoding="utf-8")
    suite = load_suite(small_wtq_suite(tmp_path / "suite", N_TASKS))
    events: list[Event] = []
    options = OptimizeOptions(steps=2, batch_size=2, seed=0, gate="validation", failures_only=False,
                              candidates=2, run_dir=tmp_path / "run")
    start = time.perf_counter()
    result = optimize(skill_root, suite, smollm_backend, smollm_backend, options,  # type: ignore[arg-type]
                      agent_settings=AgentSettings(max_tokens=16, table_rows=8), sink=events.append)
    seconds = time.perf_counter() - start
    a = result.account
    # Real work: failures were diagnosed, and the model's answers became edits that apply.
    assert a["failed_tasks"] >= 1 and a["gradients"] >= 1
    assert a["applied"] >= 1, a
    assert a["proposed"] >= a["applied"] >= a["passed_checks"]
    assert a["candidates"] >= 1 and a["scored_minibatch"] == a["candidates"]
    # Every proposed edit is accounted for: it applied, or was rejected for a reason that is counted.
    proposals = [e for e in events if e.kind == "patch_proposed"]
    assert sum(1 for p in proposals for r in p.rejected if r.get("reason_key") == "does not apply") == 0
    accounts = [e for e in events if e.kind == "step_account"]
    assert [e.step for e in accounts] == [1, 2] and all(e.summary for e in accounts)
    assert sum(x.account["applied"] for x in accounts) == a["applied"]
    decided = [e for e in events if e.kind == "candidate_decided"]
    assert len(decided) >= a["candidates"] and all(e.sentence for e in decided)
    # The run ends with its account in one sentence, changed or not, and the skill on disk is a version.
    assert result.summary.startswith(("changed", "no change"))
    assert load_skill(skill_root).hash in {v.skill_hash for v in result.versions if v.kept}
    print(f"\nSmolLM2 2 steps from a defective skill: {seconds:.1f}s; proposed {a['proposed']}, applied "
          f"{a['applied']}, passed checks {a['passed_checks']}, candidates {a['candidates']}, "
          f"kept {a['accepted']}\n{result.summary}")
