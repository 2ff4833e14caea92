"""Example claim: the residual-stream norm grows with depth, more than in a random-weight copy of the model.

Rule (stated before looking): Spearman rho(layer, mean ||resid_pre||) > 0 with a permutation p < 0.05.
Control: the same rule on the random-weight copy (the growth must come from training, not the architecture).
Falsified by: rho <= 0, or p >= 0.05, or a random-weight copy whose norm grows just as much (confounded).
"""
import numpy as np
import pytest
from scipy import stats

from mechclaims.claim import Verdict, controls
from mechclaims.forward.capture import capture, encode
from mechclaims.plots import plt, save_figure
from mechclaims.stats.common import perm_p_value

TEXTS = ["The cat sat on the mat.", "Paris is the capital of France.", "She gave him the book."]
# Outcomes other than the default (a claim: supported; a control: failed), recorded with the numbers.
EXPECTED_OUTCOMES = {"test_resid_norm_grows_with_depth[tiny-gpt2]": (
    "confounded", "tiny-gpt2 has random weights, and its random-weight copy's norm grows just as much")}


def mean_norms(ctx) -> np.ndarray:
    sites = [f"blocks.{l}.hook_resid_pre" for l in range(ctx.n_layers)]
    acts = capture(ctx.lm, encode(ctx.lm, TEXTS), sites, "all")
    return np.array([np.linalg.norm(acts[s], axis=-1).mean() for s in sites])


def norm_growth(ctx) -> Verdict:
    norms, layers = ctx.memo(mean_norms), np.arange(ctx.n_layers)
    rho = stats.spearmanr(layers, norms).statistic
    rng = np.random.default_rng(ctx.seed)
    null = np.array([stats.spearmanr(rng.permutation(layers), norms).statistic for _ in range(ctx.permutations)])
    p = perm_p_value(rho, null)
    return Verdict(claim="resid_norm_grows", statistic_name="spearman_rho", statistic=rho, p=p,
                   rule="Spearman rho(layer, mean ||resid||) > 0 with permutation p < 0.05", passed=rho > 0 and p < 0.05,
                   null={"q95": float(np.quantile(null, 0.95))})


@pytest.mark.claim("resid_norm_grows", family="observational", controls=("random_weights",))
def test_resid_norm_grows_with_depth(ctx, artifacts, check):
    v = norm_growth(ctx).gate({"random_weights": controls.random_weights(ctx, norm_growth)})
    fig, ax = plt.subplots()
    ax.plot(ctx.memo(mean_norms), marker="o", label=ctx.lm.name)
    ax.plot(ctx.random().memo(mean_norms), marker="x", ls="--", label="random-weight copy (control)")
    ax.set(xlabel="layer", ylabel="mean ||resid_pre||", title=f"{ctx.lm.name}: {v.outcome}")
    ax.legend()
    save_figure(fig, artifacts.path("norm_by_layer.png"))
    check(v)  # record, check the baseline, check the recorded outcome: in that order
