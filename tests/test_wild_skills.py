"""Skills as they are published (../shared/third-party-skills, Apache-2.0): loading rules, tools in
the sandbox, format limits repaired first, and one task / one step on the real embedded model.
Every test works on a copy in tmp_path, never on the fixtures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from skillgrad_tui.core.agent import Agent, AgentSettings, reference_page, skill_block, skill_card
from skillgrad_tui.core.edit_menu import EditMenu
from skillgrad_tui.core.format_repair import REPAIR_ORIGIN, repair_edits
from skillgrad_tui.core.llm.gguf_info import GGUFInfo, auto_n_ctx
from skillgrad_tui.core.llm.scripted import ScriptedBackend
from skillgrad_tui.core.optimizer import OptimizeOptions, optimize
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.sandbox import Sandbox
from skillgrad_tui.core.skill import Edit, Patch, apply_patch, check_edit, load_skill
from skillgrad_tui.core.suites import load_suite

# skill -> (L3 files the agent may read, scripts listed as tools)
EXPECTED = {
    "skill-creator": (["agents/analyzer.md", "agents/comparator.md", "agents/grader.md",
                       "eval-viewer/generate_review.py", "references/schemas.md"], 8),
    "mcp-builder": (["reference/evaluation.md", "reference/mcp_best_practices.md", "reference/node_mcp_server.md",
                     "reference/python_mcp_server.md", "scripts/requirements.txt"], 2),
    "webapp-testing": (["examples/console_logging.py", "examples/element_discovery.py",
                        "examples/static_html_automation.py"], 1),
}


def copy_skill(shared_dir: Path, tmp_path: Path, name: str) -> Path:
    dest = tmp_path / "skills" / name
    shutil.copytree(shared_dir / "third-party-skills" / name, dest)
    return dest


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_published_skill_loads(shared_dir: Path, tmp_path: Path, name: str) -> None:
    skill = load_skill(copy_skill(shared_dir, tmp_path, name))
    docs, n_tools = EXPECTED[name]
    assert skill.l3_docs == docs
    assert len(skill.tools) == n_tools and all(usage for usage in skill.tools.values())
    assert "LICENSE.txt" in skill.assets  # named only by the front matter's license line
    assert [str(p) for p in skill.problems] == []  # no false "never mentioned" on scripts
    prompts = [skill_block(skill), skill_card(skill)]
    for tool in skill.tools:  # listed by name, never pasted
        assert tool in prompts[1]
        code = skill.files[tool]
        assert all(code[:400] not in p for p in prompts)
    assert len(prompts[1]) < 6000  # the card: description, file names, one line per script


def test_named_big_binary_and_schema_files_stay_out(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    (root / "scripts").mkdir(parents=True)
    (root / "SKILL.md").write_text("---\nname: demo\ndescription: Demo.\n---\nSee [forms](forms.md), "
                                   "`big.md`, logo.txt and scripts/schema.xsd.\n", encoding="utf-8")
    (root / "forms.md").write_text("# Forms\nFill field A.\n", encoding="utf-8")
    (root / "big.md").write_text("x" * 70_000, encoding="utf-8")
    (root / "logo.txt").write_bytes(b"\x89PNG\x00\x01")
    (root / "scripts" / "schema.xsd").write_text("<xs:schema/>", encoding="utf-8")
    skill = load_skill(root)
    assert skill.l3_docs == ["forms.md"]
    assert {"big.md", "logo.txt", "scripts/schema.xsd"} <= set(skill.assets)
    warned = sorted(p.path.name for p in skill.problems)
    assert warned == ["big.md", "logo.txt"]  # each says why it is not loaded; a schema is never even named


def test_linked_top_level_file_is_readable_and_editable(tmp_path: Path) -> None:
    root = tmp_path / "pdf-like"
    (root / "agents").mkdir(parents=True)
    (root / "SKILL.md").write_text("---\nname: pdf-like\ndescription: Fill forms.\n---\n# Forms\n"
                                   "For forms read [the guide](./forms.md); graders follow agents/grader.md.\n",
                                   encoding="utf-8")
    (root / "forms.md").write_text("# Filling forms\n\n- Check every field name first.\n", encoding="utf-8")
    (root / "agents" / "grader.md").write_text("# Grader\nGrade strictly.\n", encoding="utf-8")
    skill = load_skill(root)
    assert skill.l3_docs == ["agents/grader.md", "forms.md"]
    assert skill.layer_of("forms.md") == "L3"
    assert "Check every field name first." in reference_page(skill, "forms.md", 4000)
    menu = EditMenu(skill, focus="forms.md")
    assert "forms.md" in menu.targets and "agents/grader.md" in menu.targets
    edit = Edit("L3", "forms.md", "- Check every field name first.\n",
                "- Check every field name first.\n- Dates are YYYY-MM-DD.\n")
    assert check_edit(skill, edit) is None
    after = apply_patch(root, Patch([edit]))
    assert "Dates are YYYY-MM-DD." in after.files["forms.md"]
    assert "YYYY-MM-DD" in (root / "forms.md").read_text(encoding="utf-8")


def test_long_reference_is_read_in_pages(shared_dir: Path, tmp_path: Path) -> None:
    skill = load_skill(copy_skill(shared_dir, tmp_path, "mcp-builder"))
    first = reference_page(skill, "reference/node_mcp_server.md", 4000)
    assert len(first) < 4200 and "[part 1 of 8;" in first
    second = reference_page(skill, "reference/node_mcp_server.md#2", 4000)
    assert second.startswith(skill.files["reference/node_mcp_server.md"][4000:4100])


def test_skill_script_runs_in_the_sandbox(tmp_path: Path) -> None:
    scripts = tmp_path / "skill" / "scripts"
    scripts.mkdir(parents=True)
    (scripts / "stamp.py").write_text('"""Write a stamp into the file named on the command line."""\nimport sys\n'
                                      'open(sys.argv[1], "w").write("stamped " + sys.argv[2])\n', encoding="utf-8")
    with Sandbox([], skill_scripts=scripts) as box:
        assert (box.workdir / "scripts" / "stamp.py").is_file()
        res = box.run("rc = run_script('scripts/stamp.py', 'out.txt', 'ok')\nprint('rc', rc)")
        assert res.returncode == 0, res.stderr
        assert "rc 0" in res.stdout
        assert (box.workdir / "out.txt").read_text() == "stamped ok"
        assert [p.name for p in res.outputs] == ["out.txt"]  # the copied scripts are not outputs
    assert (scripts / "stamp.py").read_text().startswith('"""Write')  # the skill's own file is untouched


def test_auto_n_ctx_follows_the_model_and_memory(tmp_path: Path) -> None:
    info = GGUFInfo(tmp_path, 3, "gemma3", None, 32768, None, 0, 0, kv_bytes_per_token=18432)
    assert auto_n_ctx(info, memory=64 << 30) == 32768  # plenty of memory: the trained context
    assert auto_n_ctx(info, memory=200 << 20) == 2816  # a quarter of 200 MiB holds 2844 tokens
    assert auto_n_ctx(info, memory=1 << 20) == 2048  # never below the floor


def test_n_ctx_flag_on_every_model_command() -> None:
    from skillgrad_tui.cli import build_parser
    from skillgrad_tui.config import CLI_OVERRIDES, Config

    parser = build_parser()
    for argv in (["eval", "x", "--n-ctx", "8192"], ["optimize", "x", "--n-ctx", "8192"], ["tui", "--n-ctx", "auto"]):
        args = parser.parse_args(argv)
        assert args.n_ctx in (8192, 0)
    CLI_OVERRIDES["n_ctx"] = 8192
    try:
        assert Config().backend_settings().local.n_ctx == 8192
    finally:
        CLI_OVERRIDES.clear()
    assert Config().backend_settings().local.n_ctx == 0  # 0: automatic
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "x", "--n-ctx", "12"])


LONG_DESCRIPTION = ("Answer short questions with only the answer value. " + "Use it for quizzes and drills. " * 40)


def test_too_long_description_loads_and_is_repaired_first(tmp_path: Path) -> None:
    root = tmp_path / "skills" / "quiz"
    root.mkdir(parents=True)
    (root / "SKILL.md").write_text(f"---\nname: quiz\ndescription: {LONG_DESCRIPTION.strip()}\n---\n# Quiz\n"
                                   "- Reply with only the value.\n", encoding="utf-8")
    skill = load_skill(root)
    assert len(skill.description) > 1024 and "at most 1024" in skill.format_violations()[0].message
    assert [e.layer for e in repair_edits(skill)] == ["L1"]
    suite_dir = tmp_path / "suite"
    suite_dir.mkdir()
    rows = [{"id": f"q{i}", "question": f"Type the number {i}.", "answer": str(i), "evaluator": "exact"}
            for i in range(6)]
    (suite_dir / "tasks.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    suite = load_suite(suite_dir / "tasks.jsonl")

    def task_model(req: object) -> str:
        return req.messages[-2].content.rsplit("number ", 1)[1].split(".")[0]  # type: ignore[attr-defined]

    events: list = []
    result = optimize(root, suite, ScriptedBackend(task_model, model_id="task"),
                      ScriptedBackend(lambda r: "{}", model_id="opt"),
                      OptimizeOptions(steps=1, batch_size=2, seed=0, run_dir=tmp_path / "run"), sink=events.append)
    warned = [e.message for e in events if type(e).__name__ == "Warning_"]
    assert warned and "2 warning(s)" in warned[0] and "at most 1024" in warned[0]  # shown before the run starts
    proposed = [e for e in events if type(e).__name__ == "CandidateProposed"]
    assert proposed and proposed[0].origin == REPAIR_ORIGIN  # the first candidate of the first step
    decided = [e for e in events if type(e).__name__ == "CandidateDecided" and e.version == proposed[0].version]
    assert decided and decided[0].kept, decided
    repaired = load_skill(root)
    assert repaired.hash == result.final_skill_hash
    assert repaired.format_violations() == [] and len(repaired.description) <= 1024
    assert repaired.description.startswith("Answer short questions with only the answer value.")


# ------------------------------------------------------------------------------ real embedded model


def _real_backend(gemma_path: Path) -> object:
    from skillgrad_tui.core.llm.gguf_info import read_gguf_info
    from skillgrad_tui.core.llm.llama_backend import LlamaBackend

    n_ctx = min(auto_n_ctx(read_gguf_info(gemma_path)), 16384)  # skill-creator's body is ~9k tokens
    return LlamaBackend(gemma_path, model_id="test-gemma-wild", n_ctx=n_ctx, n_threads=1)


QUESTIONS = {
    "skill-creator": ("Which file in the skill describes how a grader agent works? Give the path.", "agents/grader.md"),
    "mcp-builder": ("What does MCP stand for?", "Model Context Protocol"),
    "webapp-testing": ("Which script starts a server before running an automation? Give its file name.",
                       "with_server.py"),
}


@pytest.mark.model
@pytest.mark.timeout(1200)
def test_one_task_with_each_published_skill(shared_dir: Path, tmp_path: Path, gemma_path: Path) -> None:
    """Each skill runs a task end to end: the prompt fits the context, the evaluator scores it."""
    from skillgrad_tui.core.evaluators import get_evaluator

    backend = _real_backend(gemma_path)
    try:
        for name, (question, answer) in QUESTIONS.items():
            skill = load_skill(copy_skill(shared_dir, tmp_path, name))
            task = Task(id=name, question=question, kind="qa", evaluator="normalized", expected=[answer])
            traj = Agent(backend, AgentSettings(max_tokens=24)).run(skill, task, seed=0)  # type: ignore[arg-type]
            assert traj.error is None, (name, traj.error)
            assert 0 < traj.usage.prompt_tokens < backend.n_ctx  # type: ignore[attr-defined]
            assert all(skill.files[t][:400] not in traj.turns[0].content for t in skill.tools)
            verdict = get_evaluator(task.evaluator).score(task, traj.answer)
            assert verdict.score in (0.0, 1.0)
    finally:
        backend.close()  # type: ignore[attr-defined]


@pytest.mark.model
@pytest.mark.timeout(1500)
def test_one_step_from_a_published_skill(shared_dir: Path, tmp_path: Path, gemma_path: Path) -> None:
    root = copy_skill(shared_dir, tmp_path, "webapp-testing")
    seed_hash = load_skill(root).hash
    suite_dir = tmp_path / "suite"
    suite_dir.mkdir()
    rows = [{"id": "s1", "question": "Which script starts a server first? Give its file name.",
             "answer": "with_server.py", "evaluator": "exact"},
            {"id": "s2", "question": "Which browser library does the skill use?", "answer": "Playwright",
             "evaluator": "exact"},
            {"id": "s3", "question": "Which tool opens the pages?", "answer": "Playwright", "evaluator": "exact"},
            {"id": "s4", "question": "Name the helper script.", "answer": "with_server.py", "evaluator": "exact"}]
    (suite_dir / "tasks.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    backend = _real_backend(gemma_path)
    try:
        result = optimize(root, load_suite(suite_dir / "tasks.jsonl"), backend, backend,  # type: ignore[arg-type]
                          OptimizeOptions(steps=1, batch_size=2, candidates=1, seed=0, failures_only=False,
                                          run_dir=tmp_path / "run"),
                          agent_settings=AgentSettings(max_tokens=16))
    finally:
        backend.close()  # type: ignore[attr-defined]
    after = load_skill(root)
    assert after.hash == result.final_skill_hash
    assert result.reason == "steps", result.summary  # the step ran to its end, with the real model in every role
    versions = result.versions
    assert versions[0].skill_hash == seed_hash and len(versions) >= 1
    assert all(v.minibatch is not None and v.decision for v in versions[1:])  # each candidate scored, decided
    assert after.l3_docs == EXPECTED["webapp-testing"][0]  # whatever was kept, the skill still loads whole
