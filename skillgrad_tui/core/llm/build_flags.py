"""How `make install` builds llama-cpp-python for this machine, and a check of what it built.

Run by path before anything is installed (standard library only):

    python3 skillgrad_tui/core/llm/build_flags.py plan      # prints CMAKE_ARGS for pip
    python3 skillgrad_tui/core/llm/build_flags.py describe  # one line: what will be built, and why
    .venv/bin/python skillgrad_tui/core/llm/build_flags.py verify   # exit 1 if the installed build
                                                                    # does not match the plan

The rules:
- x86-64: a native build (`-march=native`) with AMX turned off (`-mno-amx-*`). llama.cpp's AMX
  weight-repack path segfaults on AMX CPUs (ggml-org/llama.cpp#20824); without it the build keeps
  the ordinary AVX2/AVX-512 repacked kernels. On a CPU without AMX the flags change nothing.
- An NVIDIA GPU (`nvidia-smi` lists one) and the CUDA toolkit (`nvcc`): `-DGGML_CUDA=on`, so
  `n_gpu_layers` offloads. A GPU without the toolkit gets a CPU build and a note saying why.
- The user's own `CMAKE_ARGS` come last, so they win.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field

NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


@dataclass(frozen=True)
class Machine:
    arch: str  # platform.machine(): x86_64, aarch64, arm64, ...
    nvidia_gpus: tuple[str, ...] = ()  # names from nvidia-smi
    nvcc: str | None = None  # path of the CUDA compiler
    user_cmake_args: str = ""


@dataclass(frozen=True)
class BuildPlan:
    cmake_args: list[str]
    device: str  # "cpu" | "cuda"
    notes: list[str] = field(default_factory=list)

    def env_value(self) -> str:
        return " ".join(shlex.quote(a) for a in self.cmake_args)

    def describe(self) -> str:
        what = "CUDA (GPU offload)" if self.device == "cuda" else "CPU"
        return f"llama.cpp build: {what}; " + "; ".join(self.notes)


def detect_machine() -> Machine:
    gpus: tuple[str, ...] = ()
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=20, check=False)
            if out.returncode == 0:
                gpus = tuple(line.strip() for line in out.stdout.splitlines() if line.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    nvcc = shutil.which("nvcc")
    if nvcc is None and os.path.exists("/usr/local/cuda/bin/nvcc"):
        nvcc = "/usr/local/cuda/bin/nvcc"
    return Machine(platform.machine(), gpus, nvcc, os.environ.get("CMAKE_ARGS", ""))


def plan(machine: Machine) -> BuildPlan:
    args: list[str] = []
    notes: list[str] = []
    device = "cpu"
    if machine.arch.lower() in ("x86_64", "amd64", "x86-64"):
        args += ["-DGGML_NATIVE=ON", f"-DCMAKE_C_FLAGS={NO_AMX}", f"-DCMAKE_CXX_FLAGS={NO_AMX}"]
        notes.append("native x86-64 kernels without AMX (llama.cpp's AMX path crashes)")
    if machine.nvidia_gpus and machine.nvcc:
        args.append("-DGGML_CUDA=on")
        device = "cuda"
        notes.append(f"CUDA for {machine.nvidia_gpus[0]} with {machine.nvcc}")
        if machine.nvcc.startswith("/usr/local/cuda/") and not shutil.which("nvcc"):
            args.append(f"-DCMAKE_CUDA_COMPILER={machine.nvcc}")
    elif machine.nvidia_gpus:
        notes.append(f"{machine.nvidia_gpus[0]} found but no CUDA toolkit (nvcc): CPU only; "
                     "install the toolkit and run `make install` again for GPU offload")
    if machine.user_cmake_args.strip():
        args += shlex.split(machine.user_cmake_args)
        notes.append(f"plus your CMAKE_ARGS ({machine.user_cmake_args.strip()})")
    return BuildPlan(args, device, notes)


def verify(build: BuildPlan) -> list[str]:
    """What is wrong with the installed llama-cpp-python for this plan (empty: nothing)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    problems = []
    if "AMX_INT8 = 1" in info and "-mno-amx-int8" in " ".join(build.cmake_args):
        problems.append("the installed llama.cpp was built with AMX (a cached wheel?)")
    if build.device == "cuda" and not llama_cpp.llama_supports_gpu_offload():
        problems.append("the installed llama.cpp cannot offload to the GPU (built without CUDA)")
    return problems


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "describe"
    build = plan(detect_machine())
    if command == "plan":
        print(build.env_value())
    elif command == "describe":
        print(build.describe())
    elif command == "json":
        print(json.dumps(asdict(build)))
    elif command == "verify":
        problems = verify(build)
        for p in problems:
            print(f"llama-cpp-python: {p}", file=sys.stderr)
        return 1 if problems else 0
    else:
        print(f"usage: {argv[0]} plan|describe|json|verify", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
