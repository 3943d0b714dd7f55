"""A sandbox for the Python scripts a model writes (spreadsheet tasks: openpyxl edits).

These scripts come from a model reading task text the user did not write: they are untrusted.
Each sandbox is a fresh temporary folder: `work/` holds COPIES of the input files and is the
script's current directory; `ctl/` (outside `work/`) holds the script and its run settings. Every
script runs in a separate process, `python -I -B sandbox_boot.py` (a real file of this package),
confined by the operating system in the strongest mode this machine offers:

- "bwrap" (bubblewrap): its own mount, PID, network, IPC, UTS and user namespaces. The process
  sees a read-only root holding only Python (its prefix and the virtual environment), the system
  libraries, the skill's own scripts (read-only) and a writable work folder: no /etc/passwd, no
  home, no other file of the user; no network but a loopback of its own. Its processes die with
  it (PID namespace, --die-with-parent).
- "landlock" (weaker: no bubblewrap): the kernel's Landlock LSM lets the process read only those
  same folders and write only the work folder, and refuses TCP; it shares the machine's process
  list, hostname and network namespace.
- "hook" (weakest: neither is available): files are not confined by the OS; an audit hook in the
  script's own process refuses writes outside the work folder, which a hostile script can defeat.

In every mode the boot file also sets resource limits (CPU seconds, address space, file size,
open files, no core dumps), a seccomp filter where the architecture has one (no new processes, no
sockets), and the audit hook that explains a refusal ("PermissionError: sandbox: ..."). The parent
enforces the wall clock: the whole process group is killed at `timeout_s`. TMPDIR and HOME point
inside `work/.tmp`. The mode is chosen once per process (SKILLGRAD_SANDBOX=bwrap|landlock|hook
forces one, and fails if it is not available) and every result says which one ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Iterable

from skillgrad_tui.core.sandbox_modes import (DESCRIPTIONS, MODE_ENV, MODES, SYSTEM_DIRS, SYSTEM_FILES, SandboxError,
                                             bwrap_argv, bwrap_problem, choose_mode, describe, landlock_abi,
                                             mode_problem, python_paths, seccomp_arch)

# Files the script may use for scratch space; never reported as outputs.
SCRATCH_DIR = ".tmp"
BOOT = Path(__file__).with_name("sandbox_boot.py")
SETUP_FAILED = 125  # sandbox_boot.py: a confinement that was asked for could not be set up

# The modes and their choice live in sandbox_modes.py; these names are still imported from here.
__all__ = ["BOOT", "DESCRIPTIONS", "MODES", "MODE_ENV", "SCRATCH_DIR", "SETUP_FAILED", "Sandbox", "SandboxError",
           "SandboxResult", "bwrap_problem", "choose_mode", "describe", "landlock_abi", "mode_problem",
           "python_paths", "run_python"]


@dataclass
class SandboxResult:
    """What one script run did. `outputs` are files created or changed in `workdir`."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    killed_reason: str | None
    workdir: Path
    outputs: list[Path]
    seconds: float
    mode: str = "hook"  # which confinement ran it (MODES)
    _owner: "Sandbox | None" = field(default=None, repr=False, compare=False)

    def cleanup(self) -> None:
        """Remove the sandbox folder when this result owns it (results of `run_python`)."""
        if self._owner is not None:
            self._owner.cleanup()

    def __enter__(self) -> "SandboxResult":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()


class _Capture(threading.Thread):
    """Drains one pipe, keeping only its head and its tail, so a chatty script cannot fill
    the parent's memory."""

    def __init__(self, stream: IO[bytes], keep_bytes: int) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.keep = keep_bytes
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def run(self) -> None:
        fd = self.stream.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.total += len(chunk)
            room = self.keep - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail += chunk
                if len(self.tail) > 2 * self.keep:
                    del self.tail[: len(self.tail) - self.keep]
        self.stream.close()

    def text(self, limit: int) -> str:
        """At most `limit` characters (plus a marker): the start and the end of the stream."""
        if self.total == len(self.head):
            full = self.head.decode("utf-8", "replace")
            if len(full) <= limit:
                return full
            first, rest = full[: limit // 2], full[limit // 2:]
        else:
            first = self.head.decode("utf-8", "replace")[: limit // 2]
            rest = self.tail.decode("utf-8", "replace")
        last = rest[len(rest) - (limit - len(first)):] if limit > len(first) else ""
        omitted = self.total - len(first.encode()) - len(last.encode())
        return f"{first}\n[... {omitted} bytes of output truncated ...]\n{last}"


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Sandbox:
    """A work folder holding copies of `inputs`, in which scripts can run one after another
    (the agent's tool loop: run, look at the result, fix, run again).

    `skill_scripts`: the skill's scripts/ folder, readable (never writable) by the script and on
    its import path; the only other thing of the user's it can see. A copy of it is also placed at
    work/scripts/, so a skill's documented `scripts/recalc.py out.xlsx` is there: since a sandboxed
    script cannot start processes, the script runs it in-process with `run_script("scripts/recalc.py",
    "out.xlsx")` (runpy, with sys.argv set), a builtin that sandbox_boot.py provides. `mode`: see choose_mode."""

    def __init__(self, inputs: Iterable[Path] = (), *, python: str = sys.executable,
                 parent: Path | None = None, mode: str | None = None,
                 skill_scripts: Path | None = None) -> None:
        self.python = python
        self.mode = choose_mode(mode, python)
        self.skill_scripts = skill_scripts.resolve() if skill_scripts is not None and skill_scripts.is_dir() else None
        self.root = Path(tempfile.mkdtemp(prefix="skillgrad-sandbox-", dir=parent)).resolve()
        self.workdir = self.root / "work"
        self._ctl = self.root / "ctl"
        try:
            (self.workdir / SCRATCH_DIR).mkdir(parents=True)
            self._ctl.mkdir()
            self.inputs: list[Path] = []
            for src in inputs:
                src = Path(src)
                if not src.is_file():
                    raise FileNotFoundError(f"sandbox input {src} is not a file")
                dest = self.workdir / src.name
                if dest.exists():
                    raise ValueError(f"two sandbox inputs are named {src.name!r}")
                shutil.copyfile(src, dest)  # a copy: the user's file is never touched
                self.inputs.append(dest)
            if self.skill_scripts is not None:  # in the baseline, so never reported as outputs
                shutil.copytree(self.skill_scripts, self.workdir / "scripts", symlinks=False,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        except BaseException:
            self.cleanup()
            raise
        self._baseline = self._snapshot()
        self._runs = 0

    @property
    def description(self) -> str:
        return describe(self.mode)

    def _snapshot(self) -> dict[Path, str]:
        seen: dict[Path, str] = {}
        for dirpath, dirnames, filenames in os.walk(self.workdir):
            here = Path(dirpath)
            if here == self.workdir and SCRATCH_DIR in dirnames:
                dirnames.remove(SCRATCH_DIR)
            for name in filenames:
                path = here / name
                if path.is_symlink() or not path.is_file():
                    continue  # links are never outputs: they could point anywhere
                try:
                    seen[path] = _digest(path)
                except OSError:
                    continue
        return seen

    def outputs(self) -> list[Path]:
        """Files created or changed since the sandbox was made (scratch folder excluded)."""
        now = self._snapshot()
        return sorted(p for p, d in now.items() if self._baseline.get(p) != d)

    def _command(self, config_path: Path) -> list[str]:
        cmd = [self.python, "-I", "-B", str(BOOT), str(config_path)]
        if self.mode != "bwrap":
            return cmd
        readable = [str(self._ctl), str(BOOT)] + ([str(self.skill_scripts)] if self.skill_scripts else [])
        return bwrap_argv(self.python, readable, self.workdir, cmd)

    def _config(self, script: Path, cpu_s: int, memory_mb: int, file_mb: int) -> dict[str, object]:
        config: dict[str, object] = {
            "work": str(self.workdir), "script": str(script), "cpu_s": max(1, int(cpu_s)),
            "memory_mb": max(16, int(memory_mb)), "file_mb": max(1, int(file_mb)), "open_files": 256,
            "import_paths": [str(self.skill_scripts)] if self.skill_scripts else [],
            "seccomp": seccomp_arch(), "landlock": None,
        }
        if self.mode == "landlock":
            read = [*SYSTEM_DIRS, *SYSTEM_FILES, *python_paths(self.python), str(self._ctl), str(BOOT)]
            read += [str(self.skill_scripts)] if self.skill_scripts else []
            config["landlock"] = {"read": read, "rw_files": ["/dev/null", "/dev/zero", "/dev/urandom"]}
        return config

    def run(self, code: str, *, timeout_s: float = 30, cpu_s: int = 20, memory_mb: int = 1024,
            max_output_chars: int = 4000, max_file_mb: int = 256) -> SandboxResult:
        """Run `code` with the work folder as its current directory."""
        if not self.workdir.is_dir():
            raise RuntimeError("sandbox was already cleaned up")
        self._runs += 1
        script = self._ctl / f"script_{self._runs}.py"
        script.write_text(code, encoding="utf-8")
        config_path = self._ctl / f"run_{self._runs}.json"
        config_path.write_text(json.dumps(self._config(script, cpu_s, memory_mb, max_file_mb)), encoding="utf-8")
        scratch = str(self.workdir / SCRATCH_DIR)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch,
            "TEMP": scratch, "TMP": scratch, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": scratch,
            # one thread each: BLAS pools reserve address space against RLIMIT_AS
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        }
        if self.skill_scripts is not None:
            env["SKILL_SCRIPTS"] = str(self.skill_scripts)
        keep = max(1024, max_output_chars * 4)
        started = time.monotonic()
        proc = subprocess.Popen(self._command(config_path), cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        assert proc.stdout is not None and proc.stderr is not None
        out, err = _Capture(proc.stdout, keep), _Capture(proc.stderr, keep)
        out.start()
        err.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(proc.pid)  # also reaps anything the script left behind
            proc.kill()  # a script that left the group (setsid) is still our child
            proc.wait()
        out.join(5)
        err.join(5)
        seconds = time.monotonic() - started
        stderr = err.text(max_output_chars)
        rc = proc.returncode
        if self.mode == "bwrap" and rc > 128 and not timed_out:
            rc = -(rc - 128)  # bwrap reports a child killed by signal N as exit 128 + N
        return SandboxResult(
            returncode=rc, stdout=out.text(max_output_chars), stderr=stderr,
            timed_out=timed_out,
            killed_reason=_reason(rc, timed_out, err, timeout_s, cpu_s, memory_mb, max_file_mb),
            workdir=self.workdir, outputs=self.outputs(), seconds=seconds, mode=self.mode)

    def cleanup(self) -> None:
        def force(func, path, _exc):  # type: ignore[no-untyped-def]
            # a script may have made files or folders read-only; make them writable and retry
            try:
                os.chmod(path, 0o700)
                if os.path.isdir(path) and not os.path.islink(path):
                    os.chmod(os.path.dirname(path), 0o700)
                func(path)
            except OSError:
                pass

        if self.root.exists():
            for dirpath, dirnames, _ in os.walk(self.root):
                for d in dirnames:
                    sub = os.path.join(dirpath, d)
                    if not os.path.islink(sub):
                        try:
                            os.chmod(sub, 0o700)  # so that walk and rmtree can enter it
                        except OSError:
                            pass
            shutil.rmtree(self.root, onerror=force)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()


def _reason(rc: int, timed_out: bool, err: _Capture, timeout_s: float, cpu_s: int,
            memory_mb: int, file_mb: int) -> str | None:
    """Which limit stopped the script, if any, in words the model can act on."""
    if timed_out:
        return f"wall-clock limit of {timeout_s:g} s reached; the script was killed"
    if rc == SETUP_FAILED:
        end = bytes(err.tail or err.head).decode("utf-8", "replace").strip().splitlines()
        return f"the sandbox could not be set up ({end[-1] if end else 'no message'})"
    if rc == -signal.SIGXCPU:
        return f"CPU time limit of {cpu_s} s reached"
    if rc == -signal.SIGKILL:
        return f"killed (CPU time limit of {cpu_s} s or out of memory)"
    last = bytes(err.tail or err.head)[-2000:]
    if b"MemoryError" in last:
        return f"memory limit of {memory_mb} MB reached (MemoryError)"
    if b"File too large" in last:
        return f"file size limit of {file_mb} MB reached"
    if rc < 0:
        try:
            return f"killed by signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return None


def run_python(code: str, inputs: list[Path], *, timeout_s: float = 30, cpu_s: int = 20,
               memory_mb: int = 1024, max_output_chars: int = 4000, max_file_mb: int = 256,
               python: str = sys.executable, mode: str | None = None) -> SandboxResult:
    """Run `code` once in a fresh sandbox holding copies of `inputs`.

    The caller reads `result.outputs` and then calls `result.cleanup()` (or uses the result as
    a context manager) to remove the sandbox folder.
    """
    box = Sandbox(inputs, python=python, mode=mode)
    try:
        result = box.run(code, timeout_s=timeout_s, cpu_s=cpu_s, memory_mb=memory_mb,
                         max_output_chars=max_output_chars, max_file_mb=max_file_mb)
    except BaseException:
        box.cleanup()
        raise
    result._owner = box
    return result
