"""What the script sandbox costs per run, in each mode this machine has: a trivial script and an
openpyxl edit of a real workbook, medians of N runs measured in one process. Writes JSON.

    .venv/bin/python bench/bench_sandbox.py --runs 10 --out bench/results/sandbox.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openpyxl  # noqa: E402

from skillgrad_tui.core.sandbox import MODES, Sandbox, mode_problem  # noqa: E402

EDIT = ("import openpyxl\nwb = openpyxl.load_workbook('in.xlsx')\nws = wb.active\n"
        "for r in range(1, 201):\n    ws.cell(r, 3, ws.cell(r, 1).value * 2)\nwb.save('output.xlsx')\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sandbox.json")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="skillgrad-bench-sandbox-"))
    book = folder / "in.xlsx"
    wb = openpyxl.Workbook()
    for r in range(1, 201):
        wb.active.cell(r, 1, r)
    wb.save(book)
    rows = []
    for mode in MODES:
        why = mode_problem(mode)
        if why is not None:
            rows.append({"mode": mode, "skipped": why})
            continue
        for name, code in (("print", "print(1)"), ("openpyxl edit", EDIT)):
            times = []
            with Sandbox([book], mode=mode) as box:
                for _ in range(args.runs):
                    start = time.perf_counter()
                    r = box.run(code, timeout_s=60, cpu_s=30)
                    times.append(time.perf_counter() - start)
                    assert r.returncode == 0, r.stderr
            rows.append({"mode": mode, "script": name, "runs": args.runs,
                         "median_s": round(statistics.median(times), 4), "max_s": round(max(times), 4)})
            print(json.dumps(rows[-1]), flush=True)
    report = {"rows": rows, "machine": {"python": platform.python_version(), "cpu": platform.machine(),
                                        "cores": os.cpu_count()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
