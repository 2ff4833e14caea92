"""Pinned tokenization for the GGUF-backed models: BOS/EOS come from the GGUF's own metadata, not from the
transformers version that happens to be installed.

A GGUF says whether its tokenizer adds BOS and EOS (``tokenizer.ggml.add_bos_token`` / ``add_eos_token``).
transformers versions disagree on honouring that when they build a tokenizer from the file. Measured on the
sentence "She gave him the book, and he thanked her.":

================  ==========================  =====================================
transformers      SmolLM2 (says add_bos=no)   Gemma 3 (says add_bos=yes)
================  ==========================  =====================================
4.52.4, 4.57.6    prepends BOS (id 1)         prepends <bos> (id 2)
5.0.0             prepends BOS (id 1)         no <bos>
5.23.0, 5.24.0    no BOS                      prepends <bos> (id 2)
================  ==========================  =====================================

So after loading, :func:`pin_special_tokens` sets the rule from the metadata and checks it on a probe; the
token ids of any text are then the same under every version whose converter builds the vocabulary right
(tests/test_tokenization.py checks them against a reference tokenizer written from the GGUF alone).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gguf as gg
import transformers

from mechclaims.errors import ModelError
from mechclaims.model import gemma3
from mechclaims.model.cache import cache_root
from mechclaims.model.registry import DEFAULT_MODEL, GEMMA3, GGUF_MODELS
from mechclaims.model.sources import smollm2_digest, smollm2_gguf

# llama.cpp's defaults when a GGUF has no flag: a SentencePiece ("llama") vocabulary adds BOS, byte-level BPE not.
_BOS_DEFAULT = {"llama": True}


def read_special_tokens(gguf: Path) -> dict[str, Any]:
    """BOS/EOS flags and ids from a GGUF's metadata, read with the ``gguf`` package (slow: GGUFReader parses the
    whole vocabulary, 1.6 s for SmolLM2 and 7.7 s for Gemma 3's 262k tokens; :func:`special_tokens` memoises)."""
    fields = gg.GGUFReader(str(gguf)).fields

    def get(key: str, default: Any = None) -> Any:
        f = fields.get(f"tokenizer.ggml.{key}")
        return default if f is None else f.contents()

    model = get("model", "")
    return {"model": model, "add_bos_token": bool(get("add_bos_token", _BOS_DEFAULT.get(model, False))),
            "add_eos_token": bool(get("add_eos_token", False)), "bos_token_id": get("bos_token_id"),
            "eos_token_id": get("eos_token_id"), "gguf": gguf.name}


def special_tokens(name: str, cache: str | os.PathLike | None = None) -> dict[str, Any]:
    """:func:`read_special_tokens` of a built-in GGUF model, memoised in ``<cache>/gguf-tokens-<sha12>.json`` (the
    GGUF's checksum names it, so another file never reuses it)."""
    if name == DEFAULT_MODEL:
        digest, locate = smollm2_digest(), smollm2_gguf
    elif name == GEMMA3:
        digest, locate = gemma3.digest(), lambda: gemma3.gguf_file(cache)
    else:
        raise ModelError(f"{name!r} is not a GGUF-backed built-in model ({', '.join(GGUF_MODELS)}).")
    memo = cache_root(cache) / f"gguf-tokens-{digest[:12]}.json"
    try:
        return json.loads(memo.read_text())
    except (OSError, ValueError):
        pass
    meta = read_special_tokens(locate())
    tmp = memo.with_name(memo.name + f".tmp{os.getpid()}")
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, memo)  # atomic: a concurrent reader sees the old file or the whole new one
    except OSError:  # a read-only or full cache dir: read the GGUF again next time (the models warn once about it)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return meta


def pin_special_tokens(tok: Any, name: str, cache: str | os.PathLike | None = None) -> Any:
    """Make ``tok`` add exactly the BOS/EOS that ``name``'s GGUF metadata says, and check it; returns ``tok``.

    A tokenizer that already behaves so is left untouched (under transformers 5.24.0 both SmolLM2 and Gemma 3
    do, so their ids and offsets do not change). Otherwise the flags are set through transformers' own
    ``add_bos_token``/``add_eos_token`` setters, which rebuild the post-processor (4.52 to 5.x). For Gemma 3, a
    tokenizer whose subword splits are wrong (transformers 4.52 to 5.0) is first replaced by one built from the
    GGUF's vocabulary alone (mechclaims/spm_tokenizer.py)."""
    if name == "gemma3-270m":
        if not gemma3.tokenizer_is_right(tok):  # transformers 4.52-5.0 build it wrongly from the GGUF
            tok = gemma3.rebuilt_tokenizer(cache)
        gemma3.check_tokenizer(tok)
    meta = special_tokens(name, cache)

    def probe() -> tuple[list[int], list[int]]:
        body = list(tok("a", add_special_tokens=False)["input_ids"])
        want = [meta["bos_token_id"]] * meta["add_bos_token"] + body + [meta["eos_token_id"]] * meta["add_eos_token"]
        return list(tok("a")["input_ids"]), want

    got, want = probe()
    if got != want:
        tok.add_bos_token = meta["add_bos_token"]
        tok.add_eos_token = meta["add_eos_token"]
        got, want = probe()
    if got != want:
        raise ModelError(f"{name}: the tokenizer transformers {transformers.__version__} builds from {meta['gguf']} "
                         f"gives {got} for 'a', and setting add_bos_token={meta['add_bos_token']}, add_eos_token="
                         f"{meta['add_eos_token']} (the GGUF's metadata) did not make it {want}. This version's "
                         f"tokenizer cannot be pinned; use transformers 5.23 or later.")
    return tok
