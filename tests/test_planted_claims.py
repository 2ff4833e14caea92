"""Ground truth for the lesion and Q/K claims: their own rules, on mechanisms planted in real (tiny) weights.

Claim (issue 28, item 2): with a mechanism of known size planted at a known layer (``mechclaims.model.plant``), the
claim's own functions (``claims/test_lesion.py`` ``layer_results``, ``claims/test_rsa.py`` ``gated``, exactly what its
tests call) come out ``supported`` there; on the unedited twin they do not; and with a control's confound planted, that
control passes and the claim comes out ``confounded``. Falsified by any of the asserted outcomes below.

- Lesion (tiny-gpt2, layer 2 of 4, 0.3 logits per side; the twin is the gender-channel model, since a random model
  carries no gender): ``plant_lesion`` -> supported at layer 2, both rules; the twin -> not supported at layer 2;
  ``plant_lesion(unrelated=...)`` (the same neurons also write " the" - " a") -> the unrelated-pair control passes and
  layer 2 is confounded. Measured (scripts/plant_check.py lesion, size 0.2): planted her -0.196 / him -0.210 logits,
  supported; unrelated: confounded on both rules.
- Q/K (tiny-gpt2, ``plant_qk`` at every layer, size 0.2): claims A (selectivity) and C (beyond input) supported; the
  unedited model: neither; ``plant_qk_mean_projection`` (W_Q, W_K project out the inputs' mean: the category-agnostic
  alignment that the beyond-input null must not take for category learning): C not supported.
- Patching (tiny-gpt2 on the referent channel, ``plant_patching`` at MLP layer 2): at 0.4 logits the final residual
  after the planted MLP (``blocks.3.hook_resid_pre``) carries the answer and ``resid_patching_ratio`` is supported
  there (measured share 0.95), the twin is not (it is at chance: inconclusive); at 1.0 logits the planted MLP writes the
  answer whatever the prompt, so the control's own unrelated source (``answer_partners``: another prompt with the
  clean answer) restores it too and the layer is confounded (measured: control passes at layers 2-3).
- GED (not asserted here): ``plant_ged_context`` on the lexicon channel gives a held-out context d of ~0.6 at the
  pronoun whatever its size or the channel's gain (3-30), and ``ged_context_beyond_token`` calls it refuted (excess |d|
  over shuffled refits 0.02-0.19, inside its SESOI 0.5): the plant cannot reach a size the claim resolves.
smollm2-135m's versions run in ``scripts/plant_check.py`` (results in docs/planted/).
"""
from __future__ import annotations

import tempfile

import pytest

from mechclaims.model.plant import plant_lesion, plant_patching, plant_qk, plant_qk_mean_projection, referent_channel

LAYER, SIZE = 2, 0.3
pytestmark = pytest.mark.usefixtures("one_thread")


def test_lesion_claim_on_planted_neurons(tiny, claim_module, claim_context):
    mod, twin = claim_module("test_lesion"), referent_channel(tiny("tiny-gpt2"))
    models = {"twin": twin, "planted": plant_lesion(twin, LAYER, SIZE),
              "unrelated": plant_lesion(twin, LAYER, SIZE, unrelated=SIZE)}
    with tempfile.TemporaryDirectory() as tmp:
        got = {k: mod.layer_results(claim_context(m, mod, tmp), LAYER) for k, m in models.items()}
    for rule in ("contrast", "contribution"):
        assert got["planted"][rule].outcome == "supported", got["planted"][rule].explain()
        assert got["twin"][rule].outcome != "supported", got["twin"][rule].explain()
        conf = got["unrelated"][rule]
        assert conf.outcome == "confounded", conf.explain()
        assert conf.controls[f"lesion_{rule}_unrelated_pair"].passed


def test_qk_claims_on_planted_weights(tiny, claim_module, claim_context):
    mod, lm = claim_module("test_rsa"), tiny("tiny-gpt2")
    planted, meanproj = lm, lm
    for layer in range(lm.n_layers):
        planted = plant_qk(planted, layer, 0.2)
        meanproj = plant_qk_mean_projection(meanproj, layer)
    with tempfile.TemporaryDirectory() as tmp:
        got = {k: {w: mod.gated(claim_context(m, mod, tmp), w) for w in (mod.A, mod.C, mod.D)}
               for k, m in (("unedited", lm), ("planted", planted), ("meanproj", meanproj))}
    for which in (mod.A, mod.C, mod.D):
        assert got["planted"][which].outcome == "supported", got["planted"][which].explain()
        assert got["unedited"][which].outcome != "supported", got["unedited"][which].explain()
    for which in (mod.C, mod.D):
        assert got["meanproj"][which].outcome != "supported", got["meanproj"][which].explain()
    # D's own null does not pass the mean-projecting weights (C's is rescued on tiny-gpt2 by its surface controls)
    assert got["meanproj"][mod.D].details["n_layers_holding"] <= got["meanproj"][mod.C].details["n_layers_holding"]


def test_patching_claim_on_a_planted_mlp(tiny, claim_module, claim_context):
    mod, twin = claim_module("test_patching"), referent_channel(tiny("tiny-gpt2"), layer=0)
    models = {"twin": twin, "planted": plant_patching(twin, 2, 0.4), "answer_everywhere": plant_patching(twin, 2, 1.0)}
    with tempfile.TemporaryDirectory() as tmp:
        got = {k: mod.layer_verdicts(claim_context(m, mod, tmp), "ratio")[3] for k, m in models.items()}
    assert got["planted"].outcome == "supported", got["planted"].explain()
    assert got["twin"].outcome != "supported", got["twin"].explain()
    conf = got["answer_everywhere"]
    assert conf.outcome == "confounded" and conf.controls["resid_patching_ratio_unrelated"].passed, conf.explain()
