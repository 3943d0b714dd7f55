"""Suite loading (WTQ layout, JSONL, detection) and seeded splits."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from skillgrad_tui.core.errors import SuiteError
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.suites import load_suite, wtq_splits
from skillgrad_tui.core.suites.splits import select_split, split_tasks
from skillgrad_tui.core.suites.wtq import tsv_unescape, tsv_unescape_list

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WTQ = SHARED / "benchmarks" / "wikitablequestions"
BUNDLED = REPO / "skills" / "suites" / "table-qa"
needs_wtq = pytest.mark.skipif(not WTQ.is_dir(), reason=f"shared WTQ data not found at {WTQ}")

HEADER = "id\tutterance\tcontext\ttargetValue\n"
TAGGED_HEADER = "id\tutterance\tcontext\ttargetValue\ttargetCanon\ttargetCanonType\n"


# --- WikiTableQuestions layout -------------------------------------------------------------------


@needs_wtq
def test_shared_wtq_splits() -> None:
    assert wtq_splits(WTQ) == ["pristine-unseen-tables", "training"]
    test = load_suite(WTQ, "pristine-unseen-tables")
    train = load_suite(WTQ, "training")
    assert (test.format, test.source_split, len(test.tasks)) == ("wtq", "pristine-unseen-tables", 300)
    assert (train.source_split, len(train.tasks)) == ("training", 200)
    assert [t.id for t in train.tasks] == [f"nt-{i}" for i in range(200)]
    first = test.tasks[0]
    assert first.question == "which country had the most cyclists finish within the top 10?"
    assert first.expected == ["Italy"] and first.kind == "table_qa" and first.evaluator == "wtq"
    assert first.meta["table"] == "csv/203-csv/733.csv"
    assert first.meta["canon"] == ["Italy"] and first.meta["canon_type"] == "string"
    assert first.context_files == [(WTQ / "csv" / "203-csv" / "733.csv").resolve()]
    for task in test.tasks + train.tasks:
        assert task.context_files[0].is_absolute() and task.context_files[0].is_file()
    assert all("canon" not in t.meta for t in train.tasks)  # no training .tagged upstream
    lists = {t.id: t.expected for t in test.tasks}
    assert lists["nu-10"] == ["2004", "2005", "2006"]


@needs_wtq
def test_ambiguous_or_unknown_split_is_an_error() -> None:
    with pytest.raises(SuiteError) as err:
        load_suite(WTQ)
    assert "pristine-unseen-tables" in str(err.value) and "training" in str(err.value)
    with pytest.raises(SuiteError, match="no split 'dev'"):
        load_suite(WTQ, "dev")


@needs_wtq
def test_a_tsv_file_selects_its_split() -> None:
    suite = load_suite(WTQ / "data" / "training.tsv")
    assert suite.source_split == "training" and len(suite.tasks) == 200
    with pytest.raises(SuiteError):
        load_suite(WTQ / "data" / "training.tsv", "pristine-unseen-tables")


def test_bundled_suite() -> None:
    suite = load_suite(BUNDLED)
    assert suite.name == "table-qa" and suite.source_split == "training"
    assert [t.id for t in suite.tasks] == [f"nt-{i}" for i in range(40)]
    for task in suite.tasks:
        table = task.context_files[0]
        assert table.is_file() and BUNDLED.resolve() in table.parents
        assert table.with_suffix(".tsv").is_file()
    assert (BUNDLED / "LICENSE").is_file() and "CC BY-SA 4.0" in (BUNDLED / "ATTRIBUTION.md").read_text()


@needs_wtq
def test_bundled_suite_is_a_faithful_copy_of_training_rows() -> None:
    shared_lines = (WTQ / "data" / "training.tsv").read_text(encoding="utf-8").split("\n")
    assert (BUNDLED / "data" / "training.tsv").read_text(encoding="utf-8") == "\n".join(shared_lines[:41]) + "\n"
    assert (BUNDLED / "LICENSE").read_bytes() == (WTQ / "LICENSE").read_bytes()
    for table in sorted((BUNDLED / "csv").glob("*-csv/*")):
        assert table.read_bytes() == (WTQ / table.relative_to(BUNDLED)).read_bytes()


def _mini_wtq(root: Path, rows: list[str], split: str = "training") -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "csv" / "200-csv").mkdir(parents=True, exist_ok=True)
    (root / "csv" / "200-csv" / "0.csv").write_text('"Name","Year"\n"a","2000"\n', encoding="utf-8")
    (root / "data" / f"{split}.tsv").write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return root


def test_tsv_escapes(tmp_path: Path) -> None:
    assert tsv_unescape(r"a\nb\pc\\d") == "a\nb|c\\d"
    assert tsv_unescape(r"\\n") == "\\n"  # backslash then n, not a newline
    assert tsv_unescape_list(r"x\py|z") == ["x|y", "z"]
    root = _mini_wtq(tmp_path, [r"nt-0	what is\nthis?	csv/200-csv/0.csv	x\py|z"])
    task = load_suite(root).tasks[0]
    assert task.question == "what is\nthis?" and task.expected == ["x|y", "z"]


def test_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    good = "nt-0\tq?\tcsv/200-csv/0.csv\ta"
    root = _mini_wtq(tmp_path / "cols", [good, "nt-1\tq?\tcsv/200-csv/0.csv"])
    with pytest.raises(SuiteError) as err:
        load_suite(root)
    assert err.value.path == root.resolve() / "data" / "training.tsv" and err.value.line == 3
    assert "columns" in str(err.value) and ":3:" in str(err.value)

    root = _mini_wtq(tmp_path / "table", [good, good.replace("nt-0", "nt-1"),
                                          "nt-2\tq?\tcsv/200-csv/9.csv\ta"])
    with pytest.raises(SuiteError, match="table file not found") as err:
        load_suite(root)
    assert err.value.line == 4

    root = _mini_wtq(tmp_path / "dup", [good, good])
    with pytest.raises(SuiteError, match="duplicate id") as err:
        load_suite(root)
    assert err.value.line == 3

    root = _mini_wtq(tmp_path / "escape", ["nt-0\tq?\t../outside.csv\ta"])
    with pytest.raises(SuiteError, match="relative"):
        load_suite(root)


def test_tagged_canon_is_attached_and_checked(tmp_path: Path) -> None:
    root = _mini_wtq(tmp_path, ["nt-0\tq?\tcsv/200-csv/0.csv\t2,000|Oct 2011"])
    tagged = root / "tagged" / "data"
    tagged.mkdir(parents=True)
    (tagged / "training.tagged").write_text(
        TAGGED_HEADER + "nt-0\tq?\tcsv/200-csv/0.csv\t2,000|Oct 2011\t2000.0|2011-10-xx\tnumber\n",
        encoding="utf-8")
    task = load_suite(root).tasks[0]
    assert task.meta["canon"] == ["2000.0", "2011-10-xx"] and task.meta["canon_type"] == "number"
    (tagged / "training.tagged").write_text(
        TAGGED_HEADER + "nt-0\tq?\tcsv/200-csv/0.csv\t2,000|Oct 2011\t2000.0\tnumber\n", encoding="utf-8")
    with pytest.raises(SuiteError, match="canonical") as err:
        load_suite(root)
    assert err.value.path is not None and err.value.path.name == "training.tagged" and err.value.line == 2


def test_upstream_like_checkout_lists_its_splits(tmp_path: Path) -> None:
    row = ["nt-0\tq?\tcsv/200-csv/0.csv\ta"]
    for split in ("training", "pristine-unseen-tables", "random-split-1-train", "random-split-1-dev"):
        _mini_wtq(tmp_path, row, split)
    (tmp_path / "data" / "training.examples").write_text("(example)\n", encoding="utf-8")
    with pytest.raises(SuiteError) as err:
        load_suite(tmp_path)
    assert "4 splits" in str(err.value) and "random-split-1-dev" in str(err.value)
    assert load_suite(tmp_path, "random-split-1-train").source_split == "random-split-1-train"


# --- detection -------------------------------------------------------------------------------


def test_nothing_to_load(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="not found"):
        load_suite(tmp_path / "missing")
    with pytest.raises(SuiteError, match="no suite here"):
        load_suite(tmp_path)
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(SuiteError, match="not a suite file"):
        load_suite(tmp_path / "notes.txt")


def test_spreadsheetbench_takes_no_split(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text("[]", encoding="utf-8")
    with pytest.raises(SuiteError, match="no named splits"):
        load_suite(tmp_path, "train")


def test_spreadsheetbench_is_detected() -> None:
    pytest.importorskip("skillgrad_tui.core.suites.spreadsheetbench",
                        reason="the SpreadsheetBench loader is another module's job")
    root = SHARED / "benchmarks" / "spreadsheetbench"
    if not (root / "dataset.json").is_file():
        pytest.skip(f"shared SpreadsheetBench data not found at {root}")
    suite = load_suite(root)
    assert suite.format == "spreadsheetbench" and len(suite.tasks) == 60


# --- JSONL -----------------------------------------------------------------------------------


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_suite(tmp_path: Path) -> None:
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "t.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    lines = [
        "# a comment, then a blank line",
        "",
        json.dumps({"id": "q1", "question": "sum?", "answer": "3", "evaluator": "numeric",
                    "tolerance": 0.01, "context": ["tables/t.csv"], "split": "train"}),
        json.dumps({"id": "q2", "question": "cols?", "answer": ["a", "b"], "evaluator": "exact",
                    "split": "test"}),
        json.dumps({"id": "q3", "question": "year?", "answer": "19\\d\\d", "evaluator": "regex"}),
    ]
    _write_jsonl(tmp_path / "tasks.jsonl", lines)
    suite = load_suite(tmp_path)
    assert suite.format == "jsonl" and suite.name == tmp_path.name
    q1, q2, q3 = suite.tasks
    assert q1.expected == ["3"] and q1.meta["tolerance"] == 0.01 and q1.meta["line"] == 3
    assert q1.context_files == [(tmp_path / "tables" / "t.csv").resolve()] and q1.kind == "qa"
    assert q2.expected == ["a", "b"] and q3.evaluator == "regex"
    only_test = load_suite(tmp_path / "tasks.jsonl", "test")
    assert [t.id for t in only_test.tasks] == ["q2"] and only_test.source_split == "test"
    with pytest.raises(SuiteError, match="splits in the file: test, train"):
        load_suite(tmp_path, "val")


GOOD = {"id": "q1", "question": "q?", "answer": "1", "evaluator": "exact"}


@pytest.mark.parametrize("bad, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "answer"}), "missing key"),
    (json.dumps({**GOOD, "hint": "x"}), "unknown key"),
    (json.dumps({**GOOD, "id": 7}), "'id'"),
    (json.dumps({**GOOD, "question": ""}), "'question'"),
    (json.dumps({**GOOD, "answer": 42}), "'answer'"),
    (json.dumps({**GOOD, "answer": []}), "'answer'"),
    (json.dumps({**GOOD, "evaluator": "bleu"}), "unknown evaluator"),
    (json.dumps({**GOOD, "context": "t.csv"}), "'context'"),
    (json.dumps({**GOOD, "context": ["missing.csv"]}), "context file not found"),
    (json.dumps({**GOOD, "context": ["../x.csv"]}), "stay inside"),
    (json.dumps({**GOOD, "evaluator": "numeric", "tolerance": "small"}), "'tolerance'"),
    (json.dumps({**GOOD, "tolerance": 0.1}), "only applies"),
    (json.dumps({**GOOD, "evaluator": "numeric", "answer": "many"}), "not a single number"),
    (json.dumps({**GOOD, "evaluator": "regex", "answer": "(unclosed"}), "regular expression"),
    (json.dumps({**GOOD, "split": 3}), "'split'"),
    (json.dumps(GOOD), "duplicate id"),
])
def test_jsonl_bad_line_names_file_and_line(tmp_path: Path, bad: str, message: str) -> None:
    path = _write_jsonl(tmp_path / "suite.jsonl",
                        ["# header comment", json.dumps(GOOD), "", bad,
                         json.dumps({**GOOD, "id": "q9"})])
    with pytest.raises(SuiteError, match=message) as err:
        load_suite(path)
    assert err.value.path == path.resolve() and err.value.line == 4
    assert str(err.value).startswith(f"{path.resolve()}:4: ")


# --- splits ----------------------------------------------------------------------------------


def _tasks(n: int, prefix: str = "t") -> list[Task]:
    return [Task(f"{prefix}-{i}", "q", "qa", "exact", expected=["a"]) for i in range(n)]


def test_splits_are_deterministic_disjoint_and_complete() -> None:
    tasks = _tasks(500)
    a = split_tasks(tasks, seed=7)
    shuffled = tasks[:]
    random.Random(1).shuffle(shuffled)
    b = split_tasks(shuffled, seed=7)
    assert [[t.id for t in s] for s in (a.train, a.val, a.test)] == \
           [[t.id for t in s] for s in (b.train, b.val, b.test)]
    ids = [t.id for s in (a.train, a.val, a.test) for t in s]
    assert sorted(ids) == sorted(t.id for t in tasks) and len(set(ids)) == 500
    assert (len(a.train), len(a.val), len(a.test)) == (250, 125, 125)
    c = split_tasks(tasks, seed=8)
    assert {t.id for t in c.test} != {t.id for t in a.test}
    assert [t.id for t in a.train[:3]] == sorted((t.id for t in a.train[:3]),
                                                 key=lambda i: int(i.split("-")[1]))


def test_small_suites_still_get_held_out_tasks() -> None:
    for n in (3, 4, 5):
        s = split_tasks(_tasks(n), seed=0)
        assert len(s.val) >= 1 and len(s.test) >= 1 and len(s.train) >= 1
        assert len(s.train) + len(s.val) + len(s.test) == n
    two = split_tasks(_tasks(2), seed=0)
    assert len(two.train) + len(two.val) + len(two.test) == 2 and len(two.train) >= 1
    none_held = split_tasks(_tasks(10), seed=0, val_fraction=0, test_fraction=0)
    assert len(none_held.train) == 10 and not none_held.val and not none_held.test


def test_select_split_and_bad_arguments() -> None:
    s = split_tasks(_tasks(20), seed=3)
    assert select_split(s, "val") == s.val and select_split(s, "train") == s.train
    assert [t.id for t in select_split(s, "all")] == [f"t-{i}" for i in range(20)]
    with pytest.raises(ValueError, match="train, val, test, all"):
        select_split(s, "dev")
    with pytest.raises(ValueError):
        split_tasks(_tasks(5), seed=0, val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="duplicate"):
        split_tasks(_tasks(3) + _tasks(1), seed=0)


@needs_wtq
def test_splits_of_real_training_questions(tmp_path: Path) -> None:
    tasks = load_suite(WTQ, "training").tasks
    s = split_tasks(tasks, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (100, 50, 50)
    assert s == split_tasks(list(reversed(tasks)), seed=0)
    # Copying a suite elsewhere does not move tasks between splits (the id decides, not the path).
    copy = tmp_path / "copy"
    shutil.copytree(BUNDLED, copy)
    assert [t.id for t in split_tasks(load_suite(copy).tasks, 1).test] == \
           [t.id for t in split_tasks(load_suite(BUNDLED).tasks, 1).test]


def test_jsonl_context_symlink_leaving_the_suite_is_refused(tmp_path: Path) -> None:
    """Issue 14: a context file that is a link to /etc/passwd was followed and its text saved."""
    outside = tmp_path / "private.txt"
    outside.write_text("secret: hunter2\n")
    suite = tmp_path / "suite"
    (suite / "docs").mkdir(parents=True)
    (suite / "docs" / "ok.txt").write_text("fine\n")
    (suite / "docs" / "inside.txt").symlink_to(suite / "docs" / "ok.txt")  # stays in the suite: allowed
    (suite / "docs" / "leak.txt").symlink_to(outside)
    (suite / "docs" / "passwd").symlink_to("/etc/passwd")
    ok = {"id": "a", "question": "q?", "answer": "x", "evaluator": "exact", "context": ["docs/inside.txt"]}
    for i, name in enumerate(["leak.txt", "passwd"]):
        bad = {**ok, "id": f"b{i}", "context": [f"docs/{name}"]}
        (suite / "tasks.jsonl").write_text(json.dumps(ok) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(SuiteError, match="symbolic link that leaves the suite folder") as info:
            load_suite(suite)
        assert info.value.line == 2 and info.value.path == (suite / "tasks.jsonl").resolve()
    (suite / "tasks.jsonl").write_text(json.dumps(ok) + "\n")
    assert load_suite(suite).tasks[0].context_files == [suite.resolve() / "docs" / "inside.txt"]
