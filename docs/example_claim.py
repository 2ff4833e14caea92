"""Example claim: the residual-stream norm grows with depth (written as the README's walkthrough)."""
import numpy as np
import pytest
from scipy import stats

from mechclaims.capture import capture, encode
from mechclaims.plots import plt, save_figure
from mechclaims.stats.common import perm_p_value
from mechclaims.verdict import Verdict


@pytest.mark.claim("resid_norm_grows", family="observational")
def test_resid_norm_grows_with_depth(lm, mc, model_pool, artifacts, baseline, record):
    texts = ["The cat sat on the mat.", "Paris is the capital of France.", "She gave him the book."]
    sites = [f"blocks.{l}.hook_resid_pre" for l in range(lm.n_layers)]
    acts = model_pool.cached((lm.name, "example"), lambda: capture(lm, encode(lm, texts), sites, "all"))
    norms = np.array([np.linalg.norm(acts[s], axis=-1).mean() for s in sites])     # statistic per layer
    layers = np.arange(lm.n_layers)
    rho = stats.spearmanr(layers, norms).statistic
    rng = np.random.default_rng(mc.seed)                                           # null: shuffled layer order
    null = np.array([stats.spearmanr(rng.permutation(layers), norms).statistic for _ in range(mc.permutations)])
    p = perm_p_value(rho, null)
    v = Verdict(claim="resid_norm_grows", statistic_name="spearman_rho", statistic=rho, p=p,
                rule="Spearman rho(layer, mean ||resid||) > 0 with permutation p < 0.05", passed=rho > 0 and p < 0.05,
                null={"q95": float(np.quantile(null, 0.95))})
    fig, ax = plt.subplots()
    ax.plot(layers, norms, marker="o")
    ax.set(xlabel="layer", ylabel="mean ||resid_pre||", title=f"{lm.name}: rho={rho:.2f}, p={p:.3g}")
    save_figure(fig, artifacts.path("norm_by_layer.png"))
    record(v)
    baseline.check(v.numbers(), lm)
    v.assert_holds()
