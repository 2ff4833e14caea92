"""Shared statistical helpers: effect sizes, bootstrap CIs, permutation p-values, null summaries.

Each is a thin wrapper so every claim reports the same way; the heavy lifting is scipy's.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import stats

NORMALITY_ALPHA = 0.01  # Shapiro-Wilk level below which a null's normal tail is not trusted


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d with the pooled standard deviation (a minus b)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return float("nan")
    sp = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    return float((a.mean() - b.mean()) / sp) if sp > 0 else float("nan")


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


def min_draws(n_tests: int, alpha: float, margin: float = 2.0) -> int:
    """Fewest Monte-Carlo null draws whose smallest p-value, 1/(n+1), is at most alpha / (margin * n_tests).

    Under a Bonferroni family of ``n_tests`` the threshold is alpha / n_tests; with ``margin`` 2 the resolution sits
    well below it, so the number of draws never decides a test (30 layers at alpha 0.05: 1,199 draws)."""
    return int(math.ceil(margin * n_tests / alpha)) - 1


def sequential_mc_p(observed: float, null: np.ndarray, h: int = 10, tail: str = "greater") -> tuple[float, int]:
    """Besag & Clifford (1991) sequential Monte Carlo p-value over draws in the order they were made.

    ``tail="greater"``: a draw is extreme when ``null >= observed``; ``"less"``: ``null <= observed``. At the
    ``h``-th extreme draw (draw n) the test stops with p = h / n; if the draws run out first with g < h extreme,
    p = (g + 1) / (N + 1). Draws after the stopping point do not change p, so callers may draw in chunks and stop
    at the h-th extreme draw (:func:`sequential_null`). A NaN observed value gives p = NaN. Returns (p, draws used)."""
    null = np.asarray(null, float)
    if not np.isfinite(observed):
        return float("nan"), int(null.size)
    extreme = np.cumsum(null >= observed if tail == "greater" else null <= observed)
    hit = np.flatnonzero(extreme >= h)
    if hit.size:
        n = int(hit[0]) + 1
        return float(h / n), n
    return float((extreme[-1] if null.size else 0) + 1) / (null.size + 1), int(null.size)


def tail_p(observed: float, null: np.ndarray, tail: str = "less", h: int = 10) -> tuple[float, str]:
    """(p, method) of ``observed`` against null draws; ``tail`` "less", "greater" or "two-sided"."""
    null = np.asarray(null, float)
    if not np.isfinite(observed) or null.size < 3:
        return float("nan"), "no null"
    if tail == "two-sided":
        lo, m1 = tail_p(observed, null, "less", h)
        hi, m2 = tail_p(observed, null, "greater", h)
        return float(min(1.0, 2 * min(lo, hi))), m1 if lo < hi else m2
    ext = int(np.sum(null <= observed if tail == "less" else null >= observed))
    if ext >= h:
        return sequential_mc_p(observed, null, h, tail)[0], "sequential"
    m, s, n = null.mean(), null.std(ddof=1), null.size
    if s > 0 and stats.shapiro(null).pvalue >= NORMALITY_ALPHA:
        t = (observed - m) / (s * np.sqrt(1 + 1 / n))
        return float(stats.t.cdf(t, n - 1) if tail == "less" else stats.t.sf(t, n - 1)), "normal tail"
    return float((ext + 1) / (n + 1)), "empirical (draws not normal)"


def needs_draws(values: list[float], null: np.ndarray, n_max: int, h: int = 10) -> bool:
    """True while some observed value has fewer than ``h`` extreme draws in either tail and ``n_max`` is not reached."""
    null = np.asarray(null, float)
    if null.size >= n_max:
        return False
    return any(np.isfinite(v) and min(np.sum(null <= v), np.sum(null >= v)) < h for v in values)


def sequential_null(observed: dict[str, tuple[float, str]], draw: Callable[[int, np.random.Generator], dict],
                    n_max: int, seed: int, h: int = 10, stop: str = "any", chunk: int = 128
                    ) -> tuple[dict[str, np.ndarray], dict[str, float], int]:
    """Draw a Monte-Carlo null in chunks, stopping at Besag-Clifford points.

    ``observed[key] = (value, tail)`` with tail "greater" or "less"; ``draw(n, rng)`` returns ``{key: [n]}``
    (several keys may share one draw). ``stop="any"``: stop once any key has ``h`` extreme draws in its tail (an
    intersection-union rule can no longer pass: its p is then h / n >= h / n_max, far above alpha / L when
    ``n_max`` comes from :func:`min_draws`); p-values are Besag-Clifford. ``stop="all"``: stop once every key has
    ``h`` draws beyond it on both sides; p-values come from :func:`tail_p` (sequential where decided, else the
    Shapiro-checked normal tail at ``n_max``). Always stops at ``n_max``. Draws
    come from one seeded generator in chunks, so the first draws are the same whatever the stopping point.
    Returns (null draws per key, sequential p per key, draws made)."""
    if stop not in ("any", "all"):
        raise ValueError(f"stop must be 'any' or 'all', not {stop!r}")
    rng = np.random.default_rng(seed)
    got: dict[str, list[np.ndarray]] = {k: [] for k in observed}  # also any other key ``draw`` returns (reported)
    made = 0

    def extreme(k: str) -> int:
        v, tail = observed[k]
        a = np.concatenate(got[k]) if got[k] else np.zeros(0)
        if not np.isfinite(v):
            return h
        if stop == "all":  # decided once both tails are: the normal tail is only needed for values out in a tail
            return int(min(np.sum(a >= v), np.sum(a <= v)))
        return int(np.sum(a >= v if tail == "greater" else a <= v))

    while made < n_max:
        new = draw(min(chunk, n_max - made), rng)
        for k in new:
            got.setdefault(k, []).append(np.asarray(new[k], float))
        made += len(np.asarray(new[next(iter(observed))]))
        done = [extreme(k) >= h for k in observed]
        if (any(done) if stop == "any" else all(done)):
            break
    arr = {k: np.concatenate(v) if v else np.zeros(0) for k, v in got.items()}
    if stop == "all":  # sequential p where a tail was decided, else the checked normal tail (see tail_p)
        ps = {k: tail_p(v, arr[k], tail, h)[0] for k, (v, tail) in observed.items()}
    else:
        ps = {k: sequential_mc_p(v, arr[k], h, tail)[0] for k, (v, tail) in observed.items()}
    return arr, ps, made
