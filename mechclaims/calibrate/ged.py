"""Calibration of GED's decision part at the alpha where it decides (0.05 / 30 per layer on smollm2).

Rule under test, through the functions the claims call: the refit null's intersection-union stopping
(``mechclaims.stats.ged_null.sequential``: Besag-Clifford p per component, stopping once any component has ``h`` = 10
refits beyond it, at most ``min_draws(30, 0.05)`` = 1,199 refits, in chunks of 128) and the layer's decision
(``mechclaims.stats.ged.direction_passes``: every p <= alpha). The components of a direction are its top eigenvalue
and its held-out |d| on each deciding set (claim A: natural windows and held-out pairs, the two directions sharing
one set of within-pair-swap refits; claim C: natural windows, each direction its own label-permutation refits).

Structured null, on arrays (a refit of the whole GED costs ~10 ms, so 60,000 runs per row do not fit through
``ged_layer``): each refit yields correlated components (Gaussian copula: eigenvalue-|d| 0.5, |d| natural-|d| pairs
0.7, claim C's two directions 0.3: one refit moves them together), and the observed fit is one more draw from the
same joint, i.e. exactly exchangeable with its refits (what a valid permutation null gives; whether the real refits
are exchangeable with the fit under token identity is the whole-rule check at 0.05 in tests/test_calibration.py).
Only ranks enter a Monte-Carlo p, so the marginals are immaterial. Least-favourable configuration: one component
null, every other one far beyond its refits (the rule's size is then that component's rate); plus the global null.
Falsified by a Clopper-Pearson 95% upper bound above 1.5 x alpha.
"""
from __future__ import annotations

import numpy as np

from mechclaims.calibrate.bound import Size, runs_needed
from mechclaims.stats.common import min_draws
from mechclaims.stats.ged import GEDLayer, direction_passes
from mechclaims.stats.ged_null import sequential

N_LAYERS, FAR = 30, 1e9  # FAR: a non-null component's observed value, beyond every refit
CLAIMS = {"A": ("natural", "pairs"), "C": ("natural",)}
DIRS = ("A>B", "B>A")


def _corr(sets: tuple[str, ...], paired: bool) -> tuple[list[str], np.ndarray]:
    """Component names and the copula correlation of one refit's components (claim A's directions share draws)."""
    names = [f"{d}.{c}" for d in (DIRS[:1] if paired else DIRS) for c in ("eig", *(f"d_{s}" for s in sets))]
    R = np.eye(len(names))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i == j:
                continue
            same_dir = a.split(".")[0] == b.split(".")[0]
            ca, cb = a.split(".")[1], b.split(".")[1]
            r = (0.7 if ca.startswith("d_") and cb.startswith("d_") else 0.5) if same_dir else 0.3
            R[i, j] = r
    return names, R


def _draws(names: list[str], L: np.ndarray, paired: bool, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    z = rng.standard_normal((n, len(names))) @ L.T
    out = {k: z[:, i] for i, k in enumerate(names)}
    if paired:  # one set of swap refits serves both directions (ged_null.swap_eval)
        out.update({k.replace(DIRS[0], DIRS[1], 1): v for k, v in list(out.items())})
    return out


def one_run(claim: str, null: str | None, rng: np.random.Generator, alpha: float, n_max: int) -> bool:
    """One layer decided under the structured null: ``null`` is the one null component (e.g. ``"A>B.d_natural"``),
    or None for the global null. True when the layer passes (the rule rejects)."""
    sets, paired = CLAIMS[claim], claim == "A"
    names, R = _corr(sets, paired)
    L = np.linalg.cholesky(R)
    keys = [f"{d}.{c}" for d in DIRS for c in ("eig", *(f"d_{s}" for s in sets))]
    first = _draws(names, L, False, 1, rng)  # the observed fit: one more draw from the refits' joint
    if paired:  # each direction's observed fit is its own exchangeable draw
        first.update({k.replace(DIRS[0], DIRS[1], 1): v for k, v in _draws(names, L, False, 1, rng).items()})
    observed = {k: (float(first[k][0]) if null is None or k == null else FAR) for k in keys}
    seed = int(rng.integers(2**63))
    _, ps, _ = sequential(observed, lambda n, g: _draws(names, L, paired, n, g), n_max, seed)
    numbers = {d: {"p_eig": ps[f"{d}.eig"], **{f"p_refit_{s}": ps[f"{d}.d_{s}"] for s in sets}} for d in DIRS}
    res = GEDLayer(0.01, 1, (1, 1), numbers, {}, n_max, sets, sets[0], directions=DIRS)
    return all(direction_passes(res, d, alpha) for d in DIRS)


def sizes(n_runs: int | None = None, seed: int = 0, alpha: float = 0.05 / N_LAYERS) -> list[Size]:
    """One Size per claim x null component (least favourable) and per claim under the global null."""
    # 60,000 runs: a Besag-Clifford p at n_max = 1,199 rejects at exactly (floor(alpha (n+1)))/(n+1) = 0.00167 under
    # exchangeability, so the rate sits at alpha, and at runs_needed's ~12,000 such a rule passes only half the time.
    n_runs = n_runs or max(runs_needed(alpha), 60_000)
    n_max = max(min_draws(N_LAYERS, 0.05), 199)
    rng, out = np.random.default_rng(seed), []
    for claim, sets in CLAIMS.items():
        for null in [f"{DIRS[0]}.{c}" for c in ("eig", *(f"d_{s}" for s in sets))] + [None]:
            k = sum(one_run(claim, null, rng, alpha, n_max) for _ in range(n_runs))
            what = f"{null} null, the rest non-null" if null else "global null"
            out.append(Size(f"ged.{claim}.{what}", int(k), n_runs, alpha))
    return out
