"""The script sandbox: copies in, limits on, nothing written outside its work folder."""

from __future__ import annotations

import os
import sys
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
        assert "PermissionError: sandbox:" in r.stderr
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
