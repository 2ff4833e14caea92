"""The GED claims' model-independent controls: gamma instability and fresh shuffled labels (pure functions).

- Gamma instability (Cohen 2022 recommends a fixed shrinkage and showing the result does not hinge on it): at a
  layer, the rule's decision with gamma = 0.01 differs from its decision at 0.001 or 0.1. It passes (the evidence
  depends on the regularization) when any decision differs.
- Fresh shuffled labels: each run shuffles the training labels anew and applies the whole rule, with a null of its
  own. Under a null that matches the test's structure a run passes with probability at most alpha, so the count of
  passing runs is Binomial(n, <= alpha); the control passes when the count exceeds binom.ppf(0.99, n, alpha). It
  catches a rule whose null does not match it (a test statistic the shuffles do not reproduce), which is how a
  held-out t-test on token-labelled data passes 80-99.9% of shuffled runs.
"""
from __future__ import annotations

from typing import Mapping

from scipy import stats

from mechclaims.verdict.verdict import Verdict
from mechclaims.stats.ged import GEDLayer, direction_passes


def decision(res: GEDLayer, alpha: float) -> bool | None:
    """The layer rule's decision (both directions pass), or None when the layer is untestable."""
    if res.degenerate:
        return None
    return all(direction_passes(res, d, alpha) for d in res.directions)


def gamma_control(ref: GEDLayer, others: Mapping[float, GEDLayer], *, alpha: float) -> Verdict:
    d0 = decision(ref, alpha)
    ds = {g: decision(r, alpha) for g, r in others.items()}
    changed = [g for g, d in ds.items() if d is not None and d0 is not None and d != d0]
    testable = d0 is not None and all(d is not None for d in ds.values())
    return Verdict(claim="ged_gamma_instability", statistic_name="n_gammas_changing_decision",
                   statistic=float(len(changed)), rule=f"the layer's decision at gamma={ref.gamma} changes at gamma in "
                   f"{sorted(others)}", passed=bool(changed), role="control", testable=testable,
                   details={f"decision_gamma_{g}": float(d) if d is not None else float("nan")
                            for g, d in {ref.gamma: d0, **ds}.items()},
                   reason=f"decision changes at gamma {changed}" if changed else "")


def shuffled_control(runs: Mapping[tuple, bool], *, alpha: float, claim: str) -> Verdict:
    n, k = len(runs), int(sum(bool(v) for v in runs.values()))
    allowed = int(stats.binom.ppf(0.99, n, alpha)) if n else 0
    p = float(stats.binom.sf(k - 1, n, alpha)) if n else float("nan")
    return Verdict(claim=claim, statistic_name="fraction_of_shuffled_runs_passing",
                   statistic=k / n if n else float("nan"), p=p, role="control", testable=n > 0,
                   rule=f"more than binom.ppf(0.99, {n}, {alpha:.3g}) = {allowed} of {n} shuffled-label runs pass the "
                        f"rule", passed=k > allowed,
                   details={"n_runs": float(n), "n_passing": float(k), "allowed": float(allowed)},
                   reason=f"passing runs: {[key for key, v in runs.items() if v]}" if k else "")
