"""How `make install` builds llama-cpp-python: a dry run of the CMake arguments for each kind of machine."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from skillgrad_tui.core.llm.build_flags import NO_AMX, Machine, plan, verify

SCRIPT = Path(__file__).resolve().parents[1] / "skillgrad_tui" / "core" / "llm" / "build_flags.py"


def test_x86_builds_native_kernels_without_amx() -> None:
    build = plan(Machine("x86_64"))
    assert build.device == "cpu"
    assert "-DGGML_NATIVE=ON" in build.cmake_args
    assert f"-DCMAKE_C_FLAGS={NO_AMX}" in build.cmake_args and f"-DCMAKE_CXX_FLAGS={NO_AMX}" in build.cmake_args
    assert not any("CUDA" in a for a in build.cmake_args)
    # The value pip hands to scikit-build-core splits back into the same arguments.
    assert shlex.split(build.env_value()) == build.cmake_args


def test_an_nvidia_gpu_with_the_toolkit_gets_a_cuda_build() -> None:
    build = plan(Machine("x86_64", ("NVIDIA H200",), "/usr/bin/nvcc"))
    assert build.device == "cuda"
    assert "-DGGML_CUDA=on" in build.cmake_args
    assert "CUDA" in build.describe() and "NVIDIA H200" in build.describe()


def test_a_gpu_without_the_toolkit_gets_a_cpu_build_and_says_why() -> None:
    build = plan(Machine("x86_64", ("NVIDIA L4",)))
    assert build.device == "cpu" and "-DGGML_CUDA=on" not in build.cmake_args
    assert "no CUDA toolkit" in build.describe()


def test_arm_needs_no_amx_flags_and_user_arguments_come_last() -> None:
    build = plan(Machine("aarch64", user_cmake_args="-DGGML_BLAS=ON -DGGML_NATIVE=OFF"))
    assert build.cmake_args == ["-DGGML_BLAS=ON", "-DGGML_NATIVE=OFF"]
    x86 = plan(Machine("x86_64", user_cmake_args="-DGGML_NATIVE=OFF"))
    assert x86.cmake_args[-1] == "-DGGML_NATIVE=OFF"  # the user's word wins over ours


def test_the_script_runs_with_the_standard_library_alone() -> None:
    """`make install` runs it before anything is installed: no site-packages, no package import."""
    out = subprocess.run([sys.executable, "-I", "-S", str(SCRIPT), "plan"], capture_output=True, text=True,
                         check=True)
    if platform.machine() in ("x86_64", "AMD64"):
        assert "-mno-amx-int8" in out.stdout
    described = subprocess.run([sys.executable, "-I", "-S", str(SCRIPT), "describe"], capture_output=True,
                               text=True, check=True)
    assert described.stdout.startswith("llama.cpp build:")


@pytest.mark.model
def test_the_installed_build_matches_the_plan_for_this_machine() -> None:
    from skillgrad_tui.core.llm.build_flags import detect_machine

    assert verify(plan(detect_machine())) == []
