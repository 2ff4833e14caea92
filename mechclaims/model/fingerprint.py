"""Weight fingerprints from the files a model was loaded from, where it has safetensors files.

Claim: for a Hugging Face model (a hub id in the local cache, or a local directory) whose weights are
``*.safetensors`` files, the sha256 of those files (streamed in 8 MiB blocks, in name order, with each file's name
and size) plus its ``config.json`` identifies the weights as exactly as hashing the loaded state dict, without
materialising anything: an offloaded or 8B model costs one sequential read, and nothing is hashed twice. Falsified
by two different weight files with the same fingerprint, or the same files with two.

The built-in models keep the state-dict fingerprint (``mechclaims.model.load.weight_fingerprint``): the tiny models
are built in code, the GGUF-converted caches and MiniLM's package are loaded by their own branches, and their
committed baselines and activation-cache keys name that fingerprint. A model without safetensors files (only
``pytorch_model.bin``) keeps it too.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download

BLOCK = 8 << 20
PREFIX = "st-"  # tells a file fingerprint from a state-dict one in baselines and summaries


def snapshot_dir(name: str, hub: dict[str, Any] | None = None) -> Path | None:
    """The local folder holding ``name``'s files: the directory itself, or the hub cache's snapshot (no network:
    the files are there once ``from_pretrained`` has loaded them). None when it cannot be found."""
    p = Path(name).expanduser()
    if p.is_dir():
        return p
    try:
        kw = {k: v for k, v in (hub or {}).items() if k == "revision"}
        return Path(snapshot_download(name, allow_patterns=["*.safetensors", "config.json"], local_files_only=True,
                                      **kw))
    except Exception:  # not in the cache under this name (e.g. a gated or renamed repo): fall back to the state dict
        return None


def safetensors_files(folder: Path | None) -> list[Path]:
    """The folder's ``*.safetensors`` weight files, in name order (empty when there are none)."""
    if folder is None or not folder.is_dir():
        return []
    return sorted(folder.glob("*.safetensors"))


def files_fingerprint(files: list[Path], config: Path | None = None) -> str:
    """``st-`` + the first 16 hex digits of the sha256 over each file's name, size and bytes (streamed)."""
    h = hashlib.sha256()
    for f in list(files) + ([config] if config is not None and config.is_file() else []):
        h.update(f"{f.name}:{os.path.getsize(f)}:".encode())
        with open(f, "rb") as fh:
            while block := fh.read(BLOCK):
                h.update(block)
    return PREFIX + h.hexdigest()[:16]


def hub_fingerprint(name: str, hub: dict[str, Any] | None = None) -> str | None:
    """The file fingerprint of a hub id or local directory with safetensors weights, else None."""
    folder = snapshot_dir(name, hub)
    files = safetensors_files(folder)
    return files_fingerprint(files, folder / "config.json") if files and folder is not None else None


def weight_fingerprint(model: Any) -> str:
    """sha256 of every parameter's and buffer's raw bytes (with names, shapes and dtypes): any weight mutation
    changes it. Hashing the bytes in place is exact and 10x faster than float64 sums (0.7 s vs 7 s for SmolLM2)."""
    h = hashlib.sha256()
    with torch.no_grad():
        for n, p in model.state_dict().items():
            if p.device.type == "meta":  # offloaded to disk by accelerate: identity by name, shape and dtype
                h.update(f"{n}{tuple(p.shape)}{p.dtype}meta".encode())
                continue
            t = p.detach().contiguous().cpu()
            h.update(f"{n}{tuple(t.shape)}{t.dtype}".encode())
            if t.numel():
                h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()[:16]
