"""Repair benchmark: can SkillGrad repair a defective skill on a suite where the skill decides?

For each defective version of skills/row-count (skills/defective/<defect>/row-count: wrong,
outdated, contradictory, missing, bloated) this runs, with an embedded model, the full SkillGrad
loop, its --no-momentum and --no-contrastive ablations and the one-shot reflection baseline, each
starting from the defective skill and training on the suite's dev pool
(skills/suites/row-count/tasks.jsonl, split by seed into train and validation as the optimiser
always does), over several seeds. Every resulting skill is scored on the held-out tasks
(heldout.jsonl: tables of the official WTQ test questions, never seen by any method), next to
the good skill and the defective one. Reports mean and standard deviation of held-out accuracy,
tokens, seconds, and how many proposed edits passed the checks and were kept.

Long: every finished (defect, method, seed) row is written to the JSON output at once, and a run
started again with the same settings skips the rows it already has (resume). Responses go to a
response cache kept beside the output, so an interrupted row that is redone costs little; each
row says how many of its model calls the cache answered (their seconds are then not model time).
`--quick` runs a small version (2 defects, 1 seed, 1 step) to check that everything works.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optimise_runs import run_method, summarise  # noqa: E402
from skillgrad_tui.config import Config  # noqa: E402
from skillgrad_tui.core.llm.factory import make_backend  # noqa: E402
from skillgrad_tui.core.suites import Suite, load_suite  # noqa: E402

SUITE = ROOT / "skills" / "suites" / "row-count"
GOOD = ROOT / "skills" / "row-count"
DEFECTS = ("wrong", "outdated", "contradictory", "missing", "bloated")
CONFIGS = ("good", "defective", "skillgrad", "no-momentum", "no-contrastive", "reflection")
LABELS = {"good": "good seed skill", "defective": "defective", "skillgrad": "SkillGrad",
          "no-momentum": "--no-momentum", "no-contrastive": "--no-contrastive",
          "reflection": "one-shot reflection"}


def defective_skill(defect: str) -> Path:
    return ROOT / "skills" / "defective" / defect / "row-count"


def settings_of(args: argparse.Namespace, n_pool: int, n_test: int) -> dict[str, Any]:
    """What a row's numbers depend on: rows measured under other settings are not reused."""
    return {"model": args.model, "steps": args.steps, "batch_size": args.batch_size, "pool": n_pool,
            "test": n_test}


def run_row(defect: str, config: str, seed: int, args: argparse.Namespace, backend: Any, pool: Suite,
            test_tasks: list[Any]) -> dict[str, Any]:
    start = GOOD if config == "good" else defective_skill(defect)
    method = "start" if config in ("good", "defective") else config
    row = run_method(method, seed, start, pool, test_tasks, backend, args.workdir,
                     steps=args.steps, batch_size=args.batch_size, tag=f"{defect}-")
    return {**row, "defect": defect, "config": config}


def plan(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """(defect, config, seed) in run order. The good and defective skills are not trained, so their
    held-out score does not depend on the seed: they run once (the good one once in all)."""
    out: list[tuple[str, str, int]] = []
    configs = args.configs.split(",")
    if "good" in configs:
        out.append(("-", "good", 0))
    for defect in args.defects.split(","):
        if "defective" in configs:
            out.append((defect, "defective", 0))
        for seed in range(args.seeds):
            out += [(defect, c, seed) for c in configs if c not in ("good", "defective")]
    return out


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, n_pool: int, n_test: int) -> str:
    defects = [d for d in args.defects.split(",") if any(r["defect"] == d for r in rows)]
    good = summarise([r for r in rows if r["config"] == "good"], ("good",)).get("good")
    configs = [c for c in CONFIGS if c != "good"]
    lines = [f"Model `{args.model}`, {args.seeds} seeds, {args.steps} steps x batch {args.batch_size}; the "
             f"optimiser trains on the {n_pool}-task dev pool of skills/suites/row-count (seeded train/"
             f"validation split); accuracy on its {n_test} held-out tasks (mean ± std over seeds).", "",
             "| defect | " + " | ".join(LABELS[c] for c in ["good", *configs]) + " |",
             "| --- |" + " --- |" * (len(configs) + 1)]
    for defect in defects:
        summary = summarise([r for r in rows if r["defect"] == defect], tuple(configs))
        cells = [f"{good['mean']:.3f}" if good else "-"]
        for c in configs:
            s = summary.get(c)
            cells.append("-" if s is None else f"{s['mean']:.3f}" if c == "defective"
                         else f"{s['mean']:.3f} ± {s['std']:.3f}")
        lines.append(f"| {defect} | " + " | ".join(cells) + " |")
    lines += ["", "Cost and what each method did to the skill (per run: optimiser tokens and seconds, "
              "mean over seeds; model calls in brackets were answered by the response cache; edits "
              "summed over seeds):", "",
              "| defect | method | tokens | seconds | model calls (cached) | edits applied / passed checks / "
              "proposed | candidates kept / scored | skill changed |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for defect in defects:
        summary = summarise([r for r in rows if r["defect"] == defect], tuple(CONFIGS[2:]))
        for c, s in summary.items():
            lines.append(f"| {defect} | {LABELS[c]} | {s['tokens']:.0f} | {s['seconds']:.0f} | {s['calls']:.0f} "
                         f"({s['cached_calls']:.0f}) | {s['edits_applied']:.0f} / {s['edits_checked']:.0f} / "
                         f"{s['edits_proposed']:.0f} | {s['candidates_kept']:.0f} / {s['candidates']:.0f} | "
                         f"{s['changed']:.0f} of {s['runs']} runs |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--defects", help=f"comma-separated (default: {','.join(DEFECTS)})")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--pool", type=int, help="first N dev tasks only (default: all)")
    parser.add_argument("--test", type=int, help="first N held-out tasks only (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="a small check: defects missing,wrong; 1 seed; 1 step x batch 2; 16 dev and "
                             "10 held-out tasks; writes repair-quick.json")
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: all cores)")
    parser.add_argument("--suite", type=Path, default=SUITE)
    parser.add_argument("--out", type=Path, help="JSON report (default: bench/results/repair.json)")
    parser.add_argument("--cache", type=Path, help="response cache (default: <out>-cache.sqlite)")
    parser.add_argument("--workdir", type=Path, help="skill copies and run dirs (default: <out>-work/)")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                        help="measure nothing: join the rows of reports measured with these settings (e.g. "
                             "two processes, one per core, on different --defects) into --out and its table")
    args = parser.parse_args()
    if args.quick:
        args.defects, args.seeds, args.steps, args.batch_size = args.defects or "missing,wrong", 1, 1, 2
        args.pool, args.test = args.pool or 16, args.test or 10
    args.defects = args.defects or ",".join(DEFECTS)
    args.out = args.out or ROOT / "bench" / "results" / ("repair-quick.json" if args.quick else "repair.json")
    args.cache = args.cache or args.out.with_name(args.out.stem + "-cache.sqlite")
    args.workdir = args.workdir or args.out.with_name(args.out.stem + "-work")
    unknown = [d for d in args.defects.split(",") if d not in DEFECTS]
    if unknown:
        parser.error(f"unknown defect(s) {', '.join(unknown)}; known: {', '.join(DEFECTS)}")

    dev = load_suite(args.suite)
    pool = Suite(dev.name, dev.root, dev.format, dev.tasks[: args.pool], dev.source_split)
    test_tasks = load_suite(args.suite / "heldout.jsonl").tasks[: args.test]
    settings = settings_of(args, len(pool.tasks), len(test_tasks))
    rows: list[dict[str, Any]] = []
    if args.merge:
        for path in args.merge:
            part = json.loads(path.read_text())
            if part.get("settings") != settings:
                parser.error(f"{path} was measured with other settings: {part.get('settings')}, not {settings}")
            rows += [r for r in part["rows"] if r["config"] != "good" or not any(q["config"] == "good" for q in rows)]
        args.defects = ",".join(d for d in args.defects.split(",") if any(r["defect"] == d for r in rows))
    elif args.out.is_file():
        earlier = json.loads(args.out.read_text())
        if earlier.get("settings") == settings:
            rows = earlier["rows"]
            print(f"resuming: {len(rows)} rows already in {args.out}", flush=True)
        else:
            print(f"{args.out} was measured with other settings ({earlier.get('settings')}); starting over",
                  flush=True)

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"settings": settings, "suite": str(args.suite), "rows": rows}, indent=1))
        tmp.replace(args.out)

    config = Config()
    config.set("model", "default", args.model)
    if args.threads:
        config.set("model", "n_threads", args.threads)
    config.set("cache", "path", str(args.cache))
    backend = None
    have = {(r["defect"], r["config"], r["seed"]) for r in rows}
    for defect, name, seed in [] if args.merge else plan(args):
        if (defect, name, seed) in have:
            continue
        if backend is None:
            backend = make_backend(config.backend_settings())
        row = run_row(defect, name, seed, args, backend, pool, test_tasks)
        rows.append(row)
        save()
        print(json.dumps(row), flush=True)
    if backend is not None:
        backend.close()
    save()
    table = markdown(rows, args, len(pool.tasks), len(test_tasks))
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
