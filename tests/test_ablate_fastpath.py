"""The lesion runner's fast path equals a plain full forward pass.

Claim: :class:`mechclaims.forward.ablate.Runner` (causal models: prefixes run once with a KV cache, each edited row runs only
its last token, from the edited block on, fed the recorded clean block input; masked models: full sequences) gives
the same target-minus-foil logit difference as one unbatched, unpadded forward pass of the whole prompt with the same
edit at ``mlp.hook_post``, at the first, middle and last layer, clean and edited, to float32 tolerance. Checked on
every tiny model and on smollm2-135m (real weights). Falsified by any row whose difference exceeds the tolerance:
a wrong position, a stale cache entry, a skipped block that mattered, or padding leaking into attention.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mechclaims.forward.ablate import Runner
from mechclaims.forward.capture import encode, intervene, single_token_id
from mechclaims.model.sites import site
from mechclaims.model.weights import w_out

CAUSAL = ["When Mary met John at the station, the conductor waved at",
          "The teacher thanked Anna because everyone liked",
          "After the long meeting, Tom called",
          "She smiled at",
          "Our neighbours asked Peter and his sister whether the dog could stay with",
          "Nobody expected the old captain to forgive"]
MASKED = ["When Mary met John, the conductor waved at [MASK].", "The teacher thanked [MASK] warmly.",
          "After the meeting, Tom called [MASK] at home.", "Nobody expected the captain to forgive [MASK] so soon."]
RTOL = 1e-4  # of the largest |logit difference|: float32 through different kernels (batched, cached, padded)


def _prompts(lm):
    if lm.kind == "causal":
        ids = encode(lm, CAUSAL)
        return ids, [len(x) - 1 for x in ids], " "
    ids = encode(lm, [t.replace("[MASK]", lm.tokenizer.mask_token) for t in MASKED])
    return ids, [x.index(lm.tokenizer.mask_token_id) for x in ids], ""


def _full(lm, ids, pos, sp, layer=None, keep=None, fill=None) -> float:
    """One prompt, unbatched and unpadded, the whole sequence: target(her) minus foil(him) at ``pos``."""
    her, him = single_token_id(lm, sp + "her"), single_token_id(lm, sp + "him")

    def edit(x):
        x = x.clone()
        x[0, pos] = x[0, pos] * torch.as_tensor(keep, dtype=x.dtype) + torch.as_tensor(fill, dtype=x.dtype)
        return x

    with torch.no_grad():
        x = torch.tensor([ids])
        if layer is None:
            logits = lm.model(input_ids=x).logits[0, pos]
        else:
            with intervene(lm, site("mlp.hook_post", layer), edit):
                logits = lm.model(input_ids=x).logits[0, pos]
    return float(logits[her] - logits[him])


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-bert", "smollm2-135m"])
def test_lesion_fast_path_equals_full_forward(name, tiny):
    lm = tiny(name)
    ids, pos, sp = _prompts(lm)
    n = len(ids)
    runner = Runner(lm, ids, pos, np.ones(n))
    want = np.array([_full(lm, x, p, sp) for x, p in zip(ids, pos)])
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(runner.clean, want, rtol=0, atol=RTOL * scale)
    rng = np.random.default_rng(0)
    for layer in sorted({0, lm.n_layers // 2, lm.n_layers - 1}):
        d = w_out(lm, layer).shape[0]  # MLP width (neurons)
        prompt = np.repeat(np.arange(n), 3)  # three different edits per prompt, in one batch
        keep = np.ones((len(prompt), d), np.float32)
        fill = np.zeros((len(prompt), d), np.float32)
        for r in range(len(prompt)):
            idx = rng.choice(d, size=min(20, d // 2), replace=False)
            keep[r, idx] = 0.0
            fill[r, idx] = rng.normal(0, 1, size=len(idx)) * (r % 3)  # zero, unit and double fills
        got = runner.run(layer, prompt, keep, fill)
        ref = np.array([_full(lm, ids[p], pos[p], sp, layer, keep[r], fill[r]) for r, p in enumerate(prompt)])
        scale = max(1.0, float(np.abs(ref).max()))
        assert np.abs(got - ref).max() <= RTOL * scale, (
            f"{name} L{layer}: fast path vs full pass, max |diff| {np.abs(got - ref).max():.3g} "
            f"(tolerance {RTOL * scale:.3g}; runner: {runner.skip_note})")
        assert np.abs(ref - want[prompt]).max() > 0, "the edits changed nothing: the test would not see a wrong path"
