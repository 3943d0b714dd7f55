"""Task suites: find out what a path holds and load its tasks.

Layouts recognised (first match wins):
- SpreadsheetBench: a folder with dataset.json (or that file itself);
- WikiTableQuestions: a folder with data/<split>.tsv and csv/ (or one of those TSV files);
- JSONL: a *.jsonl file, or a folder with tasks.jsonl.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skillgrad_tui.core.errors import SuiteError
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.suites.jsonl import load_jsonl
from skillgrad_tui.core.suites.wtq import is_wtq_root, load_wtq, wtq_splits

SUITE_FORMATS = ("wtq", "spreadsheetbench", "jsonl")


@dataclass
class Suite:
    name: str
    root: Path  # the suite folder (for a JSONL file, its folder)
    format: str  # one of SUITE_FORMATS
    tasks: list[Task]
    source_split: str | None  # the upstream split the tasks came from (WTQ TSV stem, JSONL "split")

    def by_id(self) -> dict[str, Task]:
        return {t.id: t for t in self.tasks}


def _spreadsheetbench(root: Path, split: str | None) -> Suite:
    if split is not None:
        raise SuiteError(f"SpreadsheetBench suites have no named splits (got {split!r})", root)
    from skillgrad_tui.core.suites.spreadsheetbench import load_spreadsheetbench

    return Suite(root.name, root, "spreadsheetbench", load_spreadsheetbench(root), None)


def _jsonl(file: Path, split: str | None) -> Suite:
    tasks = load_jsonl(file)
    if split is not None:
        chosen = [t for t in tasks if t.meta.get("split") == split]
        if not chosen:
            names = sorted({str(t.meta["split"]) for t in tasks if "split" in t.meta})
            raise SuiteError(f"no task has split {split!r}; splits in the file: "
                             f"{', '.join(names) or 'none'}", file)
        tasks = chosen
    name = file.parent.name if file.name == "tasks.jsonl" else file.stem
    return Suite(name, file.parent, "jsonl", tasks, split)


def _wtq(root: Path, split: str | None) -> Suite:
    tasks, chosen = load_wtq(root, split)
    return Suite(root.name, root, "wtq", tasks, chosen)


def load_suite(path: Path, split: str | None = None) -> Suite:
    """Detect the layout at `path` and load it; SuiteError says what was expected."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise SuiteError("suite not found", path)
    if path.is_file():
        if path.name == "dataset.json":
            return _spreadsheetbench(path.parent, split)
        if path.suffix == ".jsonl":
            return _jsonl(path, split)
        if path.suffix == ".tsv" and path.parent.name == "data" and is_wtq_root(path.parent.parent):
            if split is not None and split != path.stem:
                raise SuiteError(f"split {split!r} given for the file of split {path.stem!r}", path)
            return _wtq(path.parent.parent, path.stem)
        raise SuiteError("not a suite file: expected a .jsonl file, a WikiTableQuestions "
                         "data/<split>.tsv or a SpreadsheetBench dataset.json", path)
    if (path / "dataset.json").is_file():
        return _spreadsheetbench(path, split)
    if is_wtq_root(path):
        return _wtq(path, split)
    if (path / "tasks.jsonl").is_file():
        return _jsonl(path / "tasks.jsonl", split)
    raise SuiteError("no suite here: expected tasks.jsonl, dataset.json (SpreadsheetBench) "
                     "or data/<split>.tsv with csv/ (WikiTableQuestions)", path)


__all__ = ["SUITE_FORMATS", "Suite", "load_suite", "wtq_splits"]
