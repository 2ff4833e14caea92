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

from mechclaims.claim import StimuliSet, Verdict, across_layers, control_tests, controls
from mechclaims.datasets.passages import load_passages, passages_hash
from mechclaims.forward.capture import capture, encode
from mechclaims.plots.additivity import error_profile, reconstruction_scatter
from mechclaims.stats.additivity import TOLERANCE, additivity_verdict
from mechclaims.verdict.expected import load_expected

CLAIM = "residual_additivity"
CONTROLS = {"drop_mlp": {"drop": "mlp"}, "drop_attn": {"drop": "attn"}, "off_by_one": {"offset": 1}}
STIMULI = {"passages": StimuliSet("../fixtures/passages.jsonl", load_passages, passages_hash)}
# Residual sites need every token of every passage; the identity is per token, so 4 passages cut to 256 tokens
# (~100 MB of residuals on the default model) test it as well as all of them would.
MAX_SEQS, MAX_TOKENS = 4, 256
TOL = {"rtol": 1e-3, "atol": 1e-5}
EXPECTED_OUTCOMES = load_expected(__file__)  # recorded outcomes other than the default, with their numbers


def residual_acts(ctx, stimuli_hash: str, n_tokens: int):
    """Every residual-stream site at every token of the first passages (one capture per model and stimuli)."""
    lm, sm = ctx.lm, ctx.lm.sitemap
    sites = [f"blocks.{l}.{k}" for l in range(lm.n_layers)
             for k in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post")]
    if "hook_resid_mid" in sm.layer:
        sites += [f"blocks.{l}.hook_resid_mid" for l in range(lm.n_layers)]
    if sm.final_norm:
        sites += ["ln_final.hook_in", "ln_final.hook_normalized"]
    docs = ctx.stimuli("passages")[:MAX_SEQS]
    return capture(lm, [x[:n_tokens] for x in encode(lm, [d.text for d in docs])], sites, "all", batch_size=8)


def acts(ctx):
    return ctx.captured(residual_acts, passages_hash(ctx.stimuli("passages")[:MAX_SEQS]), MAX_TOKENS)


def layer_verdict(ctx, layer: int) -> Verdict:
    """The claim at one layer, gated on its three wrong decompositions at the same layer."""
    a = acts(ctx)
    v = additivity_verdict(**a.decompose(ctx.lm, layer))
    v.absent, v.absence = (not v.passed and v.testable), ("the identity's error exceeds the rule: " + v.reason
                                                           if not v.passed else "")
    v.gate({name: None if kw.get("offset") and layer == 0 else  # no layer before the first
            controls.wrong_decomposition(additivity_verdict, name, **a.decompose(ctx.lm, layer, **kw))
            for name, kw in CONTROLS.items()})
    for name, c in v.controls.items():
        v.note(f"control_{name}_max_rel_err", c.statistic)
    return v


def all_layers(ctx) -> dict[int, Verdict]:
    return {l: ctx.memo(layer_verdict, l) for l in range(ctx.n_layers)}


def model_verdict(ctx) -> Verdict:
    per = all_layers(ctx)
    return across_layers(CLAIM, per, "all", list(CONTROLS),
                         statistic=("max_rel_err_all_layers", float(max(v.statistic for v in per.values()))))


@pytest.mark.claim(CLAIM, family="observational", controls=tuple(CONTROLS), aggregate="all")
def test_residual_additivity(ctx, layer, artifacts, check):
    v = ctx.memo(layer_verdict, layer).copy()  # the memo is shared with the model-level test
    kw = acts(ctx).decompose(ctx.lm, layer)
    if layer == ctx.n_layers - 1 and ctx.lm.sitemap.final_norm:
        # Why the pre-norm target: against hidden_states[-1] (after the final norm) the sum does not hold.
        v.note("vs_post_final_norm_max_rel_err",
               additivity_verdict(**{**kw, "h_next": acts(ctx)["ln_final.hook_normalized"]}).statistic)
    if "post_ln" not in kw:
        reconstruction_scatter(kw["h_next"], kw["h"] + kw["attn"] + kw["mlp"], kw["h"],
                               f"{ctx.lm.name} layer {layer}: reconstruction vs next residual",
                               artifacts.path("reconstruction.png"), seed=ctx.seed)
    check(v, tolerance=TOL, layer=layer, site=f"blocks.{layer}.hook_resid_post")


@pytest.mark.claim(CLAIM, family="observational", controls=tuple(CONTROLS), aggregate="all")
def test_residual_additivity_rule(ctx, artifacts, check):
    """Model level: the identity holds, and its controls fail, at every layer. Plots the error per layer."""
    per, L = all_layers(ctx), ctx.n_layers
    series = {"h + attn_out + mlp_out": np.array([per[l].statistic for l in range(L)]),
              "h[l] only (median)": np.array([per[l].details["hl_only_median_rel_err"] for l in range(L)])}
    for name in CONTROLS:
        series[f"control: {name}"] = np.array([per[l].controls[name].statistic if name in per[l].controls
                                               else np.nan for l in range(L)])
    error_profile(np.arange(L), series, TOLERANCE[ctx.lm.dtype], f"{ctx.lm.name}: residual identity error per layer",
                  artifacts.path("error_per_layer.png"))
    check(model_verdict(ctx), baseline=False, site="blocks.*")


test_additivity_control_fails = control_tests(
    CLAIM, list(CONTROLS), model_verdict,
    doc="Each wrong decomposition must fail the identity check at every layer (a check that passes on a wrong "
        "decomposition proves nothing).")
