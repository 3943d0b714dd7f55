"""CPU features, the llama.cpp build's features, and the AMX workaround (issue: segfaults on AMX CPUs).

The last tests run on whatever CPU the suite runs on: on an AMX machine they load both embedded
models with a multi-token prompt, which is exactly what crashed there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from skillgrad_tui.core.llm.base import CompletionRequest
from skillgrad_tui.core.llm.native import (cpu_flags, cpu_summary, decide_repack, library_features,
                                           parse_system_info, read_cpu_flags, repack_decision)

SAPPHIRE_RAPIDS = frozenset("fpu sse avx avx2 avx512f avx512_vnni amx_bf16 amx_tile amx_int8".split())
EPYC = frozenset("fpu sse avx avx2 fma f16c".split())
AMX_BUILD = parse_system_info("CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |")
PLAIN_BUILD = parse_system_info("CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | REPACK = 1 |")


def test_cpu_flags_come_from_the_first_processor(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 amx_tile amx_int8\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n", encoding="utf-8")
    assert read_cpu_flags(info) == {"fpu", "avx2", "amx_tile", "amx_int8"}
    assert read_cpu_flags(tmp_path / "missing") == frozenset()


def test_system_info_is_parsed_into_features() -> None:
    assert AMX_BUILD["AMX_INT8"] is True and AMX_BUILD["AVX2"] is True
    assert "AMX_INT8" not in PLAIN_BUILD
    assert parse_system_info("CPU : AVX = 0 |") == {"AVX": False}


@pytest.mark.parametrize("flags, library, extra", [
    (SAPPHIRE_RAPIDS, AMX_BUILD, False),  # the crash: AMX CPU with an AMX build -> off
    (SAPPHIRE_RAPIDS, PLAIN_BUILD, True),  # our build on an AMX CPU: the CPU repack stays
    (EPYC, AMX_BUILD, True),  # an AMX build on a CPU without AMX never uses the AMX path
    (EPYC, PLAIN_BUILD, True),
])
def test_repacking_is_off_only_where_the_amx_path_would_run(flags: frozenset[str], library: dict[str, bool],
                                                              extra: bool) -> None:
    decision = decide_repack("auto", flags, library)
    assert decision.use_extra_bufts is extra
    assert decision.reason


def test_repacking_can_be_forced_either_way() -> None:
    assert decide_repack("off", EPYC, PLAIN_BUILD).use_extra_bufts is False
    assert decide_repack("on", SAPPHIRE_RAPIDS, AMX_BUILD).use_extra_bufts is True


def test_cpu_summary_names_the_vector_features() -> None:
    summary = cpu_summary(SAPPHIRE_RAPIDS)
    assert {"avx2", "avx512f", "amx_int8"} <= set(summary["flags"])  # type: ignore[arg-type]


@pytest.mark.model
def test_this_machine_never_runs_the_amx_path() -> None:
    """On an AMX CPU, either the library has no AMX kernels (our build) or models load without the
    extra buffer types; elsewhere nothing is switched off."""
    decision = repack_decision("auto")
    amx_cpu = any(f in cpu_flags() for f in ("amx_tile", "amx_int8"))
    if amx_cpu:
        assert not library_features().get("AMX_INT8", False) or decision.use_extra_bufts is False
    else:
        assert decision.use_extra_bufts is True


@pytest.mark.model
def test_the_override_reaches_llama_cpp(smollm_path: Path) -> None:
    from llama_cpp import Llama

    from skillgrad_tui.core.llm.native import model_params

    with model_params(use_extra_bufts=False):
        llm = Llama(str(smollm_path), n_ctx=256, verbose=False)
    try:
        assert llm.model_params.use_extra_bufts is False
        assert llm.tokenize(b"The capital of France is")  # the model loaded and works
    finally:
        llm.close()
    import llama_cpp.llama_cpp as raw

    assert raw.llama_model_default_params().use_extra_bufts is True  # restored afterwards


@pytest.mark.model
@pytest.mark.parametrize("which", ["gemma_path", "smollm_path"])
@pytest.mark.parametrize("repack", ["auto", "off"])
def test_both_embedded_models_decode_a_multi_token_prompt(which: str, repack: str,
                                                         request: pytest.FixtureRequest) -> None:
    """What segfaulted on AMX CPUs: a prompt of several tokens, evaluated in one batch."""
    from skillgrad_tui.core.llm.llama_backend import LlamaBackend

    path: Path = request.getfixturevalue(which)
    backend = LlamaBackend(path, n_ctx=512, repack=repack)  # type: ignore[arg-type]
    try:
        prompt = "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is"
        completion = backend.complete(CompletionRequest(prompt=prompt, max_tokens=8))
        assert completion.usage.prompt_tokens > 10 and completion.usage.completion_tokens > 0
        assert completion.text.strip()
    finally:
        backend.close()
