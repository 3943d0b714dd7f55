"""Forward-pass accuracy of the embedded models (issue 3's report), written as JSON.

WikiTableQuestions: the 300 shared official test questions, with no skill and with
skills/table-qa. SpreadsheetBench: the 60 shared tasks with skills/xlsx. For each: accuracy,
tokens, seconds and tasks per minute. Responses go through the response cache, so a run that was
interrupted picks up where it stopped (finished tasks are answered from the cache).
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
from skillgrad_tui.core.skill import load_skill  # noqa: E402
from skillgrad_tui.core.suites import load_suite  # noqa: E402

SHARED = ROOT.parent / "shared" / "benchmarks"


def run(model: str, skill: str | None, suite: Path, split: str | None, limit: int | None,
        table_rows: int, threads: int) -> dict[str, Any]:
    config = Config()
    config.set("model", "default", model)
    config.set("model", "n_threads", threads)
    backend = make_backend(config.backend_settings())
    tasks = load_suite(suite, split).tasks[:limit]
    agent = Agent(backend, AgentSettings(table_rows=table_rows))
    start = time.perf_counter()
    result = evaluate(agent, load_skill(ROOT / skill) if skill else None, tasks, seed=0)
    seconds = time.perf_counter() - start
    backend.close()
    return {"model": model, "skill": skill, "suite": suite.name, "n": result.n, "passed": result.passed,
            "accuracy": result.accuracy, "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens, "seconds": round(seconds, 1),
            "tasks_per_minute": round(60 * result.n / seconds, 2) if seconds else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gemma3-270m,smollm2-135m")
    parser.add_argument("--limit", type=int, help="first N tasks of each suite (default: all)")
    parser.add_argument("--table-rows", type=int, default=25)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "forward.json")
    args = parser.parse_args()
    rows = []
    for model in args.models.split(","):
        for skill in ("skills/table-qa", None):
            rows.append(run(model, skill, SHARED / "wikitablequestions", "pristine-unseen-tables",
                            args.limit, args.table_rows, args.threads))
            print(json.dumps(rows[-1]), flush=True)
        rows.append(run(model, "skills/xlsx", SHARED / "spreadsheetbench", None, args.limit,
                        args.table_rows, args.threads))
        print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
