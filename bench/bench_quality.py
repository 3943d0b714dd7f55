"""Quality benchmark: does SkillGrad improve a skill on held-out questions?

Seed skill vs. full SkillGrad vs. --no-momentum vs. --no-contrastive vs. a one-shot reflection
baseline, on WikiTableQuestions (default) or SpreadsheetBench (`--bench spreadsheetbench`).
WTQ: training and validation questions come from the `training` TSV; the test questions come from
the official test split (`pristine-unseen-tables`), which no step ever sees. SpreadsheetBench:
the 52 shared tasks that `skills/suites/xlsx` does not bundle, the first `--pool` for training
and validation and the last `--test` held out. Several seeds; mean and standard deviation of
test accuracy, with tokens and time. Writes JSON and a Markdown table.

The run uses a response cache of its own (a fresh file unless --cache names one), so the
seconds it reports are this run's model time: a call repeated within the run (the seed skill's
test evaluation shared by configs that end on the same skill, an ablation whose calls equal the
full run's) is answered from that cache, and each row says how many of its calls were.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optimise_runs import run_method, summarise  # noqa: E402
from skillgrad_tui.config import Config  # noqa: E402
from skillgrad_tui.core.llm.factory import make_backend  # noqa: E402
from skillgrad_tui.core.suites import Suite, load_suite  # noqa: E402

CONFIGS = ("seed", "skillgrad", "no-momentum", "no-contrastive", "reflection")


def run_one(config: str, seed: int, args: argparse.Namespace, backend: Any, pool: Suite,
            test_tasks: list[Any], workdir: Path) -> dict[str, Any]:
    row = run_method("start" if config == "seed" else config, seed, args.skill, pool, test_tasks, backend,
                     workdir, steps=args.steps, batch_size=args.batch_size)
    return {**row, "config": config}


def markdown(summary: dict[str, dict[str, float]], args: argparse.Namespace, n_test: int) -> str:
    lines = [f"{args.bench}: model `{args.model}`, {args.seeds} seeds, {args.steps} steps x batch {args.batch_size}, "
             f"held-out test: {n_test} tasks no step sees. Model calls in brackets were answered by "
             "this run's own response cache (the same request made earlier in the run), so they cost "
             "almost no time.", "",
             "| config | test accuracy (mean ± std) | runs | optimiser tokens | optimiser seconds | "
             "model calls (from cache) | edits kept / passed checks / proposed | skill changed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for config, s in summary.items():
        lines.append(f"| {config} | {s['mean']:.3f} ± {s['std']:.3f} | {s['runs']} | "
                     f"{s['tokens']:.0f} | {s['seconds']:.0f} | {s['calls']:.0f} ({s['cached_calls']:.0f}) | "
                     f"{s['edits_kept']:.0f} / {s['edits_checked']:.0f} / {s['edits_proposed']:.0f} | "
                     f"{s['changed']:.0f} of {s['runs']} runs |")
    return "\n".join(lines) + "\n"


def pick_tasks(args: argparse.Namespace) -> tuple[Suite, list[Any]]:
    """The training pool and the held-out tasks of the chosen benchmark (disjoint), filling defaults."""
    if args.bench == "wtq":
        args.skill = args.skill or ROOT / "skills" / "table-qa"
        args.pool, args.test = args.pool or 24, args.test or 30
        full = load_suite(args.wtq, "training")
        # Skip the questions bundled with skills/table-qa (nt-0..nt-39): the seed skill's own suite.
        pool = Suite("wtq-train-pool", full.root, full.format, full.tasks[40:40 + args.pool], "training")
        return pool, load_suite(args.wtq, "pristine-unseen-tables").tasks[: args.test]
    args.skill = args.skill or ROOT / "skills" / "xlsx"
    args.pool, args.test = args.pool or 12, args.test or 20
    full = load_suite(args.spreadsheetbench)
    bundled = {t.id for t in load_suite(ROOT / "skills" / "suites" / "xlsx").tasks}
    tasks = [t for t in full.tasks if t.id not in bundled]  # the seed skill's own suite stays out
    if args.pool + args.test > len(tasks):
        raise SystemExit(f"--pool {args.pool} + --test {args.test} exceeds the {len(tasks)} tasks")
    pool = Suite("spreadsheetbench-pool", full.root, full.format, tasks[: args.pool], full.source_split)
    return pool, tasks[len(tasks) - args.test:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wtq", type=Path, default=ROOT.parent / "shared" / "benchmarks" / "wikitablequestions")
    parser.add_argument("--bench", choices=("wtq", "spreadsheetbench"), default="wtq")
    parser.add_argument("--spreadsheetbench", type=Path,
                        default=ROOT.parent / "shared" / "benchmarks" / "spreadsheetbench")
    parser.add_argument("--skill", type=Path, help="starting skill (default: skills/table-qa for wtq, "
                        "skills/xlsx for spreadsheetbench)")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--pool", type=int, help="training tasks (train + val; default 24 for wtq, 12 "
                        "for spreadsheetbench)")
    parser.add_argument("--test", type=int, help="held-out tasks (default 30 for wtq, 20 for spreadsheetbench)")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--merge", type=Path, help="an earlier report: keep its rows for the configs "
                        "not run now (to re-run one config without redoing the rest)")
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: all cores)")
    parser.add_argument("--cache", type=Path, help="response cache file (default: a fresh one for this run)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality.json")
    args = parser.parse_args()

    pool, test_tasks = pick_tasks(args)
    config = Config()
    config.set("model", "default", args.model)
    if args.threads:
        config.set("model", "n_threads", args.threads)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="skillgrad-quality-") as tmp:
        config.set("cache", "path", str(args.cache or Path(tmp) / "responses.sqlite"))
        backend = make_backend(config.backend_settings())
        for seed in range(args.seeds):
            for name in args.configs.split(","):
                if name == "seed" and seed > 0 and any(r["config"] == "seed" for r in rows):
                    rows.append({**next(r for r in rows if r["config"] == "seed"), "seed": seed})
                    continue  # the seed skill is not trained: its test score does not depend on the seed
                row = run_one(name, seed, args, backend, pool, test_tasks, Path(tmp))
                rows.append(row)
                print(json.dumps(row), flush=True)
        backend.close()
    if args.merge:
        earlier = json.loads(args.merge.read_text())
        rerun = set(args.configs.split(","))
        rows = [r for r in earlier["rows"] if r["config"] not in rerun] + rows
        rows.sort(key=lambda r: (r["seed"], CONFIGS.index(r["config"])))
    summary = summarise(rows, CONFIGS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"bench": args.bench, "skill": str(args.skill), "model": args.model, "seeds": args.seeds, "steps": args.steps, "batch_size": args.batch_size,
              "pool": len(pool.tasks), "test": len(test_tasks), "rows": rows, "summary": summary}
    args.out.write_text(json.dumps(report, indent=2))
    table = markdown(summary, args, len(test_tasks))
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
