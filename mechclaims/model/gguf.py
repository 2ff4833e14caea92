"""Converting the GGUF-backed built-in models once into a safetensors cache, and their pinned tokenizers.

The cache is keyed by the GGUF checksum and the converting transformers version: a version change never reuses stale
weights (or a tokenizer built by another version's GGUF converter).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from mechclaims.errors import ModelError
from mechclaims.model import gemma3
from mechclaims.model.bundled_tokenizers import bundled_tokenizer
from mechclaims.model.cache import cache_ok, cache_root, cached_dir
from mechclaims.model.registry import DEFAULT_MODEL, GEMMA3, GGUF_MODELS, TINY
from mechclaims.model.sources import smollm2_digest, smollm2_gguf
from mechclaims.model.tokenization import pin_special_tokens


def dtype_kw(dtype: Any) -> dict[str, Any]:
    """``from_pretrained``'s dtype keyword: ``dtype`` from transformers 4.56, ``torch_dtype`` before."""
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def gguf_key(digest: str) -> str:
    """Keyed by the GGUF checksum and the converting transformers version."""
    return f"{digest[:12]}-tf{transformers.__version__}"


def converted_dir(name: str, key: str, gguf: Callable[[], Path], cache: str | os.PathLike | None = None,
                  tokenizer_only: bool = False) -> Path:
    """Directory with a GGUF model converted to safetensors + tokenizer (``<cache>/<name>-<key>``), built once
    under a lock (``_atomic_dir``). ``gguf()`` locates (or assembles) the file and is called only to convert."""
    full = cache_root(cache) / f"{name}-{key}"
    if cache_ok(full):
        return full
    tok_dir = cache_root(cache) / f"{name.split('-')[0]}-tokenizer-{key}"
    if tokenizer_only:
        if cache_ok(tok_dir):
            return tok_dir

        def build_tokenizer(d: Path) -> None:
            g = gguf()
            AutoTokenizer.from_pretrained(g.parent, gguf_file=g.name).save_pretrained(d)
        return cached_dir(tok_dir, build_tokenizer)

    def build(d: Path) -> None:
        g = gguf()
        print(f"\nmechclaims: converting {g.name} to a safetensors cache at {full} (once: ~30 s for smollm2-135m, "
              f"~60 s for gemma3-270m)...", flush=True)
        tok = AutoTokenizer.from_pretrained(g.parent, gguf_file=g.name)
        q = AutoModelForCausalLM.from_pretrained(g.parent, gguf_file=g.name, **dtype_kw(torch.float32))
        cfg = q.config
        # A GGUF-loaded model refuses save_pretrained; copy its dequantized weights into a plain model.
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        plain = AutoModelForCausalLM.from_config(cfg)
        plain.load_state_dict(q.state_dict())
        plain.save_pretrained(d)
        tok.save_pretrained(d)

    return cached_dir(full, build)


def gguf_dir(name: str, cache: str | os.PathLike | None = None, tokenizer_only: bool = False) -> Path:
    """The converted cache of a GGUF-backed built-in model (``GGUF_MODELS``), built on first use."""
    if name == DEFAULT_MODEL:
        return converted_dir(DEFAULT_MODEL, gguf_key(smollm2_digest()), smollm2_gguf, cache, tokenizer_only)
    if name == GEMMA3:
        return converted_dir(GEMMA3, gguf_key(gemma3.digest()), lambda: gemma3.gguf_file(cache), cache,
                             tokenizer_only)
    raise ModelError(f"{name!r} is not a GGUF-backed built-in model ({', '.join(GGUF_MODELS)}).")


def load_tokenizer(name: str, cache: str | os.PathLike | None = None) -> Any:
    """A built-in GGUF model's tokenizer, with its BOS/EOS rule pinned to the GGUF's own metadata
    (mechclaims/tokenization.py), so every transformers version gives the same ids. Cheap: the tokenizer-only
    cache, no weights. The tiny models' tokenizers ship in the wheel (mechclaims.model.bundled_tokenizers)."""
    if name in TINY:
        return bundled_tokenizer(name)
    src = name
    if src not in GGUF_MODELS:
        raise ModelError(f"load_tokenizer({name!r}): only the GGUF-backed models {GGUF_MODELS} (and the tiny "
                         f"models that share SmolLM2's tokenizer) have a pinned tokenizer.")
    full = gguf_dir(src, cache, tokenizer_only=True)
    return pin_special_tokens(AutoTokenizer.from_pretrained(full), src, cache)
