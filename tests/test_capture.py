"""capture() and intervene(): structural invariants on tiny models (Hypothesis on random token sequences)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mechclaims.forward.capture import capture, count_hooks, encode, intervene, locate_word
from mechclaims.forward.engine import run_batch
from mechclaims.errors import StimuliError
from mechclaims.stats.additivity import additivity_verdict

FAMILIES = ["tiny-gpt2", "tiny-llama", "tiny-bert"]
seqs = st.lists(st.lists(st.integers(5, 2000), min_size=2, max_size=12), min_size=1, max_size=4)


@pytest.mark.parametrize("name", FAMILIES)
@given(ids=seqs)
def test_capture_batched_equals_one_at_a_time(tiny, name, ids):
    lm = tiny(name)
    sites = ["blocks.1.hook_resid_pre", "blocks.0.mlp.hook_pre", "blocks.1.attn.hook_q"]
    batched = capture(lm, ids, sites, "all", batch_size=4)
    for i, one in enumerate(ids):
        single = capture(lm, [one], sites, "all")
        sel = batched.seq == i
        for s in sites:
            np.testing.assert_allclose(batched[s][sel], single[s], rtol=1e-4, atol=1e-5)
    assert count_hooks(lm.model) == 0


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
@given(ids=seqs)
def test_additivity_holds_on_random_tokens(tiny, name, ids):
    lm = tiny(name)
    L = lm.n_layers
    sites = [f"blocks.{l}.{k}" for l in range(L) for k in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out")]
    acts = capture(lm, ids, sites + ["ln_final.hook_in"], "all")
    for l in range(L):
        nxt = acts[f"blocks.{l + 1}.hook_resid_pre"] if l < L - 1 else acts["ln_final.hook_in"]
        v = additivity_verdict(acts[f"blocks.{l}.hook_resid_pre"], acts[f"blocks.{l}.hook_attn_out"],
                               acts[f"blocks.{l}.hook_mlp_out"], nxt)
        assert v.passed, v.explain()


@pytest.mark.parametrize("name", FAMILIES)
@given(ids=seqs)
def test_noop_intervention_leaves_logits_unchanged(tiny, name, ids):
    lm = tiny(name)
    batch = ids[:2]
    _, _, clean = run_batch(lm, batch)
    with intervene(lm, "blocks.1.hook_resid_pre", lambda x: x):
        _, _, same = run_batch(lm, batch)
    assert torch.equal(clean.logits, same.logits)
    assert count_hooks(lm.model) == 0


def test_intervention_changes_logits_and_is_removed_on_error(tiny):
    lm = tiny("tiny-gpt2")
    ids = encode(lm, ["The cat sat on the mat."])
    _, _, clean = run_batch(lm, ids)
    with intervene(lm, "blocks.0.mlp.hook_post", lambda x: x * 0):
        _, _, edited = run_batch(lm, ids)
    assert not torch.allclose(clean.logits, edited.logits)
    with pytest.raises(RuntimeError, match="boom"):
        with intervene(lm, "blocks.0.hook_mlp_out", lambda x: x):
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="bad edit"):
        with intervene(lm, "blocks.0.hook_mlp_out", lambda x: (_ for _ in ()).throw(ValueError("bad edit"))):
            run_batch(lm, ids)
    assert count_hooks(lm.model) == 0


def test_capture_positions_last_and_index(tiny):
    lm = tiny("tiny-llama")
    ids = encode(lm, ["a b c d e", "hello there"])
    full = capture(lm, ids, ["blocks.0.hook_resid_post"], "all")
    last = capture(lm, ids, ["blocks.0.hook_resid_post"], "last")
    idx = capture(lm, ids, ["blocks.0.hook_resid_post"], [1, 0])
    for i, x in enumerate(ids):
        rows = full["blocks.0.hook_resid_post"][full.seq == i]
        np.testing.assert_allclose(last["blocks.0.hook_resid_post"][i], rows[len(x) - 1], atol=1e-5)
        np.testing.assert_allclose(idx["blocks.0.hook_resid_post"][i], rows[[1, 0][i]], atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_sites_resid_match_hidden_states(tiny, name):
    lm = tiny(name)
    ids = encode(lm, ["Robert helped Lucy with her project.", "She thanked him."])
    L = lm.n_layers
    acts = capture(lm, ids, [f"blocks.{l}.hook_resid_pre" for l in range(L)] + [f"blocks.{L - 1}.hook_resid_post"], "all")
    for i, x in enumerate(ids):
        with torch.no_grad():
            hs = lm.model(input_ids=torch.tensor([x]), output_hidden_states=True).hidden_states
        sel = acts.seq == i
        for l in range(L):
            np.testing.assert_allclose(acts[f"blocks.{l}.hook_resid_pre"][sel], hs[l][0].numpy(), atol=1e-5)
        if lm.sitemap.final_norm is None:  # post-LN: the last block's output is hidden_states[-1]
            np.testing.assert_allclose(acts[f"blocks.{L - 1}.hook_resid_post"][sel], hs[L][0].numpy(), atol=1e-5)


def test_q_heads_concatenate_to_projection(tiny):
    lm = tiny("tiny-llama")
    ids = encode(lm, ["one two three"])
    acts = capture(lm, ids, ["blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_qk_in"], "all")
    attn = lm.model.model.layers[0].self_attn
    x = torch.tensor(acts["blocks.0.attn.hook_qk_in"])
    np.testing.assert_allclose(acts["blocks.0.attn.hook_q"].reshape(len(x), -1), attn.q_proj(x).detach().numpy(), atol=1e-5)
    assert acts["blocks.0.attn.hook_k"].shape[1:] == (lm.model.config.num_key_value_heads, attn.head_dim)


def test_mlp_post_is_activation_of_mlp_pre_gpt2(tiny):
    lm = tiny("tiny-gpt2")
    acts = capture(lm, encode(lm, ["some words here"]), ["blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_post"], "all")
    act = lm.model.transformer.h[0].mlp.act
    np.testing.assert_allclose(act(torch.tensor(acts["blocks.0.mlp.hook_pre"])).numpy(),
                               acts["blocks.0.mlp.hook_post"], atol=1e-5)


@pytest.mark.parametrize("text,word,msg", [
    ("She thanked Tom.", " him", "does not contain"),
    ("him and him", "him", "2 times"),
])
def test_locate_word_errors(tiny, text, word, msg):
    with pytest.raises(StimuliError, match=msg):
        locate_word(tiny("tiny-gpt2"), text, word, source="pairs.jsonl line 3")


def test_locate_word_multi_token_is_rejected(tiny):
    lm = tiny("tiny-gpt2")
    with pytest.raises(StimuliError, match="split into"):
        locate_word(lm, "A xylophonist arrived.", "xylophonist")
    assert locate_word(lm, "She thanked him for it.", "him") == 2
