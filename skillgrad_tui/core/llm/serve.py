"""`python -m skillgrad_tui.core.llm.serve ARGS`: llama-cpp-python's OpenAI-compatible server
(`python -m llama_cpp.server ARGS`, same arguments) with this machine's repacking decision applied,
so that it does not crash on an AMX CPU with an AMX build of llama.cpp (native.py).

$SKILLGRAD_REPACK (auto | on | off, default auto) overrides the decision.
"""

from __future__ import annotations

import os
import sys

from skillgrad_tui.core.llm.native import repack_decision, set_process_default


def main() -> None:
    setting = os.environ.get("SKILLGRAD_REPACK", "auto")
    if setting not in ("auto", "on", "off"):
        sys.exit(f"SKILLGRAD_REPACK must be auto, on or off, not {setting!r}")
    decision = repack_decision(setting)  # type: ignore[arg-type]
    print(f"skillgrad serve: {decision.reason}", file=sys.stderr, flush=True)
    set_process_default(decision.use_extra_bufts)
    from llama_cpp.server.__main__ import main as serve

    sys.argv[0] = "llama_cpp.server"
    serve()


if __name__ == "__main__":
    main()
