"""The sandbox's confinement modes: which one this machine offers (bwrap, Landlock, or the audit
hook alone), choosing the strongest or the one asked for, and the bubblewrap command line with
the folders a script may read. sandbox.py runs scripts in the mode chosen here.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from skillgrad_tui.core.errors import SkillgradError

MODE_ENV = "SKILLGRAD_SANDBOX"
MODES = ("bwrap", "landlock", "hook")
DESCRIPTIONS = {
    "bwrap": "bubblewrap namespaces: read-only Python and skill scripts, one writable work folder, no network",
    "landlock": "Landlock (weaker, no bubblewrap here): file access confined by the kernel, TCP refused, "
                "no separate namespaces",
    "hook": "audit hook only (weak, neither bubblewrap nor Landlock here): reads are not confined and "
            "writes are checked inside the script's own process",
}
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
# System files Python and openpyxl read (mimetypes opens every mime.types it finds).
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/mime.types", "/etc/localtime")


class SandboxError(SkillgradError):
    """The sandbox asked for cannot run on this machine."""


def describe(mode: str) -> str:
    """`mode: what it confines`, for the trajectory, the CLI and the app."""
    return f"{mode}: {DESCRIPTIONS[mode]}"


# --------------------------------------------------------------------------------------- the modes


def seccomp_arch() -> bool:
    return sys.platform.startswith("linux") and platform.machine() in ("x86_64", "aarch64")


def landlock_abi() -> int:
    """Landlock ABI version of the running kernel, 0 when there is none."""
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "aarch64"):
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(version), 0)


@functools.lru_cache(maxsize=8)
def python_paths(python: str) -> tuple[str, ...]:
    """Folders the interpreter needs to start and import its packages (real paths)."""
    if Path(python).resolve() == Path(sys.executable).resolve():
        found = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        out = subprocess.run([python, "-I", "-c", "import sys, json; print(json.dumps([sys.prefix, "
                              "sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]))"],
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        found = json.loads(out.stdout) if out.returncode == 0 else []
    found.append(str(Path(python).resolve().parent))
    kept: list[str] = []
    for p in sorted({os.path.realpath(x) for x in found}, key=len):  # a folder covers what is inside it
        if not any(p == k or p.startswith(k.rstrip(os.sep) + os.sep) for k in kept):
            kept.append(p)
    return tuple(kept)


def bwrap_argv(python: str, binds_ro: list[str], workdir: Path, cmd: list[str]) -> list[str]:
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    argv = [bwrap, "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534",
            "--hostname", "sandbox", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            argv += ["--ro-bind", d, d]
    for f in SYSTEM_FILES:
        argv += ["--ro-bind-try", f, f]
    for p in (*python_paths(python), *binds_ro):
        argv += ["--ro-bind", p, p]
    argv += ["--proc", "/proc", "--dev", "/dev", "--bind", str(workdir), str(workdir),
             "--remount-ro", "/", "--chdir", str(workdir), "--", *cmd]
    return argv


@functools.lru_cache(maxsize=8)
def bwrap_problem(python: str) -> str | None:
    """Why bubblewrap cannot run our interpreter here (None: it can). Tried once per process."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if shutil.which("bwrap") is None:
        return "bwrap is not installed (Debian/Ubuntu: apt install bubblewrap)"
    probe = Path(tempfile.mkdtemp(prefix="skillgrad-bwrap-probe-"))
    try:
        argv = bwrap_argv(python, [], probe, [python, "-I", "-B", "-c", "import json"])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap failed to start: {exc}"
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    if done.returncode != 0:
        return f"bwrap failed: {(done.stderr.strip().splitlines() or ['exit ' + str(done.returncode)])[-1]}"
    return None


def mode_problem(mode: str, python: str = sys.executable) -> str | None:
    """None when `mode` can run here, else why not."""
    if mode == "bwrap":
        return bwrap_problem(python)
    if mode == "landlock":
        return None if landlock_abi() >= 1 else "the kernel has no Landlock (Linux 5.13+ with it enabled)"
    if mode == "hook":
        return None
    return f"unknown sandbox mode {mode!r}; use one of {', '.join(MODES)} (or auto)"


def choose_mode(requested: str | None = None, python: str = sys.executable) -> str:
    """The strongest mode available ("auto"), or the one asked for (SandboxError if it cannot run)."""
    want = (requested or os.environ.get(MODE_ENV) or "auto").strip().lower()
    if want == "auto":
        return next(m for m in MODES if mode_problem(m, python) is None)
    problem = mode_problem(want, python)
    if problem is not None:
        raise SandboxError(f"sandbox mode {want!r} is not available: {problem}")
    return want
