"""The script sandbox: copies in, limits on, nothing written outside its work folder."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest

from skillgrad_tui.core.sandbox import Sandbox, run_python

FAST = {"timeout_s": 20, "cpu_s": 10}


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """A folder outside any sandbox that scripts will try to write into."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "keep.txt").write_text("original")
    return d


def _untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "original"


@pytest.mark.parametrize("code", [
    "open({target!r}, 'w').write('x')",                               # absolute path
    "open('../../' + {name!r}, 'a').write('x')",                       # relative, climbing out
    "import os; os.symlink({outdir!r}, 'link')\nopen('link/new.txt', 'w').write('x')",
    "import os\nos.makedirs('d', exist_ok=True)\nopen('d/f.txt', 'w').write('x')\n"
    "os.rename('d/f.txt', {target!r})",                                # move a file out
    "import shutil; shutil.copy('input.txt', {target!r})",
    "import os; os.remove({keep!r})",
    "import os; os.chmod({keep!r}, 0o777)",
    "import os; os.mkdir({target!r})",
    "import os\nfd = os.open({outdir!r}, os.O_RDONLY)\n"
    "os.close(os.open('new.txt', os.O_WRONLY | os.O_CREAT, dir_fd=fd))",
    "import os; os.link({keep!r}, 'hard')\nopen('hard', 'w').write('x')",
])
def test_writes_outside_the_workdir_are_refused(tmp_path: Path, outside: Path, code: str) -> None:
    src = tmp_path / "input.txt"
    src.write_text("in")
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    box = Sandbox([src], parent=boxes)
    try:
        # climbing from work/ twice reaches boxes/, the sandbox's parent: outside the sandbox
        script = code.format(target=str(outside / "new.txt"), keep=str(outside / "keep.txt"),
                             outdir=str(outside), name="escape.txt")
        r = box.run(script, **FAST)
        assert r.returncode == 1, r.stderr
        # The hook explains the refusal; where the OS confines files it may refuse first (the
        # outside folder does not even exist inside bubblewrap).
        assert "PermissionError: sandbox:" in r.stderr or (
            box.mode != "hook" and ("FileNotFoundError" in r.stderr or "PermissionError" in r.stderr)), r.stderr
        _untouched(outside)
        assert not (tmp_path / "boxes" / "escape.txt").exists()
        assert src.read_text() == "in"
    finally:
        box.cleanup()
    assert list((tmp_path / "boxes").iterdir()) == []


def test_writing_through_a_planted_symlink_is_refused(outside: Path) -> None:
    # The script cannot make such a link itself (see above), but paths are resolved at open
    # time all the same: a link found in the work folder does not lead out of it.
    with Sandbox() as box:
        (box.workdir / "l").symlink_to(outside / "keep.txt")
        (box.workdir / "d").symlink_to(outside)
        for code in ("open('l', 'w').write('x')", "open('d/new.txt', 'w').write('x')",
                     "import os; os.remove('d/keep.txt')"):
            r = box.run(code, **FAST)
            assert r.returncode == 1 and "PermissionError: sandbox:" in r.stderr, code
        assert box.outputs() == []  # links are never reported as outputs
    _untouched(outside)


def test_a_busy_loop_is_stopped_by_the_cpu_limit() -> None:
    with run_python("while True:\n    pass\n", [], timeout_s=30, cpu_s=1) as r:
        assert r.returncode != 0 and not r.timed_out
        assert r.killed_reason is not None and "CPU time limit" in r.killed_reason
        assert r.seconds < 15


def test_a_sleeper_is_stopped_by_the_wall_clock() -> None:
    with run_python("import time\ntime.sleep(60)\n", [], timeout_s=1, cpu_s=10) as r:
        assert r.timed_out and r.returncode != 0
        assert r.killed_reason is not None and "wall-clock" in r.killed_reason
        assert r.seconds < 10


def test_a_memory_hog_is_stopped() -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 1024 * 1024))\n"
    with run_python(code, [], memory_mb=256, **FAST) as r:
        assert r.returncode != 0
        assert r.killed_reason is not None and "memory limit of 256 MB" in r.killed_reason


def test_a_huge_file_is_stopped_by_the_size_limit() -> None:
    code = "with open('big.bin', 'wb') as f:\n    f.write(b'x' * (3 * 1024 * 1024))\n"
    with run_python(code, [], max_file_mb=1, **FAST) as r:
        assert r.returncode != 0
        assert r.killed_reason is not None and "file size limit" in r.killed_reason


@pytest.mark.parametrize("code, event", [
    ("import subprocess; subprocess.run(['true'])", "subprocess.Popen"),
    ("import os; os.system('true')", "os.system"),
    ("import os; os.fork()", "os.fork"),
    ("import os; os.execv('/bin/true', ['true'])", "os.exec"),
    ("import multiprocessing as m\np = m.Process(target=print)\np.start()", "os.fork"),
    ("import socket; socket.create_connection(('127.0.0.1', 9), timeout=1)", "socket."),
    ("import ctypes; ctypes.CDLL(None).fork()", "through ctypes"),
    ("import resource; resource.setrlimit(resource.RLIMIT_CPU, (999, 999))", "resource limits"),
])
def test_processes_and_network_are_refused(code: str, event: str) -> None:
    with run_python(code, [], **FAST) as r:
        assert r.returncode == 1
        assert "PermissionError: sandbox:" in r.stderr and event in r.stderr


def test_output_is_truncated_with_a_marker() -> None:
    code = "print('HEAD')\nprint('x' * 50000)\nimport sys\nprint('TAIL-ERR', file=sys.stderr)\n" \
           "sys.stderr.write('e' * 50000 + 'END')\n"
    with run_python(code, [], max_output_chars=500, **FAST) as r:
        assert r.returncode == 0
        assert r.stdout.startswith("HEAD") and "bytes of output truncated" in r.stdout
        assert len(r.stdout) < 600
        assert r.stderr.endswith("END") and "truncated" in r.stderr and len(r.stderr) < 600


def test_errors_show_a_clean_traceback() -> None:
    with run_python("def f():\n    return 1 / 0\nf()\n", [], **FAST) as r:
        assert r.returncode == 1
        assert 'File "script.py", line 2, in f' in r.stderr and "ZeroDivisionError" in r.stderr
        assert "bootstrap" not in r.stderr
    with run_python("def f(:\n", [], **FAST) as r:
        assert r.returncode == 1 and "SyntaxError" in r.stderr


def test_openpyxl_edits_a_copy_and_reports_outputs(tmp_path: Path) -> None:
    src = tmp_path / "data.xlsx"
    wb = openpyxl.Workbook()
    wb.active["A1"] = 41
    wb.save(src)
    os.utime(src, ns=(1_000_000_000, 1_000_000_000))
    before = (src.read_bytes(), os.stat(src).st_mtime_ns)
    code = (
        "import openpyxl, tempfile, os\n"
        "wb = openpyxl.load_workbook('data.xlsx')\n"
        "wb.active['A1'] = wb.active['A1'].value + 1\n"
        "wb.save('data.xlsx')\n"
        "wb.save('answer.xlsx')\n"
        "with tempfile.NamedTemporaryFile(delete=False) as t:\n"
        "    t.write(b'scratch')\n"
        "print(os.getcwd())\n"
    )
    r = run_python(code, [src], python=sys.executable, **FAST)
    try:
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == str(r.workdir)
        assert [p.name for p in r.outputs] == ["answer.xlsx", "data.xlsx"]  # scratch excluded
        assert all(p.parent == r.workdir for p in r.outputs)
        assert openpyxl.load_workbook(r.workdir / "answer.xlsx").active["A1"].value == 42
        assert (src.read_bytes(), os.stat(src).st_mtime_ns) == before
        assert r.killed_reason is None and not r.timed_out
    finally:
        r.cleanup()
    assert not r.workdir.exists()


def test_a_sandbox_keeps_state_between_runs(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("1")
    with Sandbox([src]) as box:
        first = box.run("open('mid.txt', 'w').write('a')", **FAST)
        assert [p.name for p in first.outputs] == ["mid.txt"]
        second = box.run("print(open('mid.txt').read()); open('in.txt', 'a').write('2')", **FAST)
        assert second.stdout == "a\n"
        assert [p.name for p in second.outputs] == ["in.txt", "mid.txt"]
        second.cleanup()  # results of Sandbox.run do not own the folder
        assert box.workdir.is_dir()
        root = box.root
    assert not root.exists()
    assert src.read_text() == "1"


def test_inputs_must_exist_and_have_distinct_names(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Sandbox([tmp_path / "missing.xlsx"])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.txt").write_text("1")
    (tmp_path / "b" / "x.txt").write_text("2")
    with pytest.raises(ValueError, match="x.txt"):
        Sandbox([tmp_path / "a" / "x.txt", tmp_path / "b" / "x.txt"], parent=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # nothing left behind


def test_cleanup_copes_with_read_only_folders() -> None:
    r = run_python("import os\nos.makedirs('ro/sub')\nopen('ro/sub/f', 'w').write('x')\n"
                   "os.chmod('ro/sub', 0o500)\nos.chmod('ro', 0o500)\n", [], **FAST)
    assert r.returncode == 0, r.stderr
    r.cleanup()
    assert not r.workdir.exists()


# ------------------------------------------------------------------ the OS boundary (issue 14)
#
# Each escape below first switches the audit hook off from inside the script, as a hostile script
# can (the closure trick of issue 14), so that what stops it is the operating system: bubblewrap's
# namespaces or Landlock, plus seccomp and the resource limits. "hook" mode is not a boundary and
# says so; these tests do not run on it.

from skillgrad_tui.core import sandbox as sb  # noqa: E402

DISABLE_HOOK = """
import gc
for _f in gc.get_objects():
    if type(_f).__name__ == "function" and _f.__name__ == "hook" and _f.__closure__:
        for _cell in _f.__closure__:
            if isinstance(_cell.cell_contents, dict) and "busy" in _cell.cell_contents:
                _cell.cell_contents["busy"] = True  # the hook now waves everything through
import socket
try:
    socket.socket()
except OSError as _e:
    assert "sandbox:" not in str(_e), "the hook is still on"  # refused by the OS, not the hook
print("HOOK OFF")
"""
CONFINED = [pytest.param(m, marks=pytest.mark.skipif(sb.mode_problem(m) is not None,
                                                      reason=f"{m}: {sb.mode_problem(m)}"))
            for m in ("bwrap", "landlock")]


@pytest.fixture()
def home_secret() -> Iterator[Path]:
    import tempfile

    fd, name = tempfile.mkstemp(prefix=".skillgrad-sandbox-test-", dir=Path.home())
    os.write(fd, b"SECRET-IN-HOME")
    os.close(fd)
    yield Path(name)
    os.unlink(name)


def _escape(mode: str, code: str, inputs: list[Path] | None = None, **kw: object) -> "sb.SandboxResult":
    r = run_python(DISABLE_HOOK + code, inputs or [], mode=mode, **{**FAST, **kw})  # type: ignore[arg-type]
    assert r.mode == mode
    assert "HOOK OFF" in r.stdout, r.stderr
    return r


@pytest.mark.parametrize("mode", CONFINED)
def test_closure_and_ctypes_escapes_do_not_write_outside(mode: str, tmp_path: Path, outside: Path) -> None:
    skill_scripts = tmp_path / "skill" / "scripts"
    skill_scripts.mkdir(parents=True)
    (skill_scripts / "helper.py").write_text("X = 1\n")
    targets = [outside / "new.txt", outside / "keep.txt", skill_scripts / "helper.py", Path("/tmp") / f"sg-{mode}.txt"]
    code = f"""
import ctypes, os
libc = ctypes.CDLL(None)
dlsym = libc.dlsym
dlsym.restype, dlsym.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
raw_open = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_int)(dlsym(None, b"open"))
for t in {[str(t) for t in targets]!r}:
    print("ctypes", t, raw_open(t.encode(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
    try:
        open(t, "w").write("escaped")
        print("WROTE", t)
    except OSError as e:
        print("refused", t, type(e).__name__)
    try:
        os.remove(t)
        print("REMOVED", t)
    except OSError:
        pass
"""
    with Sandbox(mode=mode, skill_scripts=skill_scripts) as box:
        r = box.run(DISABLE_HOOK + code, **FAST)
    assert "HOOK OFF" in r.stdout, r.stderr
    assert "WROTE" not in r.stdout and "REMOVED" not in r.stdout, r.stdout
    assert r.stdout.count(" -1\n") == len(targets), r.stdout  # every raw open(2) failed
    _untouched(outside)
    assert (skill_scripts / "helper.py").read_text() == "X = 1\n"
    assert not (Path("/tmp") / f"sg-{mode}.txt").exists()


@pytest.mark.parametrize("mode", CONFINED)
def test_the_users_files_cannot_be_read(mode: str, tmp_path: Path, home_secret: Path) -> None:
    skill = tmp_path / "skill"
    (skill / "scripts").mkdir(parents=True)
    (skill / "scripts" / "helper.py").write_text("ANSWER = 42\n")
    (skill / "SKILL.md").write_text("SKILL-TEXT")
    task_input = tmp_path / "input.csv"
    task_input.write_text("a,b\n1,2\n")
    code = f"""
import helper, os
print("helper", helper.ANSWER, os.environ["SKILL_SCRIPTS"])
print("input", open("input.csv").read().splitlines()[1])
for p in ("/etc/passwd", {str(home_secret)!r}, {str(skill / 'SKILL.md')!r}, {str(task_input)!r}):
    try:
        print("READ", p, open(p).read()[:20])
    except OSError as e:
        print("denied", p, type(e).__name__)
try:
    print("LISTED", os.listdir({str(Path.home())!r}))
except OSError as e:
    print("denied listing home", type(e).__name__)
"""
    with Sandbox([task_input], mode=mode, skill_scripts=skill / "scripts") as box:
        r = box.run(DISABLE_HOOK + code, **FAST)
    assert r.returncode == 0, r.stderr
    assert "helper 42" in r.stdout and "input 1,2" in r.stdout  # what the task may read, it can
    assert "READ" not in r.stdout, r.stdout  # the copy in work/ is readable, the original is not
    assert "SECRET-IN-HOME" not in r.stdout and "root:" not in r.stdout and "SKILL-TEXT" not in r.stdout
    assert not any(home_secret.name in line for line in r.stdout.splitlines() if line.startswith("LISTED"))


@pytest.mark.parametrize("mode", CONFINED)
def test_no_network_even_to_the_hosts_loopback(mode: str) -> None:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(3)
    port = server.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    code = f"""
import ctypes, socket
for family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
        print("SOCKET", family)
        s.connect(("127.0.0.1", {port}))
        print("CONNECTED")
    except OSError as e:
        print("refused", family, e.errno)
libc = ctypes.CDLL(None)
print("raw socket", libc.socket(2, 1, 0))
"""
    try:
        r = _escape(mode, code)
    finally:
        t.join(5)
        server.close()
    assert "SOCKET" not in r.stdout and "CONNECTED" not in r.stdout, r.stdout
    assert "raw socket -1" in r.stdout
    assert accepted == []


@pytest.mark.parametrize("mode", CONFINED)
def test_no_new_processes_a_fork_bomb_gets_nowhere(mode: str) -> None:
    # Bounded (50 tries), so that a broken filter could not take the test machine down.
    code = """
import ctypes, os, time
made = 0
libc = ctypes.CDLL(None)
dlsym = libc.dlsym
dlsym.restype, dlsym.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
raw_fork = ctypes.CFUNCTYPE(ctypes.c_int)(dlsym(None, b"fork"))
for i in range(50):
    try:
        pid = os.fork() if i % 2 else raw_fork()
    except OSError:
        pid = -1
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    made += pid > 0
print("forked", made)
import subprocess
try:
    subprocess.run(["/bin/true"])
    print("SPAWNED")
except OSError as e:
    print("no spawn", e.errno)
"""
    r = _escape(mode, code)
    assert "forked 0" in r.stdout and "SPAWNED" not in r.stdout, r.stdout


@pytest.mark.parametrize("mode", [*CONFINED, "hook"])
def test_limits_hold_in_every_mode(mode: str) -> None:
    with run_python("chunks = []\nwhile True:\n    chunks.append(bytearray(64 << 20))\n", [], mode=mode,
                    memory_mb=256, **FAST) as r:
        assert r.returncode != 0 and r.mode == mode
        assert r.killed_reason is not None and "memory limit of 256 MB" in r.killed_reason
    with run_python("while True:\n    pass\n", [], mode=mode, timeout_s=30, cpu_s=1) as r:
        assert not r.timed_out and r.killed_reason is not None and "CPU time limit" in r.killed_reason
    with run_python("import time\ntime.sleep(60)\n", [], mode=mode, timeout_s=1, cpu_s=10) as r:
        assert r.timed_out and r.seconds < 10 and "wall-clock" in (r.killed_reason or "")


def test_the_mode_is_the_strongest_available_and_a_missing_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = next(m for m in sb.MODES if sb.mode_problem(m) is None)
    monkeypatch.delenv(sb.MODE_ENV, raising=False)
    assert sb.choose_mode() == expected
    assert "weak" in sb.describe("hook") and "weaker" in sb.describe("landlock")
    with pytest.raises(sb.SandboxError, match="unknown sandbox mode"):
        sb.choose_mode("chroot")
    monkeypatch.setenv(sb.MODE_ENV, "hook")
    with run_python("print(1)", []) as r:
        assert r.mode == "hook"
    monkeypatch.setenv("PATH", "/nonexistent")
    sb.bwrap_problem.cache_clear()
    try:
        with pytest.raises(sb.SandboxError, match="'bwrap' is not available: bwrap is not installed"):
            Sandbox(mode="bwrap")
    finally:
        sb.bwrap_problem.cache_clear()


def test_the_bootstrap_is_a_real_module_file() -> None:
    boot = Path(sb.__file__).with_name("sandbox_boot.py")
    assert sb.BOOT == boot and boot.is_file()
    import ast

    tree = ast.parse(boot.read_text(encoding="utf-8"))
    imported = {n.names[0].name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "skillgrad_tui" not in imported  # inside bubblewrap this file is all of the package there is
    assert not hasattr(sb, "_BOOTSTRAP")
