"""A sandbox for the Python scripts a model writes (spreadsheet tasks: openpyxl edits).

Each sandbox is a fresh temporary folder: `work/` holds COPIES of the input files and is the
script's current directory; `ctl/` (outside `work/`) holds the bootstrap and the script. The
script runs in a separate interpreter (`python -I -B`: no user site, no PYTHON* variables, no
bytecode writes; `work/` is appended to sys.path, never prepended) with a minimal environment, in
its own process group, under these limits:

- wall clock: the whole process group is killed when `timeout_s` passes;
- RLIMIT_CPU (CPU seconds), RLIMIT_AS (address space), RLIMIT_FSIZE (largest file written),
  RLIMIT_CORE = 0, set by the bootstrap before the script runs (not via preexec_fn, which is
  unsafe in a threaded parent such as the TUI). RLIMIT_NPROC is not used: Linux counts every
  process and thread of the user against it, and root ignores it; the audit hook below refuses
  new processes instead;
- a PEP 578 audit hook, installed before the script runs, refuses: opening a file for writing,
  appending or creating outside `work/`; remove/rename/replace/rmdir/mkdir/symlink/link/chmod/
  chown/utime/truncate outside it (paths are resolved: relative paths, `..`, symlinks and dir_fd
  are all followed the way the kernel would); new processes (subprocess, os.system, exec*, fork,
  spawn); sockets (no network); raising its own limits; and C entry points for those reached
  through ctypes. TMPDIR and HOME point inside `work/.tmp`.

Audit hooks are a guard against an honest but careless script, not against a hostile one (a
C extension can call the kernel directly); nothing here claims to be a security boundary.
"""

from __future__ import annotations

import hashlib
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

# Files the script may use for scratch space; never reported as outputs.
SCRATCH_DIR = ".tmp"

_BOOTSTRAP = r'''
import os, sys

def _setup(work, cpu_s, memory_mb, file_mb):
    import resource

    def limit(kind, soft, hard):
        cur_soft, cur_hard = resource.getrlimit(kind)
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        try:
            resource.setrlimit(kind, (soft, hard))
        except (ValueError, OSError):
            pass

    limit(resource.RLIMIT_CPU, cpu_s, cpu_s + 1)  # SIGXCPU at the soft limit, SIGKILL at the hard
    limit(resource.RLIMIT_AS, memory_mb << 20, memory_mb << 20)
    limit(resource.RLIMIT_FSIZE, file_mb << 20, file_mb << 20)
    limit(resource.RLIMIT_CORE, 0, 0)

    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    harmless_sinks = {"/dev/null", "/dev/stdout", "/dev/stderr"}
    no_proc = {"os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
               "subprocess.Popen", "os.startfile", "pty.spawn", "os.killpg", "signal.pthread_kill"}
    no_net_prefix = ("socket.", "urllib.", "http.", "ftplib.", "smtplib.", "imaplib.", "poplib.",
                     "nntplib.", "telnetlib.", "webbrowser.")
    c_denied = {"fork", "vfork", "clone", "clone3", "execve", "execv", "execvp", "execl", "execlp",
                "execle", "execvpe", "fexecve", "system", "popen", "posix_spawn", "posix_spawnp",
                "socket", "connect", "open", "open64", "openat", "openat64", "creat", "creat64",
                "fopen", "fopen64", "unlink", "unlinkat", "rename", "renameat", "renameat2",
                "mkdir", "mkdirat", "rmdir", "symlink", "symlinkat", "link", "linkat", "chmod",
                "fchmodat", "chown", "lchown", "fchownat", "truncate", "truncate64", "kill",
                "syscall", "setrlimit", "prlimit", "prlimit64", "mknod", "mknodat", "mkfifo"}
    # event -> position of its dir_fd argument (0: it has none)
    attr_events = {"os.chmod": 2, "os.chown": 3, "os.utime": 3, "os.chflags": 0, "os.lchmod": 0,
                   "os.lchflags": 0, "os.setxattr": 0, "os.removexattr": 0}
    state = {"busy": False}

    def base_dir(dir_fd):
        if dir_fd is None or dir_fd < 0:
            return os.getcwd()
        return os.readlink("/proc/self/fd/%d" % dir_fd)

    def resolve(path, dir_fd=None, follow=True):
        if isinstance(path, int):
            return os.path.realpath(os.readlink("/proc/self/fd/%d" % path))
        p = os.fsdecode(os.fspath(path))
        if not os.path.isabs(p):
            p = os.path.join(base_dir(dir_fd), p)
        if follow:
            return os.path.realpath(p)
        head, tail = os.path.split(p)
        if tail in ("", ".", ".."):
            return os.path.realpath(p)
        return os.path.join(os.path.realpath(head), tail)

    def inside(resolved, allow_root=False):
        return resolved.startswith(work + os.sep) or (allow_root and resolved == work)

    def guard(path, dir_fd=None, follow=True, what="writing", allow_root=False):
        target = resolve(path, dir_fd, follow)
        if not inside(target, allow_root):
            raise PermissionError(
                "sandbox: %s outside the work directory is not allowed: %s" % (what, target))

    def fd(args, i):
        return args[i] if len(args) > i and isinstance(args[i], int) else None

    def check(event, args):
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int):
                return  # wraps a descriptor that was itself opened (and checked)
            writing = bool(flags & write_flags) or bool(mode and any(c in mode for c in "wax+"))
            if writing and os.fsdecode(os.fspath(path)) not in harmless_sinks:
                guard(path)
        elif event in ("os.remove", "os.rmdir", "os.mkdir"):
            guard(args[0], fd(args, len(args) - 1), follow=False)
        elif event == "os.rename":
            guard(args[0], fd(args, 2), follow=False)
            guard(args[1], fd(args, 3), follow=False)
        elif event == "os.symlink":
            src, dst = args[0], args[1]
            guard(dst, fd(args, 2), follow=False)
            link_dir = os.path.dirname(resolve(dst, fd(args, 2), follow=False))
            src_s = os.fsdecode(os.fspath(src))
            guard(src_s if os.path.isabs(src_s) else os.path.join(link_dir, src_s),
                  what="linking to a file", allow_root=True)
        elif event == "os.link":
            guard(args[0], fd(args, 2), what="hard-linking a file")
            guard(args[1], fd(args, 3), follow=False)
        elif event in attr_events:
            index = attr_events[event]
            guard(args[0], fd(args, index) if index else None, what="changing a file")
        elif event == "os.truncate":
            if not isinstance(args[0], int):
                guard(args[0])
        elif event in no_proc or event == "os.kill" and args[0] != os.getpid():
            raise PermissionError("sandbox: starting or signalling processes is not allowed (%s)"
                                  % event)
        elif event.startswith(no_net_prefix) and event != "socket.gethostname":
            raise PermissionError("sandbox: network access is not allowed (%s)" % event)
        elif event in ("resource.setrlimit", "resource.prlimit"):
            raise PermissionError("sandbox: changing resource limits is not allowed")
        elif event == "sqlite3.connect":
            db = args[0]
            if isinstance(db, (str, bytes, os.PathLike)) and os.fsdecode(db) not in (":memory:", ""):
                guard(db)
        elif event == "ctypes.dlsym" and len(args) > 1 and args[1] in c_denied:
            raise PermissionError("sandbox: calling %s through ctypes is not allowed" % args[1])

    def hook(event, args):
        if state["busy"]:
            return
        state["busy"] = True
        try:
            check(event, args)
        finally:
            state["busy"] = False

    # os.mkfifo and os.mknod raise no audit event: wrap them.
    import posix

    def checked(fn):
        def wrapper(path, *a, **kw):
            guard(path, kw.get("dir_fd"), follow=False)
            return fn(path, *a, **kw)
        return wrapper

    for name in ("mkfifo", "mknod"):
        if hasattr(posix, name):
            setattr(os, name, checked(getattr(posix, name)))
            setattr(posix, name, getattr(os, name))

    # The "open" event of os.open does not carry dir_fd, so check a relative path against it here.
    real_open = posix.open

    def checked_open(path, flags, mode=0o777, *, dir_fd=None):
        if dir_fd is not None and flags & write_flags:
            guard(path, dir_fd)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    os.open = posix.open = checked_open
    try:  # the C helper behind subprocess and multiprocessing, for callers that skip Popen
        import _posixsubprocess

        def refuse(*a, **kw):
            raise PermissionError("sandbox: starting processes is not allowed")
        _posixsubprocess.fork_exec = refuse
    except ImportError:
        pass
    sys.addaudithook(hook)


def _report(exc):
    """Print a traceback without this bootstrap's frames (the guard's internals)."""
    import traceback
    te = traceback.TracebackException.from_exception(exc)
    seen = set()
    node = te
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        node.stack = traceback.StackSummary.from_list(
            [f for f in node.stack if f.filename != __file__])
        node = node.__cause__ or node.__context__
    sys.stderr.write("".join(te.format()))


def _run(script):
    import linecache
    with open(script, encoding="utf-8") as fh:
        source = fh.read()
    name = "script.py"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    try:
        code = compile(source, name, "exec")
    except SyntaxError as exc:
        _report(exc)
        sys.exit(1)
    sys.argv = [name]
    namespace = {"__name__": "__main__", "__file__": name, "__builtins__": __builtins__}
    try:
        exec(code, namespace)
    except SystemExit:
        raise
    except BaseException as exc:
        _report(exc)
        sys.exit(1)


def _main():
    work, script = os.path.realpath(sys.argv[1]), sys.argv[2]
    cpu_s, memory_mb, file_mb = (int(x) for x in sys.argv[3:6])
    sys.dont_write_bytecode = True
    sys.path.append(work)  # lets a script import helpers it was given; appended, never shadowing
    _setup(work, cpu_s, memory_mb, file_mb)
    _run(script)


_main()
'''


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
    (the agent's tool loop: run, look at the result, fix, run again)."""

    def __init__(self, inputs: Iterable[Path] = (), *, python: str = sys.executable,
                 parent: Path | None = None) -> None:
        self.python = python
        self.root = Path(tempfile.mkdtemp(prefix="skillgrad-sandbox-", dir=parent)).resolve()
        self.workdir = self.root / "work"
        self._ctl = self.root / "ctl"
        try:
            (self.workdir / SCRATCH_DIR).mkdir(parents=True)
            self._ctl.mkdir()
            (self._ctl / "bootstrap.py").write_text(_BOOTSTRAP, encoding="utf-8")
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
        except BaseException:
            self.cleanup()
            raise
        self._baseline = self._snapshot()
        self._runs = 0

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

    def run(self, code: str, *, timeout_s: float = 30, cpu_s: int = 20, memory_mb: int = 1024,
            max_output_chars: int = 4000, max_file_mb: int = 256) -> SandboxResult:
        """Run `code` with the work folder as its current directory."""
        if not self.workdir.is_dir():
            raise RuntimeError("sandbox was already cleaned up")
        self._runs += 1
        script = self._ctl / f"script_{self._runs}.py"
        script.write_text(code, encoding="utf-8")
        scratch = str(self.workdir / SCRATCH_DIR)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch,
            "TEMP": scratch, "TMP": scratch, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": scratch,
            # one thread each: BLAS pools reserve address space against RLIMIT_AS
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        }
        cmd = [self.python, "-I", "-B", str(self._ctl / "bootstrap.py"), str(self.workdir),
               str(script), str(max(1, int(cpu_s))), str(max(16, int(memory_mb))),
               str(max(1, int(max_file_mb)))]
        keep = max(1024, max_output_chars * 4)
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
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
            proc.wait()
        out.join(5)
        err.join(5)
        seconds = time.monotonic() - started
        stderr = err.text(max_output_chars)
        return SandboxResult(
            returncode=proc.returncode, stdout=out.text(max_output_chars), stderr=stderr,
            timed_out=timed_out,
            killed_reason=_reason(proc.returncode, timed_out, err, timeout_s, cpu_s, memory_mb,
                                  max_file_mb),
            workdir=self.workdir, outputs=self.outputs(), seconds=seconds)

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
    if rc == -signal.SIGXCPU:
        return f"CPU time limit of {cpu_s} s reached"
    if rc == -signal.SIGKILL:
        return f"killed (CPU time limit of {cpu_s} s or out of memory)"
    end = bytes(err.tail or err.head)[-2000:]
    if b"MemoryError" in end:
        return f"memory limit of {memory_mb} MB reached (MemoryError)"
    if b"File too large" in end:
        return f"file size limit of {file_mb} MB reached"
    if rc < 0:
        try:
            return f"killed by signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return None


def run_python(code: str, inputs: list[Path], *, timeout_s: float = 30, cpu_s: int = 20,
               memory_mb: int = 1024, max_output_chars: int = 4000, max_file_mb: int = 256,
               python: str = sys.executable) -> SandboxResult:
    """Run `code` once in a fresh sandbox holding copies of `inputs`.

    The caller reads `result.outputs` and then calls `result.cleanup()` (or uses the result as
    a context manager) to remove the sandbox folder.
    """
    box = Sandbox(inputs, python=python)
    try:
        result = box.run(code, timeout_s=timeout_s, cpu_s=cpu_s, memory_mb=memory_mb,
                         max_output_chars=max_output_chars, max_file_mb=max_file_mb)
    except BaseException:
        box.cleanup()
        raise
    result._owner = box
    return result
