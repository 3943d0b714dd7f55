"""Benchmark the terminal app: start-up to first frame, and key-press-to-render latency mid-run.

    .venv/bin/python bench/bench_tui.py [--out bench_tui.json] [--presses 60] [--startup-runs 5]

Start-up is measured in fresh processes (imports included): from the first line of the child
script to the app's Ready event (first frame composed and displayed). Latency is measured while a
scripted optimisation runs (the stand-in model answers after a short delay, so steps take a
fraction of a second instead of minutes: far more events and repaints than a real model causes),
with a human-like mix of keys every 0.1 s (switch pane, move the table cursor): from just before
a key is posted to the first frame the compositor renders in which the key's effect is visible.
The same mix with nothing running is reported as a baseline. The app runs headless (Textual's test driver), so terminal write time (a few
kilobytes per frame) is not included. Goals: p95 < 100 ms, first frame < 1.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SKILL = REPO / "skills" / "table-qa"
SUITE = REPO / "skills" / "suites" / "table-qa"
GOAL_P95_MS = 100.0
GOAL_FIRST_FRAME_S = 1.5

CHILD = r"""
import time
t0 = time.perf_counter()
import asyncio, json, sys
from pathlib import Path
from skillgrad_tui.tui.app import SkillgradApp
from skillgrad_tui.tui.scripted import scripted_backend_factory

async def main():
    app = SkillgradApp(Path(sys.argv[1]), Path(sys.argv[2]), backend_factory=scripted_backend_factory())
    async with app.run_test(size=(120, 40)) as pilot:
        while app.first_frame_at is None:
            await pilot.pause(0.001)
        print(json.dumps({"first_frame_s": app.first_frame_at - t0}))

asyncio.run(main())
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def startup(runs: int, skill: Path) -> list[float]:
    out = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", CHILD, str(skill), str(SUITE)], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise SystemExit(f"start-up child failed:\n{proc.stderr}")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1])["first_frame_s"])
    return out


async def key_latency(presses: int, skill: Path, delay_s: float, run: bool = True,
                      gap_s: float = 0.1) -> dict[str, Any]:
    from textual.widgets import DataTable, TabbedContent

    from skillgrad_tui.config import Config
    from skillgrad_tui.tui.app import SkillgradApp
    from skillgrad_tui.tui.scripted import scripted_backend_factory

    config = Config(values={"optimize": {"steps": 40, "gate": "all", "early_stop": 100}})
    app = SkillgradApp(skill, SUITE, backend_factory=scripted_backend_factory(delay_s=delay_s), config=config)
    pending: dict[str, Any] = {}
    samples: list[float] = []
    by_key: dict[str, list[float]] = {}
    frames = [0]
    original = app._display

    def display(screen: Any, renderable: Any) -> None:
        original(screen, renderable)
        if renderable is None:
            return
        frames[0] += 1
        check = pending.get("check")
        if check is not None and check():
            ms = (time.perf_counter() - pending["t0"]) * 1000
            samples.append(ms)
            by_key.setdefault(pending["key"], []).append(ms)
            pending.clear()

    app._display = display  # type: ignore[method-assign]
    skipped = 0
    async with app.run_test(size=(120, 40)) as pilot:
        while app.suite is None:
            await pilot.pause(0.01)
        if run:
            await pilot.press("r")
            while app.events_seen < 50:
                await pilot.pause(0.01)
        tabs = app.main.query_one(TabbedContent)
        table = app.main.query_one("#traj-table", DataTable)
        if not run:  # fill the trajectories table first, then measure with nothing running
            await pilot.press("v")
            while app.running or app.last_result is None:
                await pilot.pause(0.05)
        events_at_start = app.events_seen
        t_start = time.perf_counter()
        restarts = 0
        # A human-like mix: switch pane, then move the cursor a few rows in the table.
        plan = ["3", "4", "2", "move", "move", "move"]
        for i in range(presses):
            if run and not app.running:  # keep a run going for the whole measurement
                restarts += 1
                seen = app.events_seen
                await pilot.press("r")
                while app.events_seen < seen + 20 and app.running:
                    await pilot.pause(0.01)
            step = plan[i % len(plan)]
            if step == "move":
                if tabs.active != "tab-trajectories" or table.row_count < 2:
                    continue
                before = table.cursor_row
                key = "down" if before < table.row_count - 1 else "up"
                check: Callable[[], bool] = lambda before=before: table.cursor_row != before
            else:
                key = step
                name = {"2": "trajectories", "3": "gradients", "4": "memory"}[step]
                check = lambda name=name: tabs.active == f"tab-{name}"
            if not await _press(pilot, pending, key, check):
                skipped += 1
            await asyncio.sleep(gap_s)
        seconds = time.perf_counter() - t_start
        events = app.events_seen - events_at_start
        still_running = app.running
        if run:
            await pilot.press("escape")
        while app.running:
            await pilot.pause(0.05)
    return {"samples_ms": samples,
            "p50_by_key_ms": {k: round(percentile(v, 0.5), 2) for k, v in sorted(by_key.items())},
            "events_per_s": events / seconds if seconds else 0.0,
            "frames": frames[0], "skipped": skipped, "run_restarts": restarts, "run_still_going_at_end": still_running,
            "measure_seconds": seconds}


async def _press(pilot: Any, pending: dict[str, Any], key: str, check: Callable[[], bool]) -> bool:
    pending.clear()
    pending["check"] = check
    pending["key"] = key
    pending["t0"] = time.perf_counter()
    await pilot.app._press_keys([key])  # post the key; do not wait for the whole screen to idle
    deadline = time.perf_counter() + 2.0
    while pending and time.perf_counter() < deadline:
        await asyncio.sleep(0.001)
    if pending:
        pending.clear()
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the JSON here too")
    ap.add_argument("--presses", type=int, default=60)
    ap.add_argument("--startup-runs", type=int, default=5)
    ap.add_argument("--delay", type=float, default=0.02, help="stand-in model seconds per call")
    ap.add_argument("--gap", type=float, default=0.1, help="seconds between key presses")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        skill = Path(tmp) / "table-qa"
        shutil.copytree(SKILL, skill)
        starts = startup(args.startup_runs, skill)
        lat = asyncio.run(key_latency(args.presses, skill, args.delay, gap_s=args.gap))
        idle = asyncio.run(key_latency(max(12, args.presses // 3), skill, args.delay, run=False, gap_s=args.gap))
    samples = lat.pop("samples_ms")
    idle_samples = idle.pop("samples_ms")
    report = {
        "startup_first_frame_s": {"runs": [round(s, 4) for s in starts], "median": round(statistics.median(starts), 4),
                                  "max": round(max(starts), 4), "goal": GOAL_FIRST_FRAME_S},
        "key_to_render_ms": {"n": len(samples), "p50": round(percentile(samples, 0.5), 2),
                             "p95": round(percentile(samples, 0.95), 2), "max": round(max(samples), 2) if samples else None,
                             "goal_p95": GOAL_P95_MS},
        "during_run": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in lat.items()},
        "idle_key_to_render_ms": {"n": len(idle_samples), "p50": round(percentile(idle_samples, 0.5), 2),
                                  "p95": round(percentile(idle_samples, 0.95), 2),
                                  "p50_by_key_ms": idle["p50_by_key_ms"]},
        "passed": bool(samples) and percentile(samples, 0.95) < GOAL_P95_MS and max(starts) < GOAL_FIRST_FRAME_S,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
