"""Pinned tokenization: for both GGUF-backed models, the ids mechclaims feeds the model equal the ids the GGUF's own
metadata implies (tests/gguf_reference.py: llama.cpp's reading of the file, written without transformers).

The texts are every sentence the claims use (each string field of fixtures/*.jsonl, the RSA templates filled with
every category word) plus edge cases (digits, newlines, non-ASCII, punctuation). Equality under the installed
transformers, together with the version matrix running this file in each cell, is what "the same ids under every
supported version" means. Falsified by: any text whose ids differ (the message shows the first ones, in pieces).
"""
from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from mechclaims.errors import ModelError

sys.path.insert(0, str(Path(__file__).parent))
import gguf_reference as ref  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["smollm2-135m", "gemma3-270m"]
EDGE = ["In 2024, 3 of 12 cats slept 7.5 hours.", "First line.\nSecond line.", "A café, naïve — “quoted” text…",
        "She said: 'I'll go', didn't she?", "him", " him", "her.", "(her)", "e-mail & URLs: https://x.org/a_b"]


@lru_cache(maxsize=1)
def fixture_texts() -> tuple[str, ...]:
    out: list[str] = []
    for f in sorted((ROOT / "fixtures").glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                out += [v for v in json.loads(line).values() if isinstance(v, str) and " " in v.strip()]
    rsa = json.loads((ROOT / "fixtures" / "rsa_categories.json").read_text())
    for t in [rsa["template"], *rsa.get("extra_templates", [])]:
        out += [t.format(word=w) for words in rsa["categories"].values() for w in words]
    return tuple(dict.fromkeys(out))


def _tokenizer(name: str):
    from mechclaims.model.gguf import load_tokenizer

    try:
        return load_tokenizer(name)
    except ModelError as e:
        if name == "gemma3-270m":  # optional second model: not installed, or a transformers that mis-builds it
            pytest.skip(f"{name}: {e}")
        raise


def _diff(tok, texts, got, want) -> str:
    bad = [(t, g, w) for t, g, w in zip(texts, got, want) if g != w]
    show = "\n".join(f"  {t!r}\n    transformers: {tok.convert_ids_to_tokens(g)}\n    GGUF:         "
                     f"{tok.convert_ids_to_tokens(w)}" for t, g, w in bad[:5])
    return f"{len(bad)} of {len(texts)} texts tokenize differently:\n{show}"


@pytest.mark.parametrize("name", MODELS)
def test_tokenization_ids_equal_gguf_reference(name):
    tok = _tokenizer(name)
    v = ref.read_vocab(str(ref.gguf_path_of(name)))
    texts = list(fixture_texts()) + EDGE
    got = [list(ids) for ids in tok(texts)["input_ids"]]
    want = [ref.encode(v, t) for t in texts]
    assert got == want, _diff(tok, texts, got, want)
    first = {ids[0] for ids in got}
    assert (first == {v.bos}) == v.add_bos, f"{name}: add_bos_token={v.add_bos} but first ids are {sorted(first)[:5]}"


@pytest.mark.parametrize("name", MODELS)
def test_tokenization_pin_overrides_a_version_that_disagrees(name):
    """Mimic a transformers version that gets BOS wrong (4.57 adds it to SmolLM2, 5.0 drops it from Gemma 3):
    the pin restores the GGUF's rule and changes nothing else."""
    from mechclaims.model.tokenization import pin_special_tokens, special_tokens

    tok = _tokenizer(name)
    meta = special_tokens(name)
    text = "She gave him the book."
    pinned = tok(text)["input_ids"]
    tok.add_bos_token = not meta["add_bos_token"]
    assert tok(text)["input_ids"] != pinned, "flipping add_bos_token did not change the ids"
    pin_special_tokens(tok, name)
    assert tok(text)["input_ids"] == pinned
    assert tok(text, add_special_tokens=False)["input_ids"] == pinned[meta["add_bos_token"]:]


def test_tokenization_reference_catches_a_wrong_rule():
    """Negative control: the reference is not vacuous. With BOS flipped, or a subword split changed, the
    comparison fails."""
    v = ref.read_vocab(str(ref.gguf_path_of("smollm2-135m")))
    ids = ref.encode(v, "She gave him the book.")
    flipped = ref.GGUFVocab(**{**v.__dict__, "add_bos": not v.add_bos})
    assert ref.encode(flipped, "She gave him the book.") != ids
    no_merges = ref.GGUFVocab(**{**v.__dict__, "merges": {}})
    assert len(ref.encode(no_merges, "She gave him the book.")) > len(ids)
