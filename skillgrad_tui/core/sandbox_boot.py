"""Runs inside the sandbox's own process: confine it, then run one agent-written script.

Started by sandbox.py as `python -I -B sandbox_boot.py CONFIG.json` (inside bubblewrap when there
is one). Standard library only, and it imports nothing of skillgrad: inside bubblewrap this one
file is all of the package that exists. Before the script's first line it sets, in this order:

1. resource limits: CPU seconds, address space (memory), largest file, open files, no core dumps;
2. Landlock (config "landlock"): the kernel refuses every file access outside the folders named
   (read-only: Python and the skill's scripts; read-write: the work folder), TCP bind/connect,
   and signals or abstract sockets that leave the sandbox;
3. a seccomp filter: no new processes (fork, vfork, clone without CLONE_THREAD; clone3 reports
   ENOSYS so threads fall back to clone) and no sockets of any family;
4. an audit hook (PEP 578) that refuses, with a clear "sandbox:" message, what an honest but
   careless script gets wrong: writes outside the work folder, processes, network, new limits.
   It runs in the script's own process, so a hostile script can switch it off; 1-3 are the
   boundary, 4 is the explanation.

Exit status 125 with a "sandbox:" line on stderr means a confinement that was asked for could not
be set up; the script did not run.
"""

# Annotations stay strings and `typing` is never imported: the bootstrap starts on every script run,
# so the types cost it nothing at run time. mypy reads the TYPE_CHECKING block; Python skips it.
from __future__ import annotations

import ctypes
import json
import os
import platform
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn, TypedDict

    from _typeshed import StrOrBytesPath

    PathOrFd = StrOrBytesPath | int  # what os calls accept: str, bytes, a PathLike, or a descriptor

    class LandlockConfig(TypedDict, total=False):
        read: list[str]
        rw_files: list[str]

    class BootConfig(TypedDict, total=False):
        """The JSON file sandbox.py writes (`Sandbox._config`)."""
        work: str
        script: str
        cpu_s: int
        memory_mb: int
        file_mb: int
        open_files: int
        import_paths: list[str]
        seccomp: bool
        landlock: LandlockConfig | None

SETUP_FAILED = 125


def fail(message: str) -> NoReturn:
    sys.stderr.write("sandbox: %s; the script was not run\n" % message)
    sys.exit(SETUP_FAILED)


# ------------------------------------------------------------------------------ 1. resource limits


def set_limits(cpu_s: int, memory_mb: int, file_mb: int, open_files: int) -> None:
    import resource

    def limit(kind: int, soft: int, hard: int) -> None:
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
    limit(resource.RLIMIT_NOFILE, open_files, open_files)
    limit(resource.RLIMIT_CORE, 0, 0)


# ------------------------------------------------------------------------------------- 2. Landlock

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

# Syscall numbers (x86_64 / aarch64); Landlock's are the same on both.
_ARCH = platform.machine()
_NR: dict[str, int] | None = {
    "x86_64": {"clone": 56, "fork": 57, "vfork": 58, "clone3": 435, "socket": 41, "socketpair": 53},
    "aarch64": {"clone": 220, "clone3": 435, "socket": 198, "socketpair": 199},
}.get(_ARCH)
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}.get(_ARCH)
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

# Filesystem rights by the ABI version that added them.
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_ABI1 = (1 << 13) - 1  # execute .. make_sym
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1


def landlock_abi() -> int:
    abi: int = _libc.syscall(LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                             ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    return abi


def apply_landlock(read_paths: list[str], write_paths: list[str], rw_files: list[str]) -> None:
    abi = landlock_abi()
    if abi < 1:
        fail("Landlock is not available (errno %d)" % ctypes.get_errno())
    handled = FS_ABI1 | (FS_REFER if abi >= 2 else 0) | (FS_TRUNCATE if abi >= 3 else 0) \
        | (FS_IOCTL_DEV if abi >= 5 else 0)
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    fields = [handled] + ([net] if abi >= 4 else []) + ([scoped] if abi >= 6 else [])
    attr = ctypes.create_string_buffer(struct.pack("=%dQ" % len(fields), *fields))
    ruleset = _libc.syscall(LANDLOCK_CREATE_RULESET, attr, ctypes.c_size_t(len(attr.raw)), ctypes.c_uint32(0))
    if ruleset < 0:
        fail("cannot create a Landlock ruleset (errno %d)" % ctypes.get_errno())
    read = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
    rules = [(p, read) for p in read_paths] + [(p, handled) for p in write_paths] \
        + [(p, (FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE) & handled) for p in rw_files]
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # a path this machine does not have
        if not os.path.isdir(path):
            rights &= FILE_RIGHTS
        rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd))  # packed path_beneath_attr
        done = _libc.syscall(LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                             rule, ctypes.c_uint32(0))
        os.close(fd)
        if done != 0:
            fail("cannot add a Landlock rule for %s (errno %d)" % (path, ctypes.get_errno()))
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        fail("cannot set no_new_privs")
    if _libc.syscall(LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
        fail("cannot enforce the Landlock ruleset (errno %d)" % ctypes.get_errno())
    os.close(ruleset)


# -------------------------------------------------------------------------------------- 3. seccomp

_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_JSET_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_EPERM, _ENOSYS = 1, 38
_CLONE_THREAD = 0x00010000


def seccomp_program(nr: dict[str, int], audit_arch: int) -> list[tuple[int, int, int, int]]:
    """cBPF: other architectures' calls (i386 on x86_64, x32) refused; clone only for threads;
    fork, vfork, socket, socketpair refused; clone3 'not implemented' (glibc then uses clone)."""
    deny = [nr[name] for name in ("fork", "vfork", "socket", "socketpair") if name in nr]
    prog = [(_BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
            (_BPF_JEQ_K, 1, 0, audit_arch),
            (_BPF_RET_K, 0, 0, _RET_ERRNO | _ENOSYS),
            (_BPF_LD_W_ABS, 0, 0, 0)]  # seccomp_data.nr
    if _ARCH == "x86_64":
        prog += [(_BPF_JGE_K, 0, 1, 0x40000000), (_BPF_RET_K, 0, 0, _RET_ERRNO | _ENOSYS)]
    prog += [(_BPF_JEQ_K, 0, 1, nr["clone3"]), (_BPF_RET_K, 0, 0, _RET_ERRNO | _ENOSYS)]
    for denied in deny:
        prog += [(_BPF_JEQ_K, 0, 1, denied), (_BPF_RET_K, 0, 0, _RET_ERRNO | _EPERM)]
    prog += [(_BPF_JEQ_K, 0, 3, nr["clone"]),
             (_BPF_LD_W_ABS, 0, 0, 16),  # args[0], low 32 bits: the clone flags
             (_BPF_JSET_K, 1, 0, _CLONE_THREAD),
             (_BPF_RET_K, 0, 0, _RET_ERRNO | _EPERM),
             (_BPF_RET_K, 0, 0, _RET_ALLOW)]
    return prog


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def apply_seccomp() -> None:
    if _NR is None or _AUDIT_ARCH is None:
        fail("no seccomp filter for the %s architecture" % _ARCH)
    prog = seccomp_program(_NR, _AUDIT_ARCH)
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = _SockFprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        fail("cannot set no_new_privs")
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        fail("cannot install the seccomp filter (errno %d)" % ctypes.get_errno())


# ----------------------------------------------------------------------------------- 4. audit hook


def install_audit_hook(work: str) -> None:
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

    def base_dir(dir_fd: int | None) -> str:
        if dir_fd is None or dir_fd < 0:
            return os.getcwd()
        return os.readlink("/proc/self/fd/%d" % dir_fd)

    def resolve(path: PathOrFd, dir_fd: int | None = None, follow: bool = True) -> str:
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

    def inside(resolved: str, allow_root: bool = False) -> bool:
        return resolved.startswith(work + os.sep) or (allow_root and resolved == work)

    def guard(path: PathOrFd, dir_fd: int | None = None, follow: bool = True, what: str = "writing",
              allow_root: bool = False) -> None:
        target = resolve(path, dir_fd, follow)
        if not inside(target, allow_root):
            raise PermissionError(
                "sandbox: %s outside the work directory is not allowed: %s" % (what, target))

    def fd(args: tuple[object, ...], i: int) -> int | None:
        value = args[i] if len(args) > i else None
        return value if isinstance(value, int) else None

    def check(event: str, args: tuple[Any, ...]) -> None:
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

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if state["busy"]:
            return
        state["busy"] = True
        try:
            check(event, args)
        finally:
            state["busy"] = False

    # os.mkfifo and os.mknod raise no audit event: wrap them.
    import posix

    def checked(fn: Callable[..., None]) -> Callable[..., None]:
        def wrapper(path: PathOrFd, *a: Any, **kw: Any) -> None:
            guard(path, kw.get("dir_fd"), follow=False)
            return fn(path, *a, **kw)
        return wrapper

    for name in ("mkfifo", "mknod"):
        if hasattr(posix, name):
            setattr(os, name, checked(getattr(posix, name)))
            setattr(posix, name, getattr(os, name))

    # The "open" event of os.open does not carry dir_fd, so check a relative path against it here.
    real_open = posix.open

    def checked_open(path: StrOrBytesPath, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is not None and flags & write_flags:
            guard(path, dir_fd)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    os.open = posix.open = checked_open
    try:  # the C helper behind subprocess and multiprocessing, for callers that skip Popen
        import _posixsubprocess

        def refuse(*a: object, **kw: object) -> NoReturn:
            raise PermissionError("sandbox: starting processes is not allowed")
        _posixsubprocess.fork_exec = refuse
    except ImportError:
        pass
    sys.addaudithook(hook)


# ------------------------------------------------------------------------------------- the script


def report(exc: BaseException) -> None:
    """Print a traceback without this bootstrap's frames (the guard's internals)."""
    import traceback
    te = traceback.TracebackException.from_exception(exc)
    seen: set[int] = set()
    node: traceback.TracebackException | None = te
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        node.stack = traceback.StackSummary.from_list(
            [f for f in node.stack if f.filename != __file__])
        node = node.__cause__ or node.__context__
    sys.stderr.write("".join(te.format()))


def run_script(path: str | os.PathLike[str], *args: object) -> int:
    """Run a Python file as `python path args...` would, in this process; returns its exit code."""
    import runpy
    saved = sys.argv
    sys.argv = [str(path), *[str(a) for a in args]]
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def run(source: str) -> None:
    import linecache
    name = "script.py"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    try:
        code = compile(source, name, "exec")
    except SyntaxError as exc:
        report(exc)
        sys.exit(1)
    sys.argv = [name]
    import builtins
    setattr(builtins, "run_script", run_script)  # a skill's `python scripts/x.py args`, without a new process
    namespace = {"__name__": "__main__", "__file__": name, "__builtins__": __builtins__}
    try:
        exec(code, namespace)
    except SystemExit:
        raise
    except BaseException as exc:
        report(exc)
        sys.exit(1)


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as fh:
        config: BootConfig = json.load(fh)
    with open(config["script"], encoding="utf-8") as fh:
        source = fh.read()
    work = os.path.realpath(config["work"])
    sys.dont_write_bytecode = True
    sys.path.append(work)  # lets a script import helpers it was given; appended, never shadowing
    sys.path.extend(config.get("import_paths", []))  # the skill's own scripts
    set_limits(config["cpu_s"], config["memory_mb"], config["file_mb"], config["open_files"])
    landlock = config.get("landlock")
    if landlock is not None:
        apply_landlock(landlock["read"], [work], landlock.get("rw_files", []))
    if config.get("seccomp"):
        apply_seccomp()
    install_audit_hook(work)
    run(source)


if __name__ == "__main__":
    main()
