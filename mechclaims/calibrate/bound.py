"""How a measured false-positive rate is judged: its Clopper-Pearson bound against 1.5 x the deciding alpha.

Claim: a rule is calibrated at level ``alpha`` when the upper end of the 95% Clopper-Pearson interval of its
rejection rate over ``n`` independent null runs is at most ``FACTOR`` x alpha. The binomial 99th-percentile bound this
replaces accepted a true rate of 0.08 at alpha 0.05 and n = 60 about 90% of the time.
Falsified by: a rule whose true rate is 2 x alpha passing (``runs_needed`` sizes n so that it cannot, see its test).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

FACTOR = 1.5  # the committed table's criterion: CP upper bound <= 1.5 x alpha
CONFIDENCE = 0.95


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact two-sided binomial interval for ``k`` rejections in ``n`` runs (scipy's ``binomtest``)."""
    if n <= 0:
        return 0.0, 1.0
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class Size:
    """One calibrated rate: ``k`` rejections in ``n`` runs, judged against ``alpha`` (the deciding level)."""

    name: str
    k: int
    n: int
    alpha: float
    factor: float = FACTOR
    testable: int | None = None  # runs in which the rule could decide (a rule that selects nothing cannot)

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else float("nan")

    @property
    def upper(self) -> float:
        return clopper_pearson(self.k, self.n)[1]

    @property
    def ok(self) -> bool:
        return self.upper <= self.factor * self.alpha

    def row(self) -> dict[str, float | str | int | bool | None]:
        return {"name": self.name, "alpha": self.alpha, "n": self.n, "k": self.k, "rate": self.rate,
                "cp_upper": self.upper, "limit": self.factor * self.alpha, "ok": self.ok, "testable": self.testable}

    def explain(self) -> str:
        t = "" if self.testable is None else f", testable in {self.testable}/{self.n}"
        return (f"{self.name}: {self.k}/{self.n} = {self.rate:.5f} rejections at alpha {self.alpha:.4g}; "
                f"Clopper-Pearson 95% upper {self.upper:.5f} vs limit {self.factor:g} x alpha = "
                f"{self.factor * self.alpha:.5f}{t}")


def runs_needed(alpha: float, factor: float = FACTOR, confidence: float = CONFIDENCE) -> int:
    """Fewest runs at which the CP upper bound of the expected count, k = alpha * n, stays <= factor x alpha.

    A rule that rejects at exactly alpha passes with about half probability at this n; one that is conservative
    (most are) passes with room. ~ 20,000 at 0.05 / 30."""
    n = max(10, int(10 / alpha))
    while clopper_pearson(int(math.floor(alpha * n)), n, confidence)[1] > factor * alpha:
        n = int(n * 1.2) + 1
    return n


def interpolate(xs: list[float], power: list[float], target: float = 0.8) -> float | None:
    """Smallest x whose power reaches ``target``, linearly interpolated between grid points; None if never."""
    for i, p in enumerate(power):
        if p >= target:
            if i == 0:
                return float(xs[0])
            x0, x1, p0 = xs[i - 1], xs[i], power[i - 1]
            return float(x0 + (target - p0) * (x1 - x0) / (p - p0))
    return None
