"""Claim 1: residual-stream additivity.

Claim: in every block, the next residual is the current one plus exactly what attention and the MLP add:
``resid_pre[l+1] = resid_pre[l] + attn_out[l] + mlp_out[l]`` for pre-LN families. For the last block the target is
``ln_final.hook_in`` (the residual *before* the final norm), because HF's ``hidden_states[-1]`` comes after it.
For post-LN BERT the plain sum does not hold; the form tested is ``resid_mid = LN1(resid_pre + attn_out)`` and
``resid_post = LN2(resid_mid + mlp_out)``.

Pass rule (stated before looking), per layer: max_t ||Δ_t||/||h[l+1]_t|| <= dtype tolerance and <= SEPARATION x the
median h[l]-only error (mechclaims.stats.additivity). The identity is exact arithmetic, not a sample: an error above
the tolerance is itself the evidence of absence, so a layer whose rule fails with a finite error is ``refuted``.
Controls, per layer, each a deliberately wrong decomposition that must fail the same check: dropping ``mlp_out``,
dropping ``attn_out``, and reading h one layer too early (from layer 1 on). A wrong decomposition that passes (a
sublayer that adds ~nothing) makes that layer ``confounded``: the check could not tell the terms apart there.
Model level (``test_residual_additivity_rule``): every layer must be supported (aggregate "all").
Falsified by: any layer whose identity error exceeds the rule, i.e. a wrong site map or a block with hidden terms.
"""
from __future__ import annotations

import numpy as np
import pytest

from mechclaims.plots.additivity import error_profile, reconstruction_scatter
from mechclaims.forward.residual import layer_terms
from mechclaims.stats.additivity import TOLERANCE, additivity_verdict
from mechclaims.verdict.outcome import load_expected
from mechclaims.verdict.verdict import Verdict

CLAIM = "residual_additivity"
CONTROLS = {"drop_mlp": {"drop": "mlp"}, "drop_attn": {"drop": "attn"}, "off_by_one": {"offset": 1}}

# Recorded outcomes other than the default (claim: supported; control: failed), per test id, with the numbers:
# claims/expected/<this module>.yml, written by scripts/record_outcomes.py and reviewed like a baseline.
EXPECTED_OUTCOMES = load_expected(__file__)


def layer_verdict(lm, acts, layer: int) -> Verdict:
    """The claim at one layer, gated on its three wrong decompositions at the same layer."""
    v = additivity_verdict(**layer_terms(lm, acts, layer))
    v.absent, v.absence = (not v.passed and v.testable), ("the identity's error exceeds the rule: " + v.reason
                                                           if not v.passed else "")
    ctl = {}
    for name, kw in CONTROLS.items():
        if kw.get("offset") and layer == 0:
            continue  # no layer before the first
        c = additivity_verdict(**layer_terms(lm, acts, layer, **kw), claim=f"additivity[{name}]")
        c.role = "control"
        ctl[name] = c
    return v.gate(ctl)


def all_layers(lm, acts, model_pool) -> dict[int, Verdict]:
    return model_pool.cached((lm.name, lm.fingerprint, "additivity", id(acts)),
                             lambda: {l: layer_verdict(lm, acts, l) for l in range(lm.n_layers)})


@pytest.mark.claim(CLAIM, family="observational", controls=tuple(CONTROLS), aggregate="all")
def test_residual_additivity(lm, layer, residual_acts, artifacts, baseline, record, expect, mc):
    v = layer_verdict(lm, residual_acts, layer)
    if layer == lm.n_layers - 1 and lm.sitemap.final_norm:
        # Why the pre-norm target: against hidden_states[-1] (after the final norm) the sum does not hold.
        post = layer_terms(lm, residual_acts, layer)
        post["h_next"] = residual_acts["ln_final.hook_normalized"]
        v.details["vs_post_final_norm_max_rel_err"] = additivity_verdict(**post).statistic
    for name, c in v.controls.items():
        v.details[f"control_{name}_max_rel_err"] = c.statistic
    record(v, layer=layer, site=f"blocks.{layer}.hook_resid_post")
    kw = layer_terms(lm, residual_acts, layer)
    if "post_ln" not in kw:
        reconstruction_scatter(kw["h_next"], kw["h"] + kw["attn"] + kw["mlp"], kw["h"],
                               f"{lm.name} layer {layer}: reconstruction vs next residual",
                               artifacts.path("reconstruction.png"), seed=mc.seed)
    baseline.check(v.numbers(), lm, default_tolerance={"rtol": 1e-3, "atol": 1e-5})
    expect(v)


@pytest.mark.claim(CLAIM, family="observational", controls=tuple(CONTROLS), aggregate="all")
def test_residual_additivity_rule(lm, residual_acts, model_pool, artifacts, record, expect):
    """Model level: the identity holds, and its controls fail, at every layer. Plots the error per layer."""
    per = all_layers(lm, residual_acts, model_pool)
    L = lm.n_layers
    series = {"h + attn_out + mlp_out": np.array([per[l].statistic for l in range(L)]),
              "h[l] only (median)": np.array([per[l].details["hl_only_median_rel_err"] for l in range(L)])}
    for name in CONTROLS:
        series[f"control: {name}"] = np.array([per[l].controls[name].statistic if name in per[l].controls
                                               else np.nan for l in range(L)])
    error_profile(np.arange(L), series, TOLERANCE[lm.dtype], f"{lm.name}: residual identity error per layer",
                  artifacts.path("error_per_layer.png"))
    v = Verdict(claim=CLAIM, statistic_name="max_rel_err_all_layers",
                statistic=float(max(per[l].statistic for l in range(L))), rule="every layer supported",
                passed=all(per[l].passed for l in range(L)), layers={l: per[l].outcome for l in range(L)},
                aggregate="all", details={"n_layers": float(L)})
    v.gate({name: control_summary(per, name) for name in CONTROLS})
    record(v, site="blocks.*")
    expect(v)


def control_summary(per: dict[int, Verdict], name: str) -> Verdict:
    """A control at model level: it passes if its wrong decomposition passes the check at any layer."""
    cs = [per[l].controls[name] for l in sorted(per) if name in per[l].controls]
    passing = [l for l in sorted(per) if name in per[l].controls and per[l].controls[name].passed]
    return Verdict(claim=f"additivity[{name}]", statistic_name="min_max_rel_err",
                   statistic=float(min(c.statistic for c in cs)), rule="the wrong decomposition passes at some layer",
                   passed=bool(passing), role="control", testable=all(c.testable for c in cs),
                   details={"n_layers_passing": float(len(passing))},
                   reason=f"passes at layers {passing}" if passing else "")


@pytest.mark.claim("{control}", family="observational", control_of=CLAIM)
@pytest.mark.control
@pytest.mark.parametrize("control", list(CONTROLS))
def test_additivity_control_fails(lm, residual_acts, model_pool, record, expect, control):
    """Each wrong decomposition must fail the identity check at every layer (a check that passes on a wrong
    decomposition proves nothing)."""
    v = control_summary(all_layers(lm, residual_acts, model_pool), control)
    record(v, control=control)
    expect(v)
