"""Example claim: the residual-stream norm grows with depth, more than in a random-weight copy of the model."""
import numpy as np
import pytest
from scipy import stats

from mechclaims.forward.capture import capture, encode
from mechclaims.plots import plt, save_figure
from mechclaims.stats.common import perm_p_value
from mechclaims.verdict.verdict import Verdict

TEXTS = ["The cat sat on the mat.", "Paris is the capital of France.", "She gave him the book."]
# Outcomes other than the default (a claim: supported; a control: failed), recorded with the numbers.
EXPECTED_OUTCOMES = {"test_resid_norm_grows_with_depth[tiny-gpt2]": (
    "confounded", "tiny-gpt2 has random weights, and its random-weight copy's norm grows just as much")}


def norm_growth(lm, mc, model_pool, role="claim"):
    """Spearman rho(layer, mean ||resid_pre||) against shuffled layer orders; passes when rho > 0, p < 0.05."""
    sites = [f"blocks.{l}.hook_resid_pre" for l in range(lm.n_layers)]
    acts = model_pool.cached((lm.name, lm.fingerprint, "example"),
                             lambda: capture(lm, encode(lm, TEXTS), sites, "all"))
    norms = np.array([np.linalg.norm(acts[s], axis=-1).mean() for s in sites])
    layers = np.arange(lm.n_layers)
    rho = stats.spearmanr(layers, norms).statistic
    rng = np.random.default_rng(mc.seed)
    null = np.array([stats.spearmanr(rng.permutation(layers), norms).statistic for _ in range(mc.permutations)])
    p = perm_p_value(rho, null)
    return Verdict(claim="resid_norm_grows", statistic_name="spearman_rho", statistic=rho, p=p, role=role,
                   rule="Spearman rho(layer, mean ||resid||) > 0 with permutation p < 0.05", passed=rho > 0 and p < 0.05,
                   null={"q95": float(np.quantile(null, 0.95))}), norms


@pytest.mark.claim("resid_norm_grows", family="observational", controls=("random_weights",))
def test_resid_norm_grows_with_depth(lm, mc, model_pool, artifacts, baseline, record, expect):
    v, norms = norm_growth(lm, mc, model_pool)
    control, random_norms = norm_growth(model_pool.random_copy(lm, mc.seed), mc, model_pool, role="control")
    v.gate({"random_weights": control})  # supported only if the random-weight copy does NOT show the growth
    fig, ax = plt.subplots()
    ax.plot(norms, marker="o", label=lm.name)
    ax.plot(random_norms, marker="x", ls="--", label="random-weight copy (control)")
    ax.set(xlabel="layer", ylabel="mean ||resid_pre||", title=f"{lm.name}: {v.outcome}")
    ax.legend()
    save_figure(fig, artifacts.path("norm_by_layer.png"))
    record(v)
    baseline.check(v.numbers(), lm)
    expect(v)
