"""The Q/K claims' decision rules as pure functions (arrays in, Verdict out), shared by the claims and the calibration.

- :func:`selectivity_claim`: claim A, within-minus-across cosine against label permutations, BH-FDR over Q and K at
  every layer, Q and K both significant at more than half of the layers.
- :func:`rotation_claim`: claims B (Q-K RSA) and C (category structure beyond the input) against the rotated-weights
  null, Bonferroni over the layers (B) or over Q and K at every layer (C), at more than half of the layers.

Refuted (both): the opposite direction holds at more than half of the layers, or the effect (mean AUC minus 0.5 for
A; excess rho for B; excess AUC for C) has its 90% leave-one-word-out jackknife interval inside +-``sesoi`` (TOST).
Each verdict carries per-layer outcomes for display (``layers``), without an aggregate: the majority rule decides.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from mechclaims.verdict.verdict import Verdict
from mechclaims.stats.equivalence import absence
from mechclaims.stats.rsa import holds_by_unit, selectivity_profile
from mechclaims.stats.rsa_rotation import auc_batch, auc_jackknife, rho_batch

Z90 = 1.6448536269514722  # the 90% normal interval: TOST at 0.05


def _flat(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).reshape(a.shape[0], a.shape[1], -1)


def _jack_se(loo: np.ndarray) -> float:
    n = len(loo)
    return float(np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2)))


def majority(claim: str, holds: np.ndarray, opposite: np.ndarray, effect: float, se: float, rule: str,
             details: dict, *, sesoi: float, alpha: float, role: str = "claim", what: str = "effect") -> Verdict:
    """More than half of the layers hold. Refuted: the opposite holds at more than half, or TOST on ``effect``."""
    frac = float(np.mean(holds))
    ci = (effect - Z90 * se, effect + Z90 * se)
    ab = absence(effect, ci, sesoi, name=what, alpha=alpha)
    opp = float(np.mean(opposite)) > 0.5
    v = Verdict(claim=claim, statistic_name="frac_layers_holding", statistic=frac, rule=rule, passed=frac > 0.5,
                effect_name=what, effect=effect, effect_ci=ci, details=details, role=role,
                absent=ab.shown or opp, testable=bool(np.isfinite(se)),
                absence=f"the opposite direction holds at {np.mean(opposite):.0%} of layers" if opp else ab.text)
    v.layers = {l: ("supported" if holds[l] else "refuted" if opposite[l] else "inconclusive") for l in range(len(holds))}
    return v


def selectivity_claim(Q: np.ndarray, K: np.ndarray, labels: np.ndarray, *, n_perm: int, seed: int, alpha: float = 0.05,
                      sesoi: float = 0.05, n_boot: int = 0, claim: str = "qk_category_selectivity",
                      role: str = "claim", grouping: str = "category") -> tuple[Verdict, tuple]:
    """Claim A on ``Q [L, n, ...]``, ``K [L, n, ...]``. Returns the verdict and the (Q, K) profiles."""
    Qf, Kf = _flat(Q), _flat(K)
    q, k = (selectivity_profile(V, labels, n_perm=n_perm, n_boot=n_boot, seed=seed) for V in (Qf, Kf))
    holds, (qq, qk) = holds_by_unit([q.p, k.p], alpha)
    p_less = [np.array([(np.sum(n <= o) + 1) / (n.size + 1) for o, n in zip(pr.delta, pr.null)]) for pr in (q, k)]
    opposite, _ = holds_by_unit(p_less, alpha)
    auc, se = auc_jackknife([Qf, Kf], labels)
    det = {"n_layers": float(len(holds)), "n_layers_holding": float(holds.sum()), "auc_mean": float(auc.mean())}
    for l in range(len(holds)):
        det.update({f"L{l:02d}.q.delta": q.delta[l], f"L{l:02d}.q.z": q.z[l], f"L{l:02d}.q.qval": qq[l],
                    f"L{l:02d}.k.delta": k.delta[l], f"L{l:02d}.k.z": k.z[l], f"L{l:02d}.k.qval": qk[l]})
    rule = (f"grouping '{grouping}': within-minus-across cosine beats a label-permutation null (BH-FDR q < {alpha} "
            f"over Q and K at all {len(holds)} layers) for both Q and K at more than half of the layers")
    v = majority(claim, holds, opposite, float(auc.mean() - 0.5), se, rule, det, sesoi=sesoi, alpha=alpha, role=role,
                 what="auc_minus_0.5")
    return v, (q, k)


def rotation_claim(rot: Sequence[tuple], Q: np.ndarray, K: np.ndarray, labels: np.ndarray, *, which: str,
                   alpha: float = 0.05, sesoi: float = 0.05, claim: str, role: str = "claim",
                   grouping: str = "category") -> Verdict:
    """Claim B (``which="rsa"``) or C (``which="beyond"``) from per-layer rotation results ``rot[l] = (observed,
    nulls, p, draws)`` (:func:`mechclaims.stats.qk_null.rotation_null`) and the learned ``Q``, ``K`` ``[L, n, ...]``."""
    L = len(rot)
    a = alpha / L if which == "rsa" else alpha / (2 * L)
    keys = ["rho"] if which == "rsa" else [f"delta_q.{grouping}", f"delta_k.{grouping}"]
    holds = np.array([all(r[2][k] <= a for k in keys) for r in rot])
    opposite = np.array([all(r[2][f"{k}.less"] <= a for k in keys) for r in rot])
    Qf, Kf = _flat(Q), _flat(K)
    if which == "rsa":  # excess rho over the null's mean; jackknife over words, the null mean held fixed
        null_mean = np.array([r[1]["rho"].mean() for r in rot])
        effect = float((np.array([r[0]["rho"] for r in rot]) - null_mean).mean())
        loo = np.array([(rho_batch(np.delete(Qf, i, 1), np.delete(Kf, i, 1)) - null_mean).mean()
                        for i in range(Qf.shape[1])])
        what = "rho_minus_rotated_mean"
    else:  # excess AUC of the categories over the null's mean AUC
        null_auc = np.concatenate([[r[1]["auc_q"].mean() for r in rot], [r[1]["auc_k"].mean() for r in rot]])

        def auc2(q, k, y):
            return np.concatenate([auc_batch(q, y), auc_batch(k, y)])
        effect = float((auc2(Qf, Kf, labels) - null_auc).mean())
        loo = np.array([(auc2(np.delete(Qf, i, 1), np.delete(Kf, i, 1), np.delete(labels, i)) - null_auc).mean()
                        for i in range(Qf.shape[1])])
        what = "auc_minus_rotated_mean"
    det = {"n_layers_holding": float(holds.sum()), "mean_draws": float(np.mean([r[3] for r in rot]))}
    tol = {"mean_draws": {"rtol": 0.25, "atol": 0.05}}  # sequential draws move in whole steps with the last float bits
    for l, r in enumerate(rot):
        for k in keys:
            det.update({f"L{l:02d}.{k}": r[0][k], f"L{l:02d}.{k}.null_mean": float(r[1][k].mean()),
                        f"L{l:02d}.{k}.p": r[2][k]})
    rule = (f"{'Q-K Spearman rho' if which == 'rsa' else f'within-minus-across of Q and K (grouping {grouping})'} "
            f"beats the rotated-weights null (one-sided, Bonferroni {a:.3g}) at more than half of the layers")
    v = majority(claim, holds, opposite, effect, _jack_se(loo), rule, det, sesoi=sesoi, alpha=alpha, role=role,
                 what=what)
    v.tolerances.update(tol)
    return v
