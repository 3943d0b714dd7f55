"""Backend benchmark: our llama.cpp backend against raw llama-cpp-python, prefix reuse and the
response cache, all measured in one run on the embedded Gemma model. Writes JSON.

  (a) raw llama-cpp-python prefill and decode tokens/s (its public create_completion API)
  (b) the same work through our backend; ratio (b)/(a), goal >= 0.95
  (c) 20 requests sharing a ~1,500-token prefix with different ~100-token suffixes, through our
      backend with KV prefix reuse vs. each evaluated from scratch; goal >= 3x faster
  (d) the same 20 again from the response cache vs. cold; goal >= 50x faster
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skillgrad_tui.core.llm.base import CompletionRequest  # noqa: E402
from skillgrad_tui.core.llm.cache import CachedBackend, ResponseCache  # noqa: E402
from skillgrad_tui.core.llm.llama_backend import LlamaBackend, default_threads  # noqa: E402
from skillgrad_tui.core.llm.models import gemma_path  # noqa: E402

PROMPT = ("The following is a list of numbers written out in words, one per line, counting upwards "
          "without stopping.\n" + "".join(f"{i}\n" for i in range(1, 160)))
DECODE_TOKENS = 128


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def shared_prefix(backend: LlamaBackend, target_tokens: int = 1500) -> str:
    para = ("A skill is a folder of instructions that an agent loads before it works on a task. "
            "It says how to read tables, how to count rows, how to compare values and how to "
            "format the answer so that the evaluator accepts it. ")
    text = ""
    while backend.count_tokens(text) < target_tokens:
        text += para
    return text


def suffix(i: int, backend: LlamaBackend, target_tokens: int = 100) -> str:
    words = [f"Question {i}: which row has the value {i * 7} in column {chr(65 + i % 26)}?"]
    while backend.count_tokens(" ".join(words)) < target_tokens:
        words.append(f"row {i}-{len(words)} holds {i * len(words)}")
    return " ".join(words)


def raw_llama_rates(llm: Any, prompt: str, repeats: int) -> dict[str, float]:
    n_prompt = len(llm.tokenize(prompt.encode(), add_bos=True, special=True))
    prefill, decode = [], []
    for _ in range(repeats):
        llm.reset()
        t1, _ = timed(lambda: llm.create_completion(prompt, max_tokens=1, temperature=0.0))
        llm.reset()
        tn, out = timed(lambda: llm.create_completion(prompt, max_tokens=DECODE_TOKENS + 1, temperature=0.0))
        produced = out["usage"]["completion_tokens"]
        prefill.append(n_prompt / t1)
        decode.append((produced - 1) / (tn - t1))
    return {"prefill_tps": statistics.median(prefill), "decode_tps": statistics.median(decode),
            "prompt_tokens": n_prompt}


def our_rates(backend: LlamaBackend, prompt: str, repeats: int) -> dict[str, float]:
    prefill, decode = [], []
    n_prompt = 0
    for _ in range(repeats):
        backend.reset_cache()
        t1, c1 = timed(lambda: backend.complete(CompletionRequest(prompt=prompt, max_tokens=1)))
        backend.reset_cache()
        tn, cn = timed(lambda: backend.complete(CompletionRequest(prompt=prompt, max_tokens=DECODE_TOKENS + 1)))
        n_prompt = c1.usage.prompt_tokens
        prefill.append(n_prompt / t1)
        decode.append((cn.usage.completion_tokens - 1) / (tn - t1))
    return {"prefill_tps": statistics.median(prefill), "decode_tps": statistics.median(decode),
            "prompt_tokens": n_prompt}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "backend.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()

    model = gemma_path()[0]
    backend = LlamaBackend(model, model_id="bench-gemma", n_ctx=4096)
    llm = backend._llm  # the very same llama.cpp context: identical threads, batch and weights

    # (a) and (b), interleaved so that machine noise hits both alike.
    our_rates(backend, PROMPT, 1)  # warm-up: first decode pays one-off allocations
    raw_runs, our_runs = [], []
    for _ in range(args.repeats):
        raw_runs.append(raw_llama_rates(llm, PROMPT, 1))
        our_runs.append(our_rates(backend, PROMPT, 1))
    raw = {k: statistics.median(r[k] for r in raw_runs) for k in ("prefill_tps", "decode_tps")}
    ours = {k: statistics.median(r[k] for r in our_runs) for k in ("prefill_tps", "decode_tps")}

    # (c) shared prefix: reuse vs. from scratch.
    prefix = shared_prefix(backend)
    requests = [CompletionRequest(prompt=prefix + "\n\n" + suffix(i, backend) + "\nAnswer:", max_tokens=4)
                for i in range(args.requests)]
    backend.reset_cache()
    t_scratch = 0.0
    for req in requests:
        backend.reset_cache()
        dt, _ = timed(lambda: backend.complete(req))
        t_scratch += dt
    backend.reset_cache()
    t_shared, results = timed(lambda: [backend.complete(req) for req in requests])
    cached_tokens = sum(c.usage.cached_prompt_tokens for c in results)
    prompt_tokens = sum(c.usage.prompt_tokens for c in results)

    # (d) response cache: cold (model) vs. warm (SQLite lookups) through CachedBackend.
    with tempfile.TemporaryDirectory() as tmp:
        cached = CachedBackend(backend, ResponseCache(Path(tmp) / "responses.sqlite3"))
        backend.reset_cache()
        t_cold, _ = timed(lambda: [cached.complete(req) for req in requests])
        t_warm, warm = timed(lambda: [cached.complete(req) for req in requests])
        assert all(c.from_cache for c in warm)

    report = {
        "model": str(model), "n_threads": default_threads(), "n_ctx": backend.n_ctx,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "a_raw_llama_cpp": raw, "b_ours": ours,
        "ratio_b_over_a": {k: ours[k] / raw[k] for k in raw},
        "c_shared_prefix": {"requests": len(requests), "prefix_tokens": backend.count_tokens(prefix),
                            "seconds_from_scratch": t_scratch, "seconds_with_prefix_reuse": t_shared,
                            "speedup": t_scratch / t_shared, "prompt_tokens": prompt_tokens,
                            "cached_prompt_tokens": cached_tokens},
        "d_response_cache": {"seconds_cold": t_cold, "seconds_cached": t_warm, "speedup": t_cold / t_warm},
        "goals": {"ratio_b_over_a": ">= 0.95", "shared_prefix_speedup": ">= 3", "cache_speedup": ">= 50"},
    }
    report["goals_met"] = {
        "ratio_b_over_a": min(report["ratio_b_over_a"].values()) >= 0.95,
        "shared_prefix_speedup": report["c_shared_prefix"]["speedup"] >= 3,
        "cache_speedup": report["d_response_cache"]["speedup"] >= 50,
    }
    backend.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"(a) raw llama-cpp-python: prefill {raw['prefill_tps']:.0f} tok/s, decode {raw['decode_tps']:.1f} tok/s")
    print(f"(b) ours:                 prefill {ours['prefill_tps']:.0f} tok/s, decode {ours['decode_tps']:.1f} tok/s"
          f"  ratio {report['ratio_b_over_a']['prefill_tps']:.3f} / {report['ratio_b_over_a']['decode_tps']:.3f}")
    print(f"(c) {len(requests)} requests, shared {report['c_shared_prefix']['prefix_tokens']}-token prefix: "
          f"{t_scratch:.2f}s from scratch vs {t_shared:.2f}s reused = {report['c_shared_prefix']['speedup']:.1f}x")
    print(f"(d) response cache: {t_cold:.2f}s cold vs {t_warm * 1000:.1f}ms cached = "
          f"{report['d_response_cache']['speedup']:.0f}x")
    print(f"wrote {args.out}")
    return 0 if all(report["goals_met"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
