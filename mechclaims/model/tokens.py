"""Token ids of texts and words for a loaded model (its tokenizer only: no forward pass, no torch)."""
from __future__ import annotations

from typing import Any, Sequence

from mechclaims.errors import StimuliError


def encode(lm: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids per text, with the model's own special tokens (BERT's [CLS]/[SEP]; none for SmolLM2)."""
    if isinstance(texts, str):
        raise TypeError("encode() takes a list of texts, not one string")
    return [list(ids) for ids in lm.tokenizer(list(texts), add_special_tokens=True)["input_ids"]]


def single_token_id(lm: Any, word: str, source: str = "") -> int:
    """Id of ``word`` as one token (spell BPE words with their leading space, e.g. ``" her"``)."""
    ids = lm.tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [lm.tokenizer.decode([i]) for i in ids]
        raise StimuliError(f"{source + ': ' if source else ''}the word {word!r} is {len(ids)} tokens for model "
                           f"{lm.name} ({pieces}); it must be a single token. Choose another word, or check "
                           f"the leading space (BPE vocabularies spell words as ' word').")
    return ids[0]
