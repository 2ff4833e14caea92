"""Structured synthetic documents for calibrating the path-length rule: the nuisances of real token streams, and
optionally a planted within-document association.

Each of ``G`` documents has a uniform random length in [``min_len``, ``max_len``] tokens (the bundled passages hold
207-327 SmolLM2 tokens), positions 0..n-1 (the rule drops position 0 itself), and

    x = between * f_g + amplitude * trend(pos) + u          (u: AR(1) with coefficient phi, unit variance)
    y = between * f_g + amplitude * trend(pos) + b_g * u + v   (v: an independent AR(1), same phi)

- ``f_g``: a document-level factor shared by x and y (a between-document association the within-document estimand
  must not see);
- ``trend``: a position trend shared by x and y (no within-document link beyond position): ``exp8`` = exp(-pos/8),
  fast at the start of a document; ``rise60`` = 1 - exp(-pos/60), a slower saturating rise; ``none``;
- ``b_g = effect + slope_sd * N(0, 1)``: the within-document link. ``effect`` > 0 plants an association (the
  population within-document rho is about effect / sqrt(1 + effect^2)); ``slope_sd`` > 0 with ``effect`` 0 makes
  every document associated with its own sign and the mean zero: a configuration where the Freedman-Lane null
  (no dependence at all) is false while the jackknife's null (mean rho 0) holds, the least-favourable case for the
  jackknife component of the intersection-union rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.signal import lfilter

TRENDS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda p: np.zeros_like(p, dtype=float),
    "exp8": lambda p: np.exp(-p / 8.0),
    "rise60": lambda p: 1.0 - np.exp(-p / 60.0),
}
PHIS = (0.0, 0.5, 0.9)


@dataclass(frozen=True)
class Docs:
    """Per-token arrays of one synthetic corpus (tokens in document order, position 0 included)."""

    x: np.ndarray
    y: np.ndarray
    pos: np.ndarray
    doc: np.ndarray


def ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    """A stationary AR(1) series with unit variance (the first value drawn from the stationary law)."""
    w = rng.normal(size=n)
    w[1:] *= np.sqrt(1.0 - phi ** 2)
    return lfilter([1.0], [1.0, -phi], w)


def simulate(rng: np.random.Generator, *, phi: float, trend: str = "exp8", G: int = 12, min_len: int = 150,
             max_len: int = 350, amplitude: float = 2.0, between: float = 1.0, effect: float = 0.0,
             slope_sd: float = 0.0, slopes: np.ndarray | None = None) -> Docs:
    """One corpus as described in the module docstring; ``slopes`` (``[G]``) fixes the per-document ``b_g`` (two
    "models" reading the same documents share them: the pairing of the across-sizes test)."""
    f_trend = TRENDS[trend]
    xs, ys, ps, ds = [], [], [], []
    for g in range(G):
        n = int(rng.integers(min_len, max_len + 1))
        pos = np.arange(n, dtype=float)
        f = between * rng.normal()
        u, v = ar1(rng, n, phi), ar1(rng, n, phi)
        b = effect + slope_sd * rng.normal() if slopes is None else float(slopes[g])
        t = amplitude * f_trend(pos)
        xs.append(f + t + u)
        ys.append(f + t + b * u + v)
        ps.append(pos)
        ds.append(np.full(n, g))
    return Docs(*(np.concatenate(a) for a in (xs, ys, ps, ds)))
