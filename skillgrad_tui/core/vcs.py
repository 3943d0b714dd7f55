"""Skills under version control: what is not skill content, and committing accepted versions.

Most people keep their skills in git. Version-control metadata (`.git`, `.hg`, `.svn`, `.bzr`) and
the files that `.gitignore` names are the user's, not the skill's: they are never part of a skill
version, never written, moved or deleted by a patch or a rollback, and a change to them (a commit,
a tag, a build artefact) is not a change to the skill.

`.gitignore` files are read with git's own rules (pathspec's GitIgnoreSpec: negation, anchoring,
`**`, directory-only patterns): those inside the skill folder always, and, when the skill lives in
a git work tree, those of the folders above it up to the work tree's top plus `.git/info/exclude`.
A deeper file overrides a shallower one, and nothing inside an ignored folder can be re-included,
as in git. Not read: the global `core.excludesFile`, and git's index (a tracked file that a
pattern names is still left out here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pathspec

from skillgrad_tui.core.errors import SkillgradError

VCS_NAMES = frozenset({".git", ".hg", ".svn", ".bzr"})
GITIGNORE = ".gitignore"
_MAX_IGNORE_BYTES = 1 << 20  # a .gitignore larger than this is not a real one; it is not read


def _read_spec(path: Path) -> pathspec.GitIgnoreSpec | None:
    try:
        if not path.is_file() or path.stat().st_size > _MAX_IGNORE_BYTES:
            return None
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    return spec if len(spec) else None


def work_tree_top(start: Path) -> Path | None:
    """The nearest folder at or above `start` that holds a `.git` (folder or file), if any."""
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _git_dir(top: Path) -> Path | None:
    dot = top / ".git"
    if dot.is_dir():
        return dot
    try:  # a linked work tree or submodule: ".git" is a file "gitdir: PATH"
        line = dot.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not line.startswith("gitdir:"):
        return None
    gitdir = (top / line.split(":", 1)[1].strip()).resolve()
    common = gitdir / "commondir"
    if common.is_file():  # info/exclude lives in the shared git dir of all work trees
        try:
            return (gitdir / common.read_text(encoding="utf-8").strip()).resolve()
        except OSError:
            return gitdir
    return gitdir


class IgnoreRules:
    """Which paths below a skill folder are not skill content. Paths are posix, relative to root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._specs: dict[Path, pathspec.GitIgnoreSpec | None] = {}
        # (folder, spec) above the skill folder, nearest first; info/exclude last (lowest priority).
        self._outer: list[tuple[Path, pathspec.GitIgnoreSpec]] = []
        top = work_tree_top(self.root)
        if top is not None and top != self.root:
            folder = self.root.parent
            while True:
                spec = _read_spec(folder / GITIGNORE)
                if spec is not None:
                    self._outer.append((folder, spec))
                if folder == top:
                    break
                folder = folder.parent
        if top is not None:
            gitdir = _git_dir(top)
            spec = _read_spec(gitdir / "info" / "exclude") if gitdir is not None else None
            if spec is not None:
                self._outer.append((top, spec))
        # A skill folder that the outer rules ignore as a whole (kept out of the repository on
        # purpose) is still a skill: only its own .gitignore files count then.
        if self._outer and self._decide_outer(self.root, is_dir=True):
            self._outer = []

    def _spec(self, folder: Path) -> pathspec.GitIgnoreSpec | None:
        if folder not in self._specs:
            self._specs[folder] = _read_spec(folder / GITIGNORE)
        return self._specs[folder]

    def _decide_outer(self, path: Path, is_dir: bool) -> bool | None:
        for folder, spec in self._outer:
            rel = path.relative_to(folder).as_posix() + ("/" if is_dir else "")
            result = spec.check_file(rel).include
            if result is not None:
                return result
        return None

    def ignored(self, rel: str, *, is_dir: bool = False) -> bool:
        """True when `rel` is VCS metadata or a .gitignore names it. The caller walks top-down
        and skips ignored folders, so only the last path part needs a decision here."""
        parts = rel.split("/")
        if any(p in VCS_NAMES for p in parts):
            return True
        path = self.root.joinpath(*parts)
        folder = path.parent
        while True:  # the nearest .gitignore that has an opinion decides, as in git
            spec = self._spec(folder)
            if spec is not None:
                sub = path.relative_to(folder).as_posix() + ("/" if is_dir else "")
                result = spec.check_file(sub).include
                if result is not None:
                    return result
            if folder == self.root:
                break
            folder = folder.parent
        return bool(self._decide_outer(path, is_dir))


# ------------------------------------------------------------------------------- committing to git


class GitError(SkillgradError):
    """A git command about the user's skill failed."""


def _git(top: Path, *args: str) -> subprocess.CompletedProcess[str]:
    git = shutil.which("git")
    if git is None:
        raise GitError("git is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k.startswith(("GIT_AUTHOR_",
                                                                                          "GIT_COMMITTER_"))}
    return subprocess.run([git, "-C", str(top), *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=60)


def in_git_work_tree(root: Path) -> bool:
    top = work_tree_top(Path(root).resolve())
    return top is not None and shutil.which("git") is not None and \
        _git(top, "rev-parse", "--is-inside-work-tree").stdout.strip() == "true"


def commit_skill(root: Path, message: str) -> str | None:
    """Commit the skill folder's changes (and only them) to the git work tree it is in.

    Returns the new commit's short hash, or None when the folder has nothing to commit (a resumed
    run that already committed this version). Whatever else the user had staged stays staged and
    uncommitted. Raises GitError with git's own message when git refuses (no identity, a hook).
    """
    root = Path(root).resolve()
    top = work_tree_top(root)
    if top is None:
        raise GitError(f"{root} is not in a git work tree")
    rel = root.relative_to(top).as_posix() or "."
    status = _git(top, "status", "--porcelain", "--untracked-files=all", "--", rel)
    if status.returncode != 0:
        raise GitError(f"git status failed: {status.stderr.strip()}")
    if not status.stdout.strip():
        return None
    for args in (("add", "--all", "--", rel), ("commit", "--quiet", "-m", message, "--", rel)):
        done = _git(top, *args)
        if done.returncode != 0:
            why = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise GitError(f"git {args[0]} failed: {why[-1] if why else 'exit ' + str(done.returncode)}")
    head = _git(top, "rev-parse", "--short", "HEAD")
    return head.stdout.strip() or None
