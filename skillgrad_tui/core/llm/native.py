"""What the CPU and the llama.cpp build can do, and the one workaround that depends on both.

llama.cpp's AMX weight-repack path segfaults on the first multi-token batch on AMX CPUs
(Sapphire Rapids and later; ggml-org/llama.cpp#20824) for the quantisations the embedded models
use. Two layers keep it away:

- the build: `make install` compiles llama.cpp with `-mno-amx-*` (tools/llama_build.py), so the
  AMX buffer type does not exist and the ordinary CPU repack (AVX2/AVX-512) stays;
- the runtime, for any other build (a user's own wheel, a cached one): when the CPU has AMX *and*
  the library was compiled with it, models load with `use_extra_bufts = False`, which skips every
  extra buffer type (AMX and the CPU repack alike). llama-cpp-python has no keyword for it, so the
  default parameters are overridden for the duration of one `Llama(...)` call.

Measured on a CPU without AMX (AMD EPYC, AVX2), the CPU repack that the runtime switch also turns
off is worth nothing measurable for the embedded models (see `make bench`), so "auto" only turns it
off where the crash can happen; "on"/"off" force it either way.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

RepackSetting = Literal["auto", "on", "off"]
AMX_FLAGS = ("amx_tile", "amx_int8", "amx_bf16")
_FEATURE = re.compile(r"([A-Z0-9_]+) = ([01])")
_override_lock = threading.Lock()


def read_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The `flags` of the first CPU in /proc/cpuinfo (empty where there is no such file)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@cache
def cpu_flags() -> frozenset[str]:
    return read_cpu_flags()


def cpu_summary(flags: frozenset[str] | None = None) -> dict[str, object]:
    """The CPU facts that decide llama.cpp's kernels, for benchmarks and `skillgrad models`."""
    flags = cpu_flags() if flags is None else flags
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wanted = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
              "avx_vnni", *AMX_FLAGS, "neon", "asimd", "sve")
    return {"model": model, "flags": sorted(f for f in wanted if f in flags)}


def parse_system_info(text: str) -> dict[str, bool]:
    """`llama_print_system_info()` ("CPU : AVX2 = 1 | AMX_INT8 = 0 | ...") as feature -> bool."""
    return {name: value == "1" for name, value in _FEATURE.findall(text)}


@cache
def library_features() -> dict[str, bool]:
    import llama_cpp

    return parse_system_info(llama_cpp.llama_print_system_info().decode("utf-8", errors="replace"))


@dataclass(frozen=True)
class RepackDecision:
    use_extra_bufts: bool
    reason: str


def decide_repack(setting: RepackSetting, flags: frozenset[str], library: dict[str, bool]) -> RepackDecision:
    """Whether models load with llama.cpp's extra (repacked) weight buffers."""
    if setting == "on":
        return RepackDecision(True, "weight repacking forced on ([model] repack = \"on\")")
    if setting == "off":
        return RepackDecision(False, "weight repacking off ([model] repack = \"off\")")
    cpu_amx = any(f in flags for f in AMX_FLAGS)
    lib_amx = library.get("AMX_INT8", False) or library.get("AMX", False)
    if cpu_amx and lib_amx:
        return RepackDecision(False, "AMX CPU and an AMX build of llama.cpp: repacking off "
                                     "(its AMX path crashes, ggml-org/llama.cpp#20824)")
    if cpu_amx:
        return RepackDecision(True, "AMX CPU, llama.cpp built without AMX: CPU repacking on")
    return RepackDecision(True, "no AMX: CPU repacking on")


def repack_decision(setting: RepackSetting = "auto") -> RepackDecision:
    return decide_repack(setting, cpu_flags(), library_features())


def _defaults_with(original: Callable[[], Any], use_extra_bufts: bool) -> Callable[[], Any]:
    def patched() -> Any:
        params = original()
        params.use_extra_bufts = use_extra_bufts
        return params

    return patched


def set_process_default(use_extra_bufts: bool) -> None:
    """For a process that only serves models (llama_cpp.server): every model it loads from now on."""
    import llama_cpp.llama_cpp as raw

    raw.llama_model_default_params = _defaults_with(raw.llama_model_default_params, use_extra_bufts)


@contextlib.contextmanager
def model_params(use_extra_bufts: bool) -> Iterator[None]:
    """Load models with `use_extra_bufts` set as given, for the `Llama(...)` calls in the block.

    llama-cpp-python builds its model parameters from `llama_model_default_params()` inside
    `Llama.__init__`; wrapping that function is the only way in. One loader at a time.
    """
    import llama_cpp.llama_cpp as raw

    with _override_lock:
        original = raw.llama_model_default_params
        raw.llama_model_default_params = _defaults_with(original, use_extra_bufts)
        try:
            yield
        finally:
            raw.llama_model_default_params = original
