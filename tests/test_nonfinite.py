"""Non-finite activations are found once, at capture, and make the claim inconclusive, never green.

Claim under test: a model whose embedding weights are NaN (tiny GPT-2, ``wte`` set to NaN, saved to a directory)
gives, for every claim test that reads its activations, the outcome ``inconclusive`` with a message naming the
first non-finite site and layer and the sequence; no such test passes. Falsified by a green test whose numbers
came from that model, or by a crash inside sklearn/numpy instead of the message.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from claimrun import ROOT, run
from mechclaims.forward.capture import capture, encode
from mechclaims.errors import NonFiniteActivationError


@pytest.fixture(scope="module")
def nan_lm():
    """A private tiny-gpt2 (never the session's shared one) whose embedding is NaN."""
    from mechclaims.model.load import load_model

    lm = load_model("tiny-gpt2")
    with torch.no_grad():
        lm.model.transformer.wte.weight.fill_(float("nan"))
    return lm


def test_capture_names_the_first_nonfinite_site(nan_lm):
    ids = encode(nan_lm, ["The cat sat on the mat.", "She gave him the book."])
    with pytest.raises(NonFiniteActivationError) as e:
        capture(nan_lm, ids, ["blocks.3.hook_mlp_out", "blocks.2.hook_resid_pre"], "all")
    s = str(e.value)
    assert "first non-finite site is blocks.0.hook_resid_pre (layer 0, i.e. already at the embeddings)" in s
    assert re.search(r"in sequence [12] of 2 \('(The cat|She gave)", s)
    assert "capture met it at blocks.2.hook_resid_pre (layer 2)" in s  # forward order: layer 2 comes first
    assert "transformer.wte.weight" in s and "inconclusive" in s


def test_a_finite_model_captures_unchanged(tiny):
    lm = tiny("tiny-gpt2")
    a = capture(lm, encode(lm, ["The cat sat on the mat."]), ["blocks.1.hook_resid_pre"], "last")
    assert np.isfinite(a["blocks.1.hook_resid_pre"]).all()


def test_every_claim_on_a_nan_model_is_inconclusive(tmp_path, nan_lm):
    """The whole claim suite on the NaN model: each test that reads the model's activations ends inconclusive,
    failing with the message and no traceback. Controls computed only on the random-weight copy (fresh, finite
    weights; test ids with ``random_weight``) do not read them and may pass."""
    d = tmp_path / "nan-gpt2"
    nan_lm.model.save_pretrained(d)
    nan_lm.tokenizer.save_pretrained(d)
    art = tmp_path / "art"
    r = run("claims", "--model", str(d), "--permutations", "20", "--artifacts-dir", str(art),
            "--baselines-dir", str(tmp_path / "baselines"), cwd=ROOT, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    assert "Input X contains NaN" not in out and "Traceback" not in out, out[-3000:]
    recs = json.loads((art / "runs" / next((art / "runs").iterdir()).name / "summary.json").read_text())["records"]
    ran = [x for x in recs if x["test_outcome"] != "skipped"]
    assert len(ran) >= 20
    touched = [x for x in ran if "random_weight" not in x["test_id"]]
    for x in touched:
        assert x["test_outcome"] in ("failed", "error"), x["test_id"]
        assert x["outcome"] == "inconclusive", (x["test_id"], x["outcome"], x["reason"])
        assert "non-finite activations" in x["reason"] and "blocks.0.hook_resid_pre (layer 0" in x["reason"], x
