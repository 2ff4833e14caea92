"""Calibration of the across-sizes path-length test (mechclaims/stats/pathlength_sizes.py).

Synthetic data with the real design: 12 shared documents, each model tokenizes them its own way (different token
counts), the association varies between documents (a per-document slope shared by both models: the pairing), and
position adds to both variables. Under H0 both models have the same mean slope.

Falsified by: a false-positive rate above alpha + 2.5 Monte-Carlo SE under H0, a power below 0.8 on a planted
difference of about 0.3 in rho, a TOST that calls "no difference" on the planted case, or a test that accepts
unshared documents.
"""
from __future__ import annotations

import numpy as np

from mechclaims.stats.pathlength_sizes import ModelPath, size_difference

G, ALPHA = 12, 0.05


def _model(name: str, beta: float, tau: np.ndarray, rng: np.random.Generator, n_per_doc: int) -> ModelPath:
    tot, lp, pos, doc = [], [], [], []
    for g in range(G):
        n = n_per_doc + int(rng.integers(-40, 40))
        p = np.arange(1, n + 1, dtype=float)
        y = rng.normal(size=n) + 0.002 * p + rng.normal()  # document offset: the within-doc estimand ignores it
        x = (beta + tau[g]) * y + rng.normal(size=n) + 0.003 * p + 3 * rng.normal()
        tot.append(x), lp.append(y), pos.append(p), doc.append(np.full(n, g))
    return ModelPath(name, *(np.concatenate(v) for v in (tot, lp, pos, doc)))


def _sim(beta_a: float, beta_b: float, n_sims: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_sims):
        tau = rng.normal(0, 0.15, G)  # heterogeneous association across documents, shared by the two models
        a, b = _model("a", beta_a, tau, rng, 180), _model("b", beta_b, tau, rng, 230)
        out.append(size_difference(a, b, alpha=ALPHA, bootstrap=False))
    return out


def test_pathlength_sizes_false_positive_rate():
    """Same true association in both models: the rule calls 'the models differ' at most alpha + MC error."""
    n = 300
    vs = _sim(0.3, 0.3, n, seed=1)
    fpr = np.mean([v.passed for v in vs])
    mc_se = np.sqrt(ALPHA * (1 - ALPHA) / n)
    print(f"\nfalse-positive rate {fpr:.3f} (n={n}, MC SE {mc_se:.3f})")
    assert fpr <= ALPHA + 2.5 * mc_se, fpr


def test_pathlength_sizes_power_and_no_false_absence():
    """A planted difference (slope 0.1 vs 0.45: rho about 0.07 vs 0.37 within documents) is found, and never
    called 'no difference'."""
    vs = _sim(0.1, 0.45, 100, seed=2)
    power = np.mean([v.passed for v in vs])
    deltas = np.mean([v.effect for v in vs])
    print(f"\npower {power:.2f} at mean delta rho {deltas:.3f}")
    assert power >= 0.8, power
    assert not any(v.absent for v in vs)


def test_pathlength_sizes_bootstrap_and_untestable():
    rng = np.random.default_rng(3)
    tau = rng.normal(0, 0.15, G)
    a, b = _model("a", 0.3, tau, rng, 150), _model("b", 0.3, tau, rng, 150)
    v = size_difference(a, b, n_boot=50)
    assert v.details["bootstrap_ci_low"] < v.effect < v.details["bootstrap_ci_high"]
    short = ModelPath("b", b.total[b.doc < 11], b.logprob[b.doc < 11], b.pos[b.doc < 11], b.doc[b.doc < 11])
    u = size_difference(a, short)
    assert not u.testable and u.outcome == "inconclusive" and "documents" in u.reason
