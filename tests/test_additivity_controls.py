"""The additivity claim's wrong-decomposition controls can pass, on their planted confound (issue 27, item 2).

Claim: with the MLP of one layer silenced (``plant_silent_mlp``, its output scaled by 1e-3), dropping ``mlp_out``
from the identity is no longer told apart from the right decomposition by the margin, so the claim's own
``layer_verdict`` (the control's own code, ``controls.wrong_decomposition(indistinguishable_verdict, ...)``) makes
that layer ``confounded``, and only that layer; on the unedited model every control fails at every layer. Falsified
by a control that cannot pass on its planted confound (before round three: the control passed only at a max error
<= 1e-5 at every token; the scaled MLP below still writes ~5e-4 of the residual at its largest token, so the old
rule's control fails there, asserted below), or by a control that passes on the real model.
"""
from __future__ import annotations

import tempfile

import pytest

from mechclaims.model.load import load_model
from mechclaims.model.plant import plant_silent_mlp
from mechclaims.stats.additivity import additivity_verdict, indistinguishable_verdict



@pytest.mark.parametrize("family", ["tiny-gpt2", "tiny-llama"])
def test_drop_mlp_control_passes_on_a_silenced_mlp(family, claim_module, claim_context):
    mod, lm = claim_module("test_additivity"), load_model(family)
    with tempfile.TemporaryDirectory() as tmp:
        ctx0 = claim_context(lm, mod, tmp, permutations=100)
        base = [mod.layer_verdict(ctx0, l) for l in range(lm.n_layers)]
        planted = plant_silent_mlp(lm, 1, 1e-3)
        ctx = claim_context(planted, mod, tmp, permutations=100)
        got = [mod.layer_verdict(ctx, l) for l in range(lm.n_layers)]
        old_rule = additivity_verdict(**mod.acts(ctx).decompose(planted, 1, drop="mlp"))
    assert not old_rule.passed, old_rule.statistic  # the pre-round-three control could not pass here
    assert all(not c.passed for v in base for c in v.controls.values()), [v.outcome for v in base]
    assert got[1].controls["drop_mlp"].passed and got[1].outcome == "confounded", got[1].explain()
    assert [v.outcome for i, v in enumerate(got) if i != 1] == [v.outcome for i, v in enumerate(base) if i != 1]


def test_the_margin_is_a_margin():
    """A wrong decomposition whose dropped term writes 1% of the residual is told apart (fails); 0.01% passes."""
    import numpy as np

    rng = np.random.default_rng(0)
    h, attn = rng.normal(size=(50, 16)), rng.normal(size=(50, 16)) * 0.3
    for scale, passes in ((1e-2, False), (1e-4, True)):
        mlp = rng.normal(size=(50, 16)) * scale * np.linalg.norm(h, axis=1, keepdims=True) / 4
        v = indistinguishable_verdict(h, attn, np.zeros_like(mlp), h + attn + mlp)
        assert v.passed is passes, (scale, v.statistic)
