"""Build the bundled `row-count` suite (skills/suites/row-count/) from the shared WikiTableQuestions data.

Every task asks the same question, "How many rows does the table have?", about one real WTQ table;
the expected answer is the table's number of data rows, counted here from the CSV, written in the
house format of skills/row-count (`<N> rows`). The embedded models can reach the number (the
agent's prompt states it in `Table (N rows):`), so what decides the score is whether the skill
tells the model the answer format: that is what makes the suite a test of the skill.

Selection (deterministic, re-running this script rebuilds the same files byte for byte):
- dev tasks (`tasks.jsonl`, the optimiser's pool): tables referenced by the 200 shared *training*
  questions; held-out tasks (`heldout.jsonl`): tables referenced by the 300 shared official *test*
  questions (`pristine-unseen-tables`). No table is in both.
- a table qualifies when it has 3 to 30 data rows and at most 2,500 characters in all its cells
  (so that prompts stay short and the agent's default 40 shown rows never cut it);
- qualifying tables are ordered by the SHA-256 of their path and the first --dev / --heldout taken.
Each chosen CSV is copied unchanged to its upstream relative path under the suite folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skillgrad_tui.core.tables import read_wtq_csv  # noqa: E402

QUESTION = "How many rows does the table have?"
MIN_ROWS, MAX_ROWS, MAX_CHARS = 3, 30, 2500


def answer_for(rows: int) -> str:
    """The house format the good skill states."""
    return f"{rows} rows"


def qualifying_tables(wtq: Path, split: str) -> list[tuple[str, int]]:
    """(relative CSV path, data rows) of the split's tables that qualify, in hash order."""
    questions = [json.loads(line) for line in (wtq / "questions.jsonl").read_text(encoding="utf-8").splitlines()
                 if line.strip()]
    paths = sorted({q["table_csv"] for q in questions if q["split"] == split})
    chosen: list[tuple[str, int]] = []
    for rel in paths:
        rows = read_wtq_csv(wtq / rel)
        n = len(rows) - 1
        if MIN_ROWS <= n <= MAX_ROWS and sum(len(c) for r in rows for c in r) <= MAX_CHARS:
            chosen.append((rel, n))
    return sorted(chosen, key=lambda item: hashlib.sha256(item[0].encode("utf-8")).hexdigest())


def task_line(rel: str, n: int) -> str:
    table_id = rel.removeprefix("csv/").removesuffix(".csv").replace("-csv/", "-")
    return json.dumps({"id": f"rows-{table_id}", "question": QUESTION, "answer": answer_for(n),
                       "evaluator": "normalized", "context": [rel]}, ensure_ascii=False)


def write_suite(wtq: Path, out: Path, n_dev: int, n_heldout: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, split, k in (("tasks.jsonl", "training", n_dev),
                           ("heldout.jsonl", "pristine-unseen-tables", n_heldout)):
        tables = qualifying_tables(wtq, split)
        if len(tables) < k:
            raise SystemExit(f"only {len(tables)} qualifying {split} tables, {k} asked for")
        picked = sorted(tables[:k])
        for rel, _ in picked:
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(wtq / rel, target)
        header = (f"# row-count suite, {name}: {k} tasks built by bench/make_row_count_suite.py from "
                  f"WikiTableQuestions {split} tables (CC BY-SA 4.0, see ATTRIBUTION.md)\n")
        (out / name).write_text(header + "\n".join(task_line(rel, n) for rel, n in picked) + "\n",
                                encoding="utf-8")
        counts[name] = k
    shutil.copyfile(wtq / "LICENSE", out / "LICENSE")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wtq", type=Path, default=ROOT.parent / "shared" / "benchmarks" / "wikitablequestions")
    parser.add_argument("--out", type=Path, default=ROOT / "skills" / "suites" / "row-count")
    parser.add_argument("--dev", type=int, default=60)
    parser.add_argument("--heldout", type=int, default=40)
    args = parser.parse_args()
    print(write_suite(args.wtq, args.out, args.dev, args.heldout))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
