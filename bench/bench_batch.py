"""Batched decoding on the local model: does llama.cpp decode several sequences in one batch
faster than one at a time, on this CPU?

For N in 1, 2, 4, 8: N agent-like tasks (a shared ~700-token skill prefix, a ~250-token
task-specific suffix, 48 greedy answer tokens each) are run
  - one after another on one sequence, reusing the prefix in the KV cache (what the backend does now);
  - together: the prefix evaluated once in sequence 0 and copied to the others (llama_memory_seq_cp),
    the N suffixes in one batch, then one decode batch per step holding one token of every sequence.
Reports tokens/s of the decode phase and tasks/s end to end, with ratios to N = 1, for both
embedded models. Writes JSON (with the CPU's features).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import llama_cpp  # noqa: E402

from skillgrad_tui.core.llm.llama_backend import default_threads  # noqa: E402
from skillgrad_tui.core.llm.models import gemma_path, smollm_path  # noqa: E402
from skillgrad_tui.core.llm.native import cpu_summary, library_features  # noqa: E402

SKILL = ("You are a careful assistant. Use this skill.\n# Answering questions over a table\n"
         + "".join(f"- Rule {i}: read the header, find the column, compare every row, copy the cell exactly.\n"
                   for i in range(30)))
GEN_TOKENS = 48


def task_suffix(i: int) -> str:
    rows = "".join(f"{r} | City {i}-{r} | {1000 + 37 * r * (i + 1)}\n" for r in range(1, 18))
    return f"\nTable (17 rows):\nrow | City | Population\n{rows}Question {i}: which city has the largest population?\nAnswer:"


class Model:
    def __init__(self, path: Path, n_seq: int, threads: int) -> None:
        mparams = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), mparams)
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = 1100 * n_seq + 256
        cparams.n_batch = 2048
        cparams.n_ubatch = 512
        cparams.n_seq_max = n_seq
        cparams.kv_unified = True  # sequences share one KV buffer: the copied prefix costs no memory
        cparams.n_threads = cparams.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(2048, 0, n_seq)

    def tokenize(self, text: str, bos: bool) -> list[int]:
        raw = text.encode()
        buf = (llama_cpp.llama_token * (len(raw) + 16))()
        n = llama_cpp.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), bos, True)
        return list(buf[:n])

    def decode(self, items: list[tuple[int, int, int, bool]]) -> None:
        """items: (token, position, sequence, wants logits)"""
        b = self.batch
        b.n_tokens = len(items)
        for k, (tok, pos, seq, logits) in enumerate(items):
            b.token[k] = tok
            b.pos[k] = pos
            b.n_seq_id[k] = 1
            b.seq_id[k][0] = seq
            b.logits[k] = logits
        if llama_cpp.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")

    def argmax(self, index: int) -> int:
        ptr = llama_cpp.llama_get_logits_ith(self.ctx, index)
        arr = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))
        return int(arr.argmax())

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.mem, True)

    def close(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


def prefill(m: Model, tokens: list[int], start: int, seq: int) -> None:
    for i in range(0, len(tokens), 2048):
        chunk = tokens[i:i + 2048]
        m.decode([(t, start + i + k, seq, i + k == len(tokens) - 1) for k, t in enumerate(chunk)])


def run_sequential(m: Model, prefix: list[int], suffixes: list[list[int]]) -> tuple[float, float, list[list[int]]]:
    """Returns (total seconds, decode seconds, outputs). The prefix is evaluated once and kept."""
    m.clear()
    start = time.perf_counter()
    prefill(m, prefix, 0, 0)
    decode_s = 0.0
    outs = []
    for suf in suffixes:
        llama_cpp.llama_memory_seq_rm(m.mem, 0, len(prefix), -1)  # keep the prefix, drop the last task
        prefill(m, suf, len(prefix), 0)
        tok = m.argmax(-1)
        out = [tok]
        pos = len(prefix) + len(suf)
        t0 = time.perf_counter()
        for _ in range(GEN_TOKENS - 1):
            m.decode([(tok, pos, 0, True)])
            pos += 1
            tok = m.argmax(0)
            out.append(tok)
        decode_s += time.perf_counter() - t0
        outs.append(out)
    return time.perf_counter() - start, decode_s, outs


def run_batched(m: Model, prefix: list[int], suffixes: list[list[int]]) -> tuple[float, float, list[list[int]]]:
    m.clear()
    n = len(suffixes)
    start = time.perf_counter()
    prefill(m, prefix, 0, 0)
    for s in range(1, n):
        llama_cpp.llama_memory_seq_cp(m.mem, 0, s, -1, -1)
    # The suffixes go in batches of whole sequences that fit the 2048-token batch (eight ~280-token
    # suffixes do not: llama_decode then reads past the batch); each one's first answer token is
    # read from the batch it was in.
    toks: list[int] = []
    items: list[tuple[int, int, int, bool]] = []
    last: list[int] = []
    for s, suf in enumerate(suffixes):
        if items and len(items) + len(suf) > 2048:
            m.decode(items)
            toks += [m.argmax(i) for i in last]
            items, last = [], []
        items += [(t, len(prefix) + k, s, k == len(suf) - 1) for k, t in enumerate(suf)]
        last.append(len(items) - 1)
    m.decode(items)
    toks += [m.argmax(i) for i in last]
    outs = [[t] for t in toks]
    pos = [len(prefix) + len(suf) for suf in suffixes]
    t0 = time.perf_counter()
    for _ in range(GEN_TOKENS - 1):
        m.decode([(toks[s], pos[s], s, True) for s in range(n)])
        for s in range(n):
            pos[s] += 1
            toks[s] = m.argmax(s)
            outs[s].append(toks[s])
    decode_s = time.perf_counter() - t0
    return time.perf_counter() - start, decode_s, outs


def measure(path: Path, sizes: list[int], threads: int) -> dict[str, Any]:
    m = Model(path, max(sizes), threads)
    prefix = m.tokenize(SKILL, True)
    suffixes = [m.tokenize(task_suffix(i), False) for i in range(max(sizes))]
    run_sequential(m, prefix, suffixes[:1])  # warm-up
    rows: dict[str, Any] = {}
    for n in sizes:
        seq_total, seq_decode, seq_out = run_sequential(m, prefix, suffixes[:n])
        bat_total, bat_decode, bat_out = run_batched(m, prefix, suffixes[:n])
        same = sum(a == b for a, b in zip(seq_out, bat_out))
        rows[str(n)] = {
            "sequential": {"seconds": seq_total, "decode_tps": n * (GEN_TOKENS - 1) / seq_decode,
                           "tasks_per_s": n / seq_total},
            "batched": {"seconds": bat_total, "decode_tps": n * (GEN_TOKENS - 1) / bat_decode,
                        "tasks_per_s": n / bat_total},
            "identical_outputs": f"{same}/{n}",
        }
    m.close()
    base = rows[str(sizes[0])]["batched"]["decode_tps"]
    for n in sizes:
        r = rows[str(n)]
        r["batched_decode_over_1_sequence"] = r["batched"]["decode_tps"] / base
        r["batched_over_sequential_tasks_per_s"] = r["batched"]["tasks_per_s"] / r["sequential"]["tasks_per_s"]
    return {"prefix_tokens": len(prefix), "suffix_tokens": len(suffixes[0]), "generated_per_task": GEN_TOKENS,
            "by_sequences": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batch.json")
    parser.add_argument("--sizes", default="1,2,4,8")
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args()
    llama_cpp.llama_backend_init()
    sizes = [int(s) for s in args.sizes.split(",")]
    report = {"machine": {"python": platform.python_version(), "cpu": cpu_summary(), "n_threads": args.threads,
                          "llama_cpp_features": sorted(k for k, v in library_features().items() if v)},
              "models": {"gemma3-270m": measure(gemma_path()[0], sizes, args.threads),
                         "smollm2-135m": measure(smollm_path()[0], sizes, args.threads)}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for name, res in report["models"].items():
        for n, r in res["by_sequences"].items():
            print(f"{name} N={n}: decode {r['batched']['decode_tps']:.1f} tok/s batched "
                  f"({r['batched_decode_over_1_sequence']:.2f}x of N=1), sequential {r['sequential']['decode_tps']:.1f}; "
                  f"tasks/s batched/sequential {r['batched_over_sequential_tasks_per_s']:.2f}x; "
                  f"same outputs {r['identical_outputs']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
