"""Grammar cost of the patcher's menu schemas (edit_menu.py) on a real model. Writes JSON.

For a realistic skill (the bundled table-qa) and a large one (the third-party skill-creator, a
33 kB SKILL.md), the patcher's real prompt and schema for a pattern anchored at one section:
grammar build time and generation cost per token, constrained by the schema vs. the same prompt
unconstrained, greedy, in one run (ratios hold under load; absolute seconds do not). Two menus:
the shipped one (every block of the focus section, the heading and last block of the others)
and a "full" one that offers every block of every section, to show why the focus is there.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skillgrad_tui.core.edit_menu import EditMenu  # noqa: E402
from skillgrad_tui.core.gradient import TextGradient, skill_context  # noqa: E402
from skillgrad_tui.core.llm.base import CompletionRequest  # noqa: E402
from skillgrad_tui.core.llm.llama_backend import LlamaBackend, default_threads, grammar_schema  # noqa: E402
from skillgrad_tui.core.llm.models import gemma_path, smollm_path  # noqa: E402
from skillgrad_tui.core.momentum import MomentumMemory  # noqa: E402
from skillgrad_tui.core.patcher import Patcher  # noqa: E402
from skillgrad_tui.core.skill import load_skill  # noqa: E402

SKILLS = {"table-qa": (ROOT / "skills" / "table-qa", "Answer format"),
          "skill-creator": (ROOT.parent / "shared" / "third-party-skills" / "skill-creator", None)}


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return " ".join(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "sse4", "fma")))
    except OSError:
        pass
    return platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("smollm2-135m", "gemma3-270m"), default="smollm2-135m")
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: all cores)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "edit_grammar.json")
    args = parser.parse_args()

    path = (smollm_path if args.model.startswith("smollm") else gemma_path)()[0]
    backend = LlamaBackend(path, model_id=f"bench-{args.model}", n_ctx=4096, n_threads=args.threads)
    rows = []
    for name, (root, focus) in SKILLS.items():
        if not root.is_dir():
            print(f"skipping {name}: {root} not found")
            continue
        skill = load_skill(root)
        focus = focus or max(skill.sections(), key=lambda s: s.end_line - s.start_line).title
        mem = MomentumMemory()
        mem.update([TextGradient("g1-t", 1, "t", "extra words around answer", "L2", focus,
                                 "The skill does not ask for the bare value.", ["t"], "")], 1)
        pattern = mem.patterns[0]
        for variant in ("shipped", "full"):
            menu = EditMenu(skill, focus=focus, full=variant == "full")
            schema = menu.schema()
            prompt = Patcher(backend).prompt(skill, pattern, [], menu)
            system = skill_context(skill)
            if backend.count_tokens(system + prompt) > backend.n_ctx - args.max_tokens - 64:
                # A skill this large does not fit the model's context: the grammar's cost per token
                # does not depend on the prompt, so measure it with the skill text left out.
                system = f"(the text of {skill.name}, {len(system)} characters, left out to fit the context)"
            messages = (("system", system), ("user", prompt))
            text = json.dumps(grammar_schema(schema), sort_keys=True)
            backend._grammars.clear()
            start = time.perf_counter()
            try:
                backend._grammar(schema)
                build = time.perf_counter() - start
            except Exception as exc:  # a grammar llama.cpp refuses is a result too
                rows.append({"skill": name, "variant": variant, "error": str(exc)})
                print(json.dumps(rows[-1]), flush=True)
                continue
            runs = {}
            for constrained in (False, True):
                backend.reset_cache()
                req = CompletionRequest.chat(*messages, max_tokens=args.max_tokens, json_attempts=1,
                                             json_schema=schema if constrained else None)
                try:
                    c = backend.complete(req)
                    runs[constrained] = (c.usage.completion_tokens, c.usage.seconds, c.usage.prompt_tokens, c.text)
                except Exception as exc:  # invalid JSON at the token limit: still a timing
                    runs[constrained] = (0, 0.0, 0, f"error: {exc}")
            (n0, s0, p0, _), (n1, s1, p1, out) = runs[False], runs[True]
            rows.append({"skill": name, "variant": variant, "focus": focus,
                         "anchors": sum(len(b) for b in menu.targets.values()), "branches": len(
                             schema["properties"]["candidates"]["items"].get("anyOf", [1])),
                         "schema_chars": len(text), "grammar_build_s": round(build, 4), "prompt_tokens": p1,
                         "free_tokens": n0, "free_s": round(s0, 3), "constrained_tokens": n1,
                         "constrained_s": round(s1, 3),
                         "ms_per_token_free": round(1000 * s0 / n0, 2) if n0 else None,
                         "ms_per_token_constrained": round(1000 * s1 / n1, 2) if n1 else None,
                         "output": out[:300]})
            print(json.dumps(rows[-1]), flush=True)
    backend.close()
    report = {"model": args.model, "threads": default_threads(), "cpu_flags": cpu_flags(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
