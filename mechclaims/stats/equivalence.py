"""Evidence of absence: when a claim may be called ``refuted``.

Non-significance is not absence. A claim is refuted only when (a) an equivalence test (TOST, two one-sided tests
at ``alpha``) bounds the effect inside ``(-sesoi, +sesoi)``, the smallest effect of interest stated in the claim's
docstring before looking, or (b) the effect is significant in the opposite direction. TOST at ``alpha`` is the
same as the ``1 - 2 alpha`` confidence interval lying inside the bounds (Schuirmann 1987; Lakens 2017).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Absence:
    """Whether absence was shown, and the words that say how (empty when it was not)."""

    shown: bool
    text: str


def tost_interval(ci_low: float, ci_high: float, sesoi: float) -> bool:
    """True when a ``1 - 2 alpha`` interval lies strictly inside ``(-sesoi, +sesoi)``."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)) or sesoi <= 0:
        return False
    return bool(-sesoi < ci_low and ci_high < sesoi)


def tost_t(mean: float, se: float, df: float, sesoi: float, alpha: float = 0.05) -> tuple[bool, float]:
    """TOST for a mean with a t reference (``scipy.stats.t``): returns (shown, the larger one-sided p)."""
    if not (np.isfinite(mean) and np.isfinite(se) and se > 0 and df > 0):
        return False, float("nan")
    p_low = stats.t.sf((mean + sesoi) / se, df)  # H0: effect <= -sesoi
    p_high = stats.t.cdf((mean - sesoi) / se, df)  # H0: effect >= +sesoi
    p = float(max(p_low, p_high))
    return p < alpha, p


def absence(effect: float, interval: tuple[float, float], sesoi: float, *, name: str = "effect",
            opposite_p: float | None = None, alpha: float = 0.05, what: str = "") -> Absence:
    """Combine the two routes to ``refuted``. ``interval`` is the effect's ``1 - 2 alpha`` interval; ``opposite_p``
    the one-sided p of an effect in the direction opposite to the claim (None when the claim is two-sided)."""
    lo, hi = interval
    if tost_interval(lo, hi, sesoi):
        return Absence(True, f"{name} = {effect:.3g}, {100 * (1 - 2 * alpha):.3g}% interval [{lo:.3g}, {hi:.3g}] inside the "
                             f"equivalence bounds +-{sesoi:g}{' ' + what if what else ''} (TOST at {alpha:g})")
    if opposite_p is not None and np.isfinite(opposite_p) and opposite_p < alpha:
        return Absence(True, f"{name} = {effect:.3g} goes the opposite way to the claim (one-sided p = "
                             f"{opposite_p:.3g} < {alpha:g})")
    return Absence(False, f"absence not shown: {name} = {effect:.3g}, {100 * (1 - 2 * alpha):.3g}% interval [{lo:.3g}, "
                          f"{hi:.3g}] not inside +-{sesoi:g}" + (f"; opposite-direction p = {opposite_p:.3g}"
                                                               if opposite_p is not None else ""))
