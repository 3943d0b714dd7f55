"""Tasks per minute at 1, 2, 4, 8 runs in flight: against a real server process on 127.0.0.1
(llama-cpp-python serving SmolLM2) and against the local backend (1 only: the reference).

llama-cpp-python's server runs one request at a time, so the HTTP backend caps N at 1 for it and
the figures should be flat; the table says which N was in effect. One run, ratios to N = 1.
Writes JSON (CPU flags, load average) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from skillgrad_tui.core.agent import Agent  # noqa: E402
from skillgrad_tui.core.evaluate import evaluate  # noqa: E402
from skillgrad_tui.core.llm.base import Backend, concurrency_limit  # noqa: E402
from skillgrad_tui.core.llm.http_backend import HttpBackend  # noqa: E402
from skillgrad_tui.core.llm.models import smollm_path  # noqa: E402
from skillgrad_tui.core.llm.native import cpu_summary  # noqa: E402
from skillgrad_tui.core.records import Task  # noqa: E402


def tasks(n: int) -> list[Task]:
    return [Task(id=f"t{i}", question=f"What is {i} plus {i + 3}?", kind="qa", evaluator="exact",
                 expected=[str(2 * i + 3)]) for i in range(n)]


def timed(backend: Backend, n_tasks: int, concurrency: int | None) -> dict[str, Any]:
    start = time.perf_counter()
    result = evaluate(Agent(backend), None, tasks(n_tasks), seed=0, concurrency=concurrency)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tasks_per_min": 60 * n_tasks / seconds, "passed": result.passed,
            "answers": [t.answer for t in result.trajectories]}


def start_server(model: Path, port: int, log: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "skillgrad_tui.core.llm.serve", "--model", str(model),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited while loading")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not answer within 180 s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--levels", default="1,2,4,8")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    model = smollm_path()[0]
    rows: list[dict[str, Any]] = []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with tempfile.TemporaryFile() as log:
        proc = start_server(model, port, log)
        try:
            for n in levels:
                backend = HttpBackend(f"http://127.0.0.1:{port}", max_concurrency=n, n_ctx=2048, retries=1)
                row = {"backend": "llama-cpp-python server", "asked": n, "in_flight": concurrency_limit(backend),
                       **timed(backend, args.tasks, None)}
                backend.close()
                rows.append(row)
                print(row["backend"], n, f"{row['tasks_per_min']:.1f} tasks/min", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    from skillgrad_tui.core.llm.llama_backend import LlamaBackend

    local = LlamaBackend(model, model_id="bench-smollm", n_ctx=2048)
    rows.append({"backend": "local llama.cpp", "asked": 1, "in_flight": 1, **timed(local, args.tasks, 1)})
    local.close()
    for backend_name in {r["backend"] for r in rows}:
        same = [r for r in rows if r["backend"] == backend_name]
        base = next(r for r in same if r["asked"] == 1)["tasks_per_min"]
        for r in same:
            r["ratio_to_1"] = r["tasks_per_min"] / base
    report = {"machine": {"cpu": cpu_summary(), "loadavg": os.getloadavg(), "nproc": os.cpu_count()},
              "model": model.name, "tasks": args.tasks, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print("| backend | N asked | N in flight | tasks/min | ratio to N = 1 |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['backend']} | {r['asked']} | {r['in_flight']} | {r['tasks_per_min']:.1f} "
              f"| {r['ratio_to_1']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
