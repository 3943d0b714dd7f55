"""Schema-constrained JSON on the embedded Gemma model: llama-cpp-python's own grammar sampling
vs. ours, measured in one run. Writes JSON.

llama-cpp-python runs the grammar over the whole vocabulary (262k tokens for Gemma 3) before
every token; we check the sampled token first and constrain only when it is rejected
(skillgrad_tui/core/llm/constrained.py). Both are greedy, so the texts must be identical; the
figure is the ratio of wall times for the same JSON answers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skillgrad_tui.core.failures import QA_CLASSES  # noqa: E402
from skillgrad_tui.core.gradient import gradient_schema  # noqa: E402
from skillgrad_tui.core.llm.base import CompletionRequest  # noqa: E402
from skillgrad_tui.core.llm.llama_backend import LlamaBackend, default_threads  # noqa: E402
from skillgrad_tui.core.llm.models import gemma_path  # noqa: E402
from skillgrad_tui.core.skill import load_skill  # noqa: E402

# The failure diagnoser's schema as a run builds it for the bundled table-qa skill.
GRADIENT_SCHEMA = gradient_schema(load_skill(ROOT / "skills" / "table-qa"), [c.label for c in QA_CLASSES])

QUESTIONS = [
    ("Which country won the most gold medals?", "Norway", "12"),
    ("How many players scored more than 10 goals?", "4", "Smith"),
    ("What was the last year the team won?", "1998", "2001"),
]


def prompt(question: str, expected: str, got: str) -> str:
    return ("<start_of_turn>user\nA table question was answered wrongly.\n"
            f"Question: {question}\nExpected: {expected}\nGot: {got}\n"
            "Reply with a JSON gradient: a short label, the layer, the anchor and a diagnosis."
            "<end_of_turn>\n<start_of_turn>model\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "grammar.json")
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()

    backend = LlamaBackend(gemma_path()[0], model_id="bench-gemma", n_ctx=2048)
    llm = backend._llm
    grammar = backend._grammar(GRADIENT_SCHEMA)
    rows = []
    for q in QUESTIONS:
        text = prompt(*q)
        backend.reset_cache()
        start = time.perf_counter()
        theirs = llm.create_completion(text, max_tokens=args.max_tokens, temperature=0.0,
                                       grammar=grammar)
        t_theirs = time.perf_counter() - start
        backend.reset_cache()
        before = backend.grammar_stats.rejected
        ours = backend.complete(CompletionRequest(prompt=text, max_tokens=args.max_tokens,
                                                  json_schema=GRADIENT_SCHEMA, json_attempts=1))
        rows.append({"question": q[0], "tokens": ours.usage.completion_tokens,
                     "seconds_llama_cpp_python": t_theirs, "seconds_ours": ours.usage.seconds,
                     "rejected_tokens": backend.grammar_stats.rejected - before,
                     "identical_text": theirs["choices"][0]["text"].strip() == ours.text.strip()})
        print(json.dumps(rows[-1]), flush=True)
    backend.close()
    total_theirs = sum(r["seconds_llama_cpp_python"] for r in rows)
    total_ours = sum(r["seconds_ours"] for r in rows)
    report = {"model": "gemma3-270m", "n_threads": default_threads(), "rows": rows,
              "seconds_llama_cpp_python": total_theirs, "seconds_ours": total_ours,
              "speedup": total_theirs / total_ours, "all_identical": all(r["identical_text"] for r in rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"constrained JSON, {len(rows)} answers: llama-cpp-python {total_theirs:.1f}s, ours "
          f"{total_ours:.1f}s = {report['speedup']:.1f}x; identical text: {report['all_identical']}")
    return 0 if report["all_identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
