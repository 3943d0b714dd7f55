"""Read a GGUF file's header without loading its weights.

`skillgrad models` lists models with their chat template and trained context length, and a bad
file must fail with one line naming it, before llama.cpp gets a chance to abort the process. We
walk the key/value section ourselves (skipping big arrays such as the vocabulary quickly) and use
the `gguf` package only for its table of tensor type sizes, which it keeps current with llama.cpp.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from skillgrad_tui.core.llm.errors import ModelError

_MAGIC = b"GGUF"
# GGUF value types -> struct format (scalars only); 8 = string, 9 = array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_WANTED = ("general.architecture", "general.name", "tokenizer.chat_template",
           "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "general.alignment")


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    version: int
    architecture: str
    name: str | None
    context_length: int | None
    chat_template: str | None
    tensor_count: int
    data_end: int  # byte offset where the last tensor ends; must not exceed the file size
    kv_bytes_per_token: int | None = None  # f16 K and V cache for one token, all layers (None: unknown)


_KV_KEYS = (".block_count", ".embedding_length", ".attention.head_count", ".attention.head_count_kv",
            ".attention.key_length", ".attention.value_length")
AUTO_CTX_MIN = 2048
KV_MEMORY_SHARE = 0.25  # of the memory available now: weights, compute buffers and other jobs need the rest


def _kv_bytes(meta: dict[str, Any], arch: str) -> int | None:
    """K and V of one token: layers x KV heads x (key + value head size) x 2 bytes (f16, llama.cpp's
    default cache type). Sliding-window layers need less; this errs on the safe side."""
    def get(k: str) -> int | None:
        v = meta.get(f"{arch}{k}")
        return int(v) if isinstance(v, int) else None
    layers, embd, heads = get(".block_count"), get(".embedding_length"), get(".attention.head_count")
    if not layers or not embd or not heads:
        return None
    kv_heads = get(".attention.head_count_kv") or heads
    k_len = get(".attention.key_length") or embd // heads
    v_len = get(".attention.value_length") or embd // heads
    return layers * kv_heads * (k_len + v_len) * 2


def available_memory() -> int | None:
    """Bytes of memory available now (MemAvailable), or None where /proc/meminfo is missing."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def auto_n_ctx(info: GGUFInfo, memory: int | None = None) -> int:
    """The context to load a model with when none is set: its trained context, cut down to what a
    quarter of the available memory holds as KV cache, never below AUTO_CTX_MIN (llama.cpp refuses
    a prompt that does not fit rather than crashing, so too small a guess costs a clear error)."""
    trained = info.context_length or 4096
    memory = available_memory() if memory is None else memory
    if info.kv_bytes_per_token and memory:
        trained = min(trained, int(memory * KV_MEMORY_SHARE) // info.kv_bytes_per_token)
    return max(AUTO_CTX_MIN, trained // 256 * 256)


class _Reader:
    def __init__(self, f: BinaryIO, path: Path, size: int) -> None:
        self.f, self.path, self.size = f, path, size

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise ModelError("file is truncated (header ends early); re-download or re-assemble it",
                             self.path)
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack("<" + fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("Q")
        if n > self.size:
            raise ModelError("corrupt GGUF header (string length beyond file size)", self.path)
        return self.read(n).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.unpack("Q")
        if n > self.size:
            raise ModelError("corrupt GGUF header (string length beyond file size)", self.path)
        self.f.seek(n, 1)

    def value(self, vtype: int, keep: bool) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            if keep:
                return self.string()
            self.skip_string()
            return None
        if vtype == _ARRAY:
            item_type, count = self.unpack("I"), self.unpack("Q")
            if item_type in _SCALARS:
                self.f.seek(struct.calcsize(_SCALARS[item_type]) * count, 1)
            else:
                for _ in range(count):
                    self.value(item_type, False)
            return None
        raise ModelError(f"corrupt GGUF header (unknown value type {vtype})", self.path)


def read_gguf_info(path: Path) -> GGUFInfo:
    """Parse the header; raise ModelError (one line, naming the file) if it is not a usable GGUF."""
    path = Path(path)
    if not path.exists():
        raise ModelError("model file not found", path)
    if not path.is_file():
        raise ModelError("model path is not a file", path)
    size = path.stat().st_size
    with path.open("rb") as f:
        r = _Reader(f, path, size)
        if f.read(4) != _MAGIC:
            raise ModelError("not a GGUF model file (bad magic bytes)", path)
        version = r.unpack("I")
        if version not in (2, 3):
            raise ModelError(f"unsupported GGUF version {version}", path)
        n_tensors, n_kv = r.unpack("Q"), r.unpack("Q")
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = r.string()
            vtype = r.unpack("I")
            keep = key in _WANTED or key.endswith(".context_length") or key.endswith(_KV_KEYS)
            val = r.value(vtype, keep)
            if keep:
                meta[key] = val
        tensor_ends: list[int] = []
        for _ in range(n_tensors):
            r.skip_string()
            n_dims = r.unpack("I")
            dims = [r.unpack("Q") for _ in range(n_dims)]
            ggml_type, offset = r.unpack("I"), r.unpack("Q")
            tensor_ends.append(offset + _tensor_bytes(ggml_type, dims))
        alignment = int(meta.get("general.alignment", 32))
        header_end = f.tell()
    data_start = (header_end + alignment - 1) // alignment * alignment
    data_end = data_start + max(tensor_ends, default=0)
    if data_end > size:
        raise ModelError(f"file is truncated: tensors need {data_end} bytes, file has {size}", path)
    arch = str(meta.get("general.architecture", "unknown"))
    ctx = meta.get(f"{arch}.context_length")
    return GGUFInfo(path=path, version=version, architecture=arch, name=meta.get("general.name"),
                    context_length=int(ctx) if ctx is not None else None,
                    chat_template=meta.get("tokenizer.chat_template") or None,
                    tensor_count=n_tensors, data_end=data_end, kv_bytes_per_token=_kv_bytes(meta, arch))


def _tensor_bytes(ggml_type: int, dims: list[int]) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        return 0  # a type newer than our gguf package: skip the size check for it
    n = 1
    for d in dims:
        n *= d
    return n * type_size // block
