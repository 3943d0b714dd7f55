"""Skill gap: accuracy of the embedded models on the row-count suite with the good skill, each
defective skill and no skill, per split. Writes JSON and a Markdown table.

Splits: `train` and `val` are the seeded splits of the dev pool (skills/suites/row-count/
tasks.jsonl) that `optimize(seed=0)` trains and gates on; `heldout` is heldout.jsonl (tables of
the official test questions, never seen by any optimisation). A finished (model, skill, split)
cell is kept in the output file and skipped when the command is run again, so an interrupted run
resumes where it stopped; `--cache` keeps the model's responses across runs too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skillgrad_tui.config import Config  # noqa: E402
from skillgrad_tui.core.agent import Agent, AgentSettings  # noqa: E402
from skillgrad_tui.core.evaluate import evaluate  # noqa: E402
from skillgrad_tui.core.llm.factory import make_backend  # noqa: E402
from skillgrad_tui.core.records import Task  # noqa: E402
from skillgrad_tui.core.skill import load_skill  # noqa: E402
from skillgrad_tui.core.suites import load_suite  # noqa: E402
from skillgrad_tui.core.suites.splits import split_tasks  # noqa: E402

SUITE = ROOT / "skills" / "suites" / "row-count"
GOOD = ROOT / "skills" / "row-count"
DEFECTS = ("wrong", "outdated", "contradictory", "missing", "bloated")
SPLITS = ("train", "val", "heldout")
EVAL_SEED = 0


def skill_path(name: str) -> Path | None:
    """'good', 'none', or a defect kind -> the skill folder (None for no skill)."""
    if name == "none":
        return None
    if name == "good":
        return GOOD
    return ROOT / "skills" / "defective" / name / "row-count"


def split_of(name: str, suite: Path, seed: int = 0) -> list[Task]:
    if name == "heldout":
        return load_suite(suite / "heldout.jsonl").tasks
    parts = split_tasks(load_suite(suite).tasks, seed)
    return {"train": parts.train, "val": parts.val, "dev-test": parts.test}[name]


def cell(agent: Agent, model: str, skill_name: str, split: str, tasks: list[Task]) -> dict[str, Any]:
    path = skill_path(skill_name)
    skill = load_skill(path) if path is not None else None
    start = time.perf_counter()
    res = evaluate(agent, skill, tasks, seed=EVAL_SEED)
    errors = sum(1 for t in res.trajectories if t.error)
    return {"model": model, "skill": skill_name, "split": split, "n": res.n, "passed": res.passed,
            "accuracy": res.accuracy, "errors": errors,
            "tokens": res.prompt_tokens + res.completion_tokens,
            "seconds": round(time.perf_counter() - start, 1),
            "answers": [{"id": t.task_id, "passed": bool(t.verdict and t.verdict.passed),
                         "answer": t.answer} for t in res.trajectories]}


def markdown(rows: list[dict[str, Any]]) -> str:
    models = list(dict.fromkeys(r["model"] for r in rows))
    splits = [s for s in SPLITS if any(r["split"] == s for r in rows)]
    lines = []
    for model in models:
        lines += [f"Model `{model}` (greedy, agent seed {EVAL_SEED}); passed/n per split:", "",
                  "| skill | " + " | ".join(splits) + " |", "| --- |" + " --- |" * len(splits)]
        for skill in dict.fromkeys(r["skill"] for r in rows if r["model"] == model):
            cells = []
            for split in splits:
                r = next((r for r in rows if r["model"] == model and r["skill"] == skill
                          and r["split"] == split), None)
                cells.append(f"{r['passed']}/{r['n']} = {r['accuracy']:.0%}" if r else "-")
            lines.append(f"| {skill} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--skills", default="good," + ",".join(DEFECTS) + ",none")
    parser.add_argument("--splits", default=",".join(SPLITS))
    parser.add_argument("--limit", type=int, help="first N tasks of each split (a cheap probe)")
    parser.add_argument("--suite", type=Path, default=SUITE)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, help="response cache file (default: the user cache)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "skill_gap.json")
    args = parser.parse_args()

    done: list[dict[str, Any]] = []
    if args.out.is_file():
        done = json.loads(args.out.read_text())["rows"]
    key = lambda r: (r["model"], r["skill"], r["split"], r["n"])  # noqa: E731
    have = {key(r) for r in done}
    for model in args.models.split(","):
        config = Config()
        config.set("model", "default", model)
        config.set("model", "n_threads", args.threads)
        if args.cache:
            config.set("cache", "path", str(args.cache))
        backend = None
        for split in args.splits.split(","):
            tasks = split_of(split, args.suite)[: args.limit]
            for skill_name in args.skills.split(","):
                if (model, skill_name, split, len(tasks)) in have:
                    continue
                if backend is None:
                    backend = make_backend(config.backend_settings())
                row = cell(Agent(backend, AgentSettings()), model, skill_name, split, tasks)
                done = [r for r in done if key(r) != key(row)] + [row]
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({"suite": str(args.suite), "rows": done}, indent=1))
                print(json.dumps({k: v for k, v in row.items() if k != "answers"}), flush=True)
        if backend is not None:
            backend.close()
    table = markdown(done)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
