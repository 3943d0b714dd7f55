"""Skills kept in git: .git and what .gitignore names are the user's, never skill content.

Real git repositories (the `git` binary), a real skill folder and the optimiser with the scripted
models of test_optimizer."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from test_optimizer import ARITH_LABEL, COLOUR_LABEL, FIX, Env, parse

from skillgrad_tui.core.errors import EditError
from skillgrad_tui.core.events import Event
from skillgrad_tui.core.skill import Edit, Patch, apply_patch, check_edit, load_skill, snapshot
from skillgrad_tui.core.watcher import folder_hash

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.org",
                       "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.org"}.items():
        monkeypatch.setenv(key, value)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def git_repo(env: Env, top: str = "parent") -> Path:
    """A repository holding the skill, committed: the folder above it, or the skill folder itself."""
    repo = env.skill.parent if top == "parent" else env.skill
    git(repo, "init", "-q", "-b", "main")
    if top == "parent":
        (repo / ".gitignore").write_text("*.log\n.skillgrad/\n", encoding="utf-8")
        (env.skill / ".gitignore").write_text("build/\ndrafts/*.md\n!drafts/keep.md\n", encoding="utf-8")
    else:
        (repo / ".gitignore").write_text("*.log\nbuild/\ndrafts/*.md\n!drafts/keep.md\n", encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "skill")
    return repo


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("top", ["parent", "skill"])
def test_git_metadata_and_ignored_files_are_not_skill_content(tmp_path: Path, top: str) -> None:
    env = Env(tmp_path)
    git_repo(env, top)
    before = load_skill(env.skill)
    assert not any(p.startswith(".git/") for p in before.assets) and ".gitignore" in before.assets
    (env.skill / "build").mkdir()
    (env.skill / "build" / "out.bin").write_bytes(b"\0" * 10)
    (env.skill / "run.log").write_text("noise")  # named by the repository's .gitignore
    (env.skill / "drafts").mkdir()
    (env.skill / "drafts" / "idea.md").write_text("scratch")
    subprocess.run(["git", "-C", str(env.skill), "tag", "v1"], check=True)
    nested = env.skill / "references" / "vendored" / ".git"  # a nested repository's metadata
    nested.mkdir(parents=True)
    (nested / "HEAD").write_text("ref: refs/heads/main\n")
    after = load_skill(env.skill)
    assert after.hash == before.hash == folder_hash(env.skill)
    assert after.assets == before.assets
    (env.skill / "drafts" / "keep.md").write_text("re-included by '!drafts/keep.md'")
    assert "drafts/keep.md" in load_skill(env.skill).assets
    assert snapshot(load_skill(env.skill)).keys() == {"SKILL.md", "assets/icon.bin", ".gitignore", "drafts/keep.md"}


def test_ignore_rules_agree_with_git_check_ignore(tmp_path: Path) -> None:
    from skillgrad_tui.core.vcs import IgnoreRules

    repo = tmp_path / "repo"
    skill = repo / "skills" / "demo"
    skill.mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text("*.tmp\n/skills/demo/rootonly.md\nnode_modules/\n", encoding="utf-8")
    (repo / "skills" / ".gitignore").write_text("*.bak\n!important.bak\n", encoding="utf-8")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text("secret*\n", encoding="utf-8")
    (skill / ".gitignore").write_text("out/\n**/cache/**\n/top.md\n", encoding="utf-8")
    (skill / "references").mkdir()
    (skill / "references" / ".gitignore").write_text("!keep.tmp\nlocal.md\n", encoding="utf-8")
    paths = ["a.tmp", "rootonly.md", "references/rootonly.md", "x.bak", "important.bak", "secret.txt",
             "references/secret.md", "top.md", "references/top.md", "references/keep.tmp", "references/a.tmp",
             "references/local.md", "local.md", "references/ok.md", "SKILL.md", "scripts/cache/x.py",
             "scripts/run.py", "node_modules/m.js"]
    rules = IgnoreRules(skill)
    check = subprocess.run(["git", "-C", str(skill), "check-ignore", "--no-index", "--stdin"], input="\n".join(paths),
                           capture_output=True, text=True)
    by_git = set(check.stdout.split())
    ours = {p for p in paths if rules.ignored(p) or any(rules.ignored("/".join(p.split("/")[:i]), is_dir=True)
                                                       for i in range(1, p.count("/") + 1))}
    assert ours == by_git, (sorted(ours - by_git), sorted(by_git - ours))


def test_edits_never_create_ignored_or_vcs_paths(tmp_path: Path) -> None:
    env = Env(tmp_path)
    git_repo(env)
    skill = load_skill(env.skill)
    for path in ("references/x.log", ".git/config", "build/notes.md"):
        reason = check_edit(skill, Edit("L3", path, "", "text\n"))
        assert reason is not None, path
    assert "gitignore" in (check_edit(skill, Edit("L3", "references/x.log", "", "text\n")) or "")
    with pytest.raises(EditError):
        apply_patch(env.skill, Patch([Edit("L3", "references/debug.log", "", "x\n")]))


def run_cli(env: Env, monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> int:
    from test_optimizer import make_opt_model, task_model

    from skillgrad_tui.commands import optimize as cmd
    from skillgrad_tui.core.llm.scripted import ScriptedBackend

    def fake_backend(settings: object) -> object:
        opt = make_opt_model(FIX)
        return ScriptedBackend(lambda r: opt(r) if r.json_schema else task_model(r), model_id="scripted")

    monkeypatch.setattr(cmd, "make_backend", fake_backend)
    return cmd.HANDLERS[argv[0]](parse(argv, cmd.add_parsers))


def test_rollback_leaves_git_history_and_ignored_files_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    env = Env(tmp_path)
    repo = git_repo(env, "skill")  # the skill folder is the repository, as most people keep one
    run_dir = tmp_path / "run"
    assert run_cli(env, monkeypatch, ["optimize", str(env.skill), "--suite", str(env.suite.root), "--seed",
                                      str(env.seed), "--run-dir", str(run_dir), "--gate", "all", "--steps", "1"]) == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "after the run")
    commit = git(repo, "rev-parse", "HEAD")
    (env.skill / "debug.log").write_text("mine, ignored")
    git_before = tree(repo / ".git")
    assert run_cli(env, monkeypatch, ["rollback", str(run_dir), "0"]) == 0
    capsys.readouterr()
    git(repo, "cat-file", "-e", commit)  # the commit made after the run still exists
    assert git(repo, "rev-parse", "HEAD") == commit
    assert tree(repo / ".git") == git_before  # not one byte of .git was written
    assert (env.skill / "debug.log").read_text() == "mine, ignored"
    assert load_skill(env.skill).hash == json.loads((run_dir / "versions.json").read_text())[0]["skill_hash"]


@pytest.mark.parametrize("top", ["parent", "skill"])
def test_a_commit_or_tag_during_a_run_does_not_abort_it(tmp_path: Path, top: str) -> None:
    env = Env(tmp_path)
    repo = git_repo(env, top)
    seen: list[Event] = []

    def sink(event: Event) -> None:
        seen.append(event)
        if event.kind == "step_started":  # the user commits and tags while the run works
            git(repo, "tag", f"v{len(seen)}")
            (env.skill / "notes.log").write_text(f"{len(seen)}")
            git(repo, "commit", "-q", "--allow-empty", "-m", "wip")

    res, _ = env.run(FIX, gate="validation", sink=sink)
    assert res.reason in ("steps", "early_stop"), res.reason
    assert [e.kind for e in seen].count("step_finished") >= 1
    assert load_skill(env.skill).hash == res.final_skill_hash


def test_git_commit_option_commits_each_applied_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    env = Env(tmp_path)
    repo = git_repo(env)
    (repo / "other.txt").write_text("the user's own work, staged")
    git(repo, "add", "other.txt")
    run_dir = tmp_path / "run"
    assert run_cli(env, monkeypatch, ["optimize", str(env.skill), "--suite", str(env.suite.root), "--seed",
                                      str(env.seed), "--run-dir", str(run_dir), "--gate", "all", "--steps", "2",
                                      "--git-commit"]) == 0
    out = capsys.readouterr().out
    log = git(repo, "log", "--format=%B%x00", "-n", "5").split("\0")
    ours = [m for m in log if m.strip().startswith("skillgrad:")]
    assert ours, log
    assert f"run {run_dir.name}, step 1" in ours[-1] and "Patterns:" in ours[-1]
    assert ARITH_LABEL in "".join(ours) or COLOUR_LABEL in "".join(ours)
    assert "committed version" in out
    assert git(repo, "status", "--porcelain", "--", "skills/tiny-qa") == ""  # the skill is committed...
    assert git(repo, "diff", "--cached", "--name-only") == "other.txt"  # ...and the user's staging kept
    # Off by default: a run without the flag leaves git alone.
    head = git(repo, "rev-parse", "HEAD")
    assert run_cli(env, monkeypatch, ["optimize", str(env.skill), "--suite", str(env.suite.root), "--seed",
                                      str(env.seed), "--run-dir", str(tmp_path / "run-2"), "--gate", "all",
                                      "--steps", "1"]) == 0
    assert git(repo, "rev-parse", "HEAD") == head
