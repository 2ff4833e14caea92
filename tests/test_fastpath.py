"""The one fast path (mechclaims.forward.fastpath) reproduces the plain forward pass on every family it is used on.

Claims: on a tiny seeded model of every causal family in the support matrix, and on smollm2-135m (real weights), the
self-check finds each shortcut either faithful (then used) or not (then never used); a faithful
:class:`PrefixRunner` gives every prompt's last-token hidden state as one unpadded plain pass does, from block 0 and
from a middle block (fed the recorded clean input), with an edit installed too. The default models' families
(gpt2, llama) must get every shortcut. Falsified by a shortcut that is used and does not reproduce the plain pass:
a wrong position, a stale cache row, a skipped block that mattered, or padding leaking into attention.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mechclaims.forward import fastpath
from mechclaims.forward.engine import run_batch
from mechclaims.forward.intervene import intervene
from mechclaims.model.sites import site

sys.path.insert(0, str(Path(__file__).parent))
import tiny_families as tf  # noqa: E402

PROMPTS = [[11, 52, 7, 300, 41, 9, 77], [5, 12, 13], [101, 102, 103, 104, 105, 106, 107, 108, 109], [64, 65]]


def _plain(lm, prompt, edit=None):
    with torch.no_grad():
        if edit is None:
            return run_batch(lm, [prompt], base_only=True)[2].last_hidden_state[0, -1]
        with intervene(lm, *edit):
            return run_batch(lm, [prompt], base_only=True)[2].last_hidden_state[0, -1]


def _half_last(x):
    """The fast path is exact for edits at the last token only: halve the block input there."""
    y = x.clone()
    y[:, -1] = y[:, -1] * 0.5
    return y


def _check(lm):
    vocab = int(lm.model.get_input_embeddings().weight.shape[0])
    prompts = [[3 + t % (vocab - 3) for t in p] for p in PROMPTS]
    chk = fastpath.check(lm)
    if not chk.last_token:
        return chk  # never used on this family: nothing to compare
    pr = fastpath.PrefixRunner(lm, prompts, record_blocks=chk.skip, chunk=3)
    rows = torch.tensor([0, 1, 2, 3, 2, 0])
    want = torch.stack([_plain(lm, prompts[r]) for r in rows.tolist()])
    scale = max(1.0, float(want.abs().max()))
    assert float((pr.hidden(rows) - want).abs().max()) <= fastpath.RTOL * scale, chk.note
    mid = lm.n_layers // 2
    edit = (site("hook_resid_pre", mid), _half_last)  # an edit at the last token's block input
    want_e = torch.stack([_plain(lm, prompts[r], edit) for r in rows.tolist()])
    assert float((want_e - want).abs().max()) > 0, "the edit changed nothing: the comparison would be blind"
    with intervene(lm, *edit):
        got_e = pr.hidden(rows, start=mid if chk.skip else 0)
    assert float((got_e - want_e).abs().max()) <= fastpath.RTOL * scale, chk.note
    return chk


@pytest.mark.parametrize("fam", [f for f in tf.FAMILY_IDS if f not in ("bert", "roberta")])
def test_fast_path_reproduces_the_plain_pass_on_every_causal_family(fam):
    lm = tf.build(fam)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        chk = _check(lm)
    finally:
        torch.set_num_threads(n)
    if fam in ("gpt2", "llama"):
        assert chk.last_token and chk.skip and chk.full_skip, chk.note


def test_fast_path_on_smollm2(tiny):
    chk = _check(tiny("smollm2-135m"))
    assert chk.last_token and chk.skip and chk.full_skip, chk.note


def test_the_check_is_kept_on_the_loaded_model_not_in_module_state(tiny):
    lm = tiny("tiny-gpt2")
    first = fastpath.check(lm)
    assert lm.extra["fastpath"] is first and fastpath.check(lm) is first
