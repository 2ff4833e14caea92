"""Shared statistical helpers: effect sizes, bootstrap CIs, permutation p-values, null summaries.

Each is a thin wrapper so every claim reports the same way; the heavy lifting is scipy's.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d with the pooled standard deviation (a minus b)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return float("nan")
    sp = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    return float((a.mean() - b.mean()) / sp) if sp > 0 else float("nan")


def bootstrap_ci(data: tuple[np.ndarray, ...], statistic: Callable[..., float], *, seed: int,
                 n_resamples: int = 1000, paired: bool = False, confidence: float = 0.95,
                 method: str = "percentile") -> tuple[float, float]:
    """``scipy.stats.bootstrap`` CI of ``statistic`` over the samples in ``data``.

    ``statistic`` receives the (resampled) arrays and must accept ``axis``. Percentile is the default
    because BCa's jackknife costs n extra evaluations; pass ``method='BCa'`` where that is affordable.
    """
    res = stats.bootstrap(data, statistic, n_resamples=n_resamples, paired=paired,
                          confidence_level=confidence, method=method, vectorized=True,
                          random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def perm_p_value(observed: float, null: np.ndarray, alternative: str = "greater") -> float:
    """Permutation p-value with the +1 correction (Phipson & Smyth 2010), so p is never 0."""
    null = np.asarray(null, float)
    n = len(null)
    if not np.isfinite(observed) or n == 0:
        return float("nan")  # a NaN statistic must never produce a significant-looking p
    if alternative == "greater":
        k = np.sum(null >= observed)
    elif alternative == "less":
        k = np.sum(null <= observed)
    else:
        k = np.sum(np.abs(null - null.mean()) >= abs(observed - null.mean()))
    return float((k + 1) / (n + 1))


def null_summary(null: np.ndarray) -> dict[str, float]:
    """Mean, sd and quantiles of a null distribution, as reported in every verdict."""
    null = np.asarray(null, float)
    q = np.quantile(null, [0.05, 0.5, 0.95])
    return {"mean": float(null.mean()), "sd": float(null.std(ddof=1)) if len(null) > 1 else 0.0,
            "q05": float(q[0]), "q50": float(q[1]), "q95": float(q[2]), "n": float(len(null))}


def z_score(observed: float, null: np.ndarray) -> float:
    """(observed - null mean) / null sd; NaN when the null is degenerate."""
    null = np.asarray(null, float)
    sd = null.std(ddof=1)
    return float((observed - null.mean()) / sd) if sd > 0 else float("nan")
