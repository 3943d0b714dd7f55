"""What running the model in a worker process costs, and what the CPU-specific switches cost.

All in one run, on the embedded models, alternating the variants so machine noise hits each alike:

  (e) in-process LlamaBackend vs. WorkerBackend (the default): prefill and decode tokens/s on the
      same prompt, and 20 requests sharing a ~1,500-token prefix (KV reuse inside the worker);
      goal: the worker within 5% of in-process
  (f) llama.cpp's weight repacking on vs. off (`use_extra_bufts`, what the AMX workaround turns
      off on AMX CPUs), for both embedded models, on this CPU
  (g) the worker's OpenMP threads with libgomp's default wait policy (spin, then sleep) vs.
      OMP_WAIT_POLICY=passive (sleep at once), on a quiet machine and with one busy core

Writes JSON with the CPU's vector features and llama.cpp's build features.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_backend import PROMPT, our_rates, shared_prefix, suffix, timed  # noqa: E402

from skillgrad_tui.core.llm.base import CompletionRequest  # noqa: E402
from skillgrad_tui.core.llm.llama_backend import LlamaBackend, default_threads  # noqa: E402
from skillgrad_tui.core.llm.models import gemma_path, smollm_path  # noqa: E402
from skillgrad_tui.core.llm.native import cpu_summary, library_features  # noqa: E402
from skillgrad_tui.core.llm.worker_backend import WorkerBackend  # noqa: E402


def median_rates(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in ("prefill_tps", "decode_tps")}


def paired_rates(backends: dict[str, Any], repeats: int) -> dict[str, dict[str, float]]:
    """Median prefill/decode rates of each backend: one warm-up each, then the repeats interleaved
    so that machine noise hits every variant alike."""
    for b in backends.values():
        our_rates(b, PROMPT, 1)  # the first decode pays one-off allocations
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in backends}
    for _ in range(repeats):
        for name, b in backends.items():
            runs[name].append(our_rates(b, PROMPT, 1))
    return {name: median_rates(v) for name, v in runs.items()}


def shared_prefix_seconds(backend: Any, requests: list[CompletionRequest]) -> float:
    backend.reset_cache()
    seconds, _ = timed(lambda: [backend.complete(r) for r in requests])
    return seconds


def burn(stop: Any) -> None:
    """One core at 100%, as another program on the user's machine would."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def isolation(model: Path, repeats: int, n_requests: int) -> dict[str, Any]:
    inproc = LlamaBackend(model, model_id="bench", n_ctx=4096)
    worker = WorkerBackend(model, model_id="bench", n_ctx=4096)
    rates = paired_rates({"in_process": inproc, "worker": worker}, repeats)
    prefix = shared_prefix(inproc)
    requests = [CompletionRequest(prompt=prefix + "\n\n" + suffix(i, inproc) + "\nAnswer:", max_tokens=4)
                for i in range(n_requests)]
    shared = {"in_process": [], "worker": []}  # type: dict[str, list[float]]
    for _ in range(repeats):
        shared["in_process"].append(shared_prefix_seconds(inproc, requests))
        shared["worker"].append(shared_prefix_seconds(worker, requests))
    # The pure round trip: a one-token answer to a prompt the KV cache already holds.
    tiny = CompletionRequest(prompt="Hello", max_tokens=1)
    trip = {"in_process": [], "worker": []}  # type: dict[str, list[float]]
    for _ in range(repeats * 20):
        for name, b in (("in_process", inproc), ("worker", worker)):
            seconds, _ = timed(lambda: b.complete(tiny))
            trip[name].append(seconds)
    inproc.close()
    worker.close()
    seconds = {k: statistics.median(v) for k, v in shared.items()}
    return {
        "rates": rates,
        "ratio_worker_over_in_process": {k: rates["worker"][k] / rates["in_process"][k] for k in rates["worker"]},
        "shared_prefix_requests": n_requests, "shared_prefix_seconds": seconds,
        "shared_prefix_overhead": seconds["worker"] / seconds["in_process"] - 1.0,
        "one_token_request_ms": {k: statistics.median(v) * 1000 for k, v in trip.items()},
    }


def repack(models: dict[str, Path], repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, path in models.items():
        on = WorkerBackend(path, model_id="bench", n_ctx=4096, repack="on")
        off = WorkerBackend(path, model_id="bench", n_ctx=4096, repack="off")
        rates = paired_rates({"on": on, "off": off}, repeats)
        on.close()
        off.close()
        out[name] = {"rates": rates, "ratio_off_over_on": {k: rates["off"][k] / rates["on"][k] for k in rates["on"]}}
    return out


def wait_policy(model: Path, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # "default" leaves libgomp's own policy (spin a while, then sleep); ACTIVE would spin forever
    # while idle and steal the other worker's core, so it is not measured side by side.
    backends = {p: WorkerBackend(model, model_id="bench", n_ctx=4096,
                                 env={"OMP_WAIT_POLICY": "PASSIVE"} if p == "passive" else {})
                for p in ("default", "passive")}
    for load in ("quiet", "one_busy_core"):
        stop = multiprocessing.Event()
        hog = multiprocessing.Process(target=burn, args=(stop,), daemon=True) if load != "quiet" else None
        if hog is not None:
            hog.start()
            time.sleep(0.5)
        try:
            out[load] = paired_rates(backends, repeats)
        finally:
            stop.set()
            if hog is not None:
                hog.join()
    for b in backends.values():
        b.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "isolation.json")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()

    gemma, smollm = gemma_path()[0], smollm_path()[0]
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpu": cpu_summary(), "n_threads": default_threads(),
                    "llama_cpp_features": sorted(k for k, v in library_features().items() if v)},
        "e_isolation_gemma": isolation(gemma, args.repeats, args.requests),
        "f_repack": repack({"gemma3-270m": gemma, "smollm2-135m": smollm}, args.repeats),
        "g_omp_wait_policy_gemma": wait_policy(gemma, args.repeats),
    }
    e = report["e_isolation_gemma"]
    worst = min(min(e["ratio_worker_over_in_process"].values()), 1.0 - e["shared_prefix_overhead"])
    report["goal"] = "worker >= 0.95 of in-process on every measure"
    report["goal_met"] = worst >= 0.95
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    r = e["rates"]
    print(f"(e) in-process prefill {r['in_process']['prefill_tps']:.0f} / decode {r['in_process']['decode_tps']:.1f} "
          f"tok/s; worker {r['worker']['prefill_tps']:.0f} / {r['worker']['decode_tps']:.1f}; ratio "
          f"{e['ratio_worker_over_in_process']['prefill_tps']:.3f} / {e['ratio_worker_over_in_process']['decode_tps']:.3f}")
    s = e["shared_prefix_seconds"]
    print(f"    {args.requests} shared-prefix requests: in-process {s['in_process']:.2f}s, worker {s['worker']:.2f}s "
          f"({e['shared_prefix_overhead'] * 100:+.1f}%)")
    t = e["one_token_request_ms"]
    print(f"    one-token request: in-process {t['in_process']:.1f} ms, worker {t['worker']:.1f} ms")
    for name, f in report["f_repack"].items():
        print(f"(f) {name}: repack off / on = prefill {f['ratio_off_over_on']['prefill_tps']:.3f}, "
              f"decode {f['ratio_off_over_on']['decode_tps']:.3f}")
    for load, g in report["g_omp_wait_policy_gemma"].items():
        print(f"(g) {load}: default {g['default']['prefill_tps']:.0f}/{g['default']['decode_tps']:.1f}, "
              f"passive {g['passive']['prefill_tps']:.0f}/{g['passive']['decode_tps']:.1f} tok/s")
    print(f"wrote {args.out}")
    return 0 if report["goal_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
