"""How many of the patcher's proposed edits apply, with SmolLM2-135M, measured two ways.

`--mode run`: a deliberately defective copy of skills/table-qa (its answer-format section asks for
full sentences), the first questions of the bundled table-qa suite, a few optimisation steps with
the embedded model as task model and optimiser. Every proposed edit is counted from the run's
PatchProposed events. `--mode patcher`: the patcher alone, asked once for each of a fixed set of
failure patterns (a label and the section it concerns) on the same defective skill, so that the
count does not depend on whether the diagnoser produced anything.

"Applied" means the answer became an edit that applies to the skill (whatever the content checks
then said), "passed checks" that it also passed every check in code. Only public entry points are
used (optimize(), the event log, Patcher.propose), so the same script measures older code too:
point PYTHONPATH at another checkout. Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # appended: a PYTHONPATH checkout given by the caller wins

from skillgrad_tui.core.agent import AgentSettings  # noqa: E402
from skillgrad_tui.core.llm.llama_backend import LlamaBackend  # noqa: E402
from skillgrad_tui.core.llm.models import smollm_path  # noqa: E402
from skillgrad_tui.core.optimizer import OptimizeOptions, optimize  # noqa: E402
from skillgrad_tui.core.runlog import replay  # noqa: E402
from skillgrad_tui.core.suites import Suite, load_suite  # noqa: E402

DEFECT = ("## Answer format\n- Answer in a full sentence that repeats the question, then explain how you found "
          "the answer.\n- Round every number to the nearest ten.\n")
# Reasons (old and new wording) that mean the edit never became an edit that applies.
MECHANICAL = re.compile(r"does not apply|conflicts with an earlier edit|none of the accepted forms|no unique line|"
                        r"nothing to add|cannot take an addition|no description line|without detail|changes nothing",
                        re.I)
MODEL_FAILURE = re.compile(r"model output invalid|model call failed", re.I)


def defective_skill(dest: Path) -> Path:
    root = dest / "table-qa"
    shutil.copytree(ROOT / "skills" / "table-qa", root)
    md = root / "SKILL.md"
    text = md.read_text(encoding="utf-8")
    md.write_text(text[: text.index("## Answer format")] + DEFECT, encoding="utf-8")
    return root


def small_suite(n: int) -> Suite:
    full = load_suite(ROOT / "skills" / "suites" / "table-qa")
    return Suite(full.name, full.root, full.format, full.tasks[:n], full.source_split)


def count(run_dir: Path) -> dict[str, Any]:
    """Counts from the run's PatchProposed events (an edit listed there passed every check)."""
    total: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for e in replay(run_dir):
        if e.kind == "patch_proposed":
            p = SimpleNamespace(edits=getattr(e, "edits"),
                                rejected=[(r, str(r.get("reason", ""))) for r in getattr(e, "rejected")])
            c = count_proposal(p)
            total.update({k: c[k] for k in ("proposed", "applied", "passed_checks", "model_failures")})
            reasons.update(c["rejections"])
    return {**{k: total[k] for k in ("proposed", "applied", "passed_checks", "model_failures")},
            "rejections": dict(reasons.most_common())}


PATTERNS = [("extra words around answer", "Answer format"), ("picked the wrong value", "Read the table first"),
            ("wrong number of answer items", "Answer format"),
            ("number written in wrong format", "Counting and arithmetic"),
            ("date written in wrong format", "Answer format"), ("picked the wrong value", "Comparisons"),
            ("empty or refused answer", "Answer format"), ("answer cut off or looping", "new section")]


def count_proposal(p: Any) -> dict[str, Any]:
    """The same counts for any version's Proposal: edits that passed, and rejections by reason."""
    proposed = applied = len(p.edits)
    reasons: Counter[str] = Counter()
    failures = 0
    for raw, why in p.rejected:
        if MODEL_FAILURE.search(why):
            failures += 1
            continue
        proposed += 1
        reasons[why.split(":")[0][:60]] += 1
        applied += not MECHANICAL.search(why)
    return {"proposed": proposed, "applied": applied, "passed_checks": len(p.edits), "model_failures": failures,
            "rejections": dict(reasons.most_common())}


def patcher_only(backend: Any, seed: int) -> dict[str, Any]:
    from skillgrad_tui.core.gradient import TextGradient
    from skillgrad_tui.core.momentum import MomentumMemory
    from skillgrad_tui.core.patcher import Patcher
    from skillgrad_tui.core.skill import load_skill

    with tempfile.TemporaryDirectory(prefix="skillgrad-apply-") as tmp:
        skill = load_skill(defective_skill(Path(tmp)))
        tasks = small_suite(40).tasks
        total: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        start = time.perf_counter()
        for i, (label, anchor) in enumerate(PATTERNS):
            mem = MomentumMemory()
            mem.update([TextGradient(f"g1-t{i}", 1, f"t{i}", label, "L2", anchor, "The skill gets this wrong.",
                                     [f"t{i}"], "")], 1)
            p = Patcher(backend, seed=seed + i).propose(skill, mem.patterns, [], tasks, 1)
            c = count_proposal(p)
            total.update({k: c[k] for k in ("proposed", "applied", "passed_checks", "model_failures")})
            reasons.update(c["rejections"])
        return {"seed": seed, "seconds": round(time.perf_counter() - start, 1), **total,
                "rejections": dict(reasons.most_common())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("run", "patcher"), default="run")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "apply.json")
    args = parser.parse_args()

    backend = LlamaBackend(smollm_path()[0], model_id="bench-smollm", n_ctx=2048)
    rows = []
    try:
        for seed in (int(s) for s in args.seeds.split(",")):
            if args.mode == "patcher":
                rows.append(patcher_only(backend, seed))
                print(json.dumps(rows[-1]), flush=True)
                continue
            with tempfile.TemporaryDirectory(prefix="skillgrad-apply-") as tmp:
                skill = defective_skill(Path(tmp))
                options = OptimizeOptions(steps=args.steps, batch_size=4, seed=seed, gate="validation",
                                          failures_only=False, run_dir=Path(tmp) / "run")
                start = time.perf_counter()
                result = optimize(skill, small_suite(args.tasks), backend, backend, options,
                                  agent_settings=AgentSettings(max_tokens=24, table_rows=12))
                row = {"seed": seed, "seconds": round(time.perf_counter() - start, 1),
                       "versions": len(result.versions), "kept": sum(1 for v in result.versions[1:] if v.kept),
                       "changed": result.final_skill_hash != result.versions[0].skill_hash,
                       **count(result.run_dir)}
                account = getattr(result, "account", None)
                if account is not None:
                    row["account"] = account
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        backend.close()
    total = {k: sum(r[k] for r in rows) for k in ("proposed", "applied", "passed_checks", "model_failures")}
    report = {"label": args.label, "mode": args.mode, "model": "smollm2-135m", "steps": args.steps,
              "tasks": args.tasks,
              "cpu": platform.processor() or platform.machine(), "rows": rows, "total": total}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"{args.label}: {total['applied']} of {total['proposed']} proposed edits applied, "
          f"{total['passed_checks']} passed every check")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
