"""Q/K representational similarity: category selectivity vs label permutations, Q-K RSA vs random weights.

Pure: numpy arrays in, profiles (dataclasses of per-layer arrays) out. Leading axes are free:
``X[..., n_words, d]`` gives results shaped ``[...]`` (layers, or layers x heads).

1. Category selectivity. Within-category mean cosine similarity exceeds the across-category mean. LM
   vectors are anisotropic, so every cosine is high and the original within/across *ratio* is ~1 under any
   null (reported, never deciding). The statistic is the difference ``delta = within - across``; its null
   permutes the word labels (= rows and columns of the similarity matrix together), one-sided, reported as
   a z-score and a +1-corrected p; its CI comes from a bootstrap over words. Falsified when delta lies
   inside the permutation null.
2. Q-K RSA. Spearman rho between the upper triangles of the Q and K similarity matrices. Q and K project
   the same input X, so rho is high with no learned shared structure. The baseline is rho from i.i.d.
   Gaussian projection weights of the same shapes on the same X, without bias (cosine is scale-invariant,
   so the weight scale is irrelevant). Falsified when the learned rho does not beat that distribution.
   Inputs are ``(X, Q, K)``: X is the normed input the q/k projections read; no weights are needed. Isotropic
   random weights preserve the input's geometry (Johnson-Lindenstrauss), so that rho is an upper bound, reported
   beside the claims and never deciding; the claims (``stats.rsa_claims``) use the rotated-weights null.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import fdrcorrection

from mechclaims.stats.common import perm_p_value, z_score


def cosine_similarity(X: np.ndarray, center: bool = False) -> np.ndarray:
    """``[..., n, d] -> [..., n, n]``. ``center`` subtracts the mean over the n rows first (removes the
    shared "rogue" direction; Timkey & van Schijndel 2021). Zero vectors give NaN, never a silent 0."""
    X = np.asarray(X, dtype=np.float64)
    if center:
        X = X - X.mean(axis=-2, keepdims=True)
    norm = np.linalg.norm(X, axis=-1, keepdims=True)
    Xn = X / np.where(norm > 0, norm, np.nan)
    return Xn @ np.swapaxes(Xn, -1, -2)


def upper(S: np.ndarray) -> np.ndarray:
    """Strict upper triangle of ``[..., n, n]`` as ``[..., n(n-1)/2]`` (row-major pair order)."""
    iu = np.triu_indices(S.shape[-1], 1)
    return S[..., iu[0], iu[1]]


def same_group(labels: np.ndarray) -> np.ndarray:
    """``[..., n] -> [..., P]``: does pair (i<j) share a label."""
    iu = np.triu_indices(labels.shape[-1], 1)
    return labels[..., iu[0]] == labels[..., iu[1]]


def _bootstrap(n: int, stat: Callable[[np.ndarray], np.ndarray], n_boot: int, seed: int,
               confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bootstrap over words via ``scipy.stats.bootstrap``. ``stat`` gets word counts ``[B, n]`` (how often each
    word was drawn) so pairs of a word with its own copy are dropped, not scored as similarity 1."""
    def on_idx(idx: np.ndarray, axis: int = -1) -> np.ndarray:  # stat: counts [B, n] -> [k, B]
        idx = np.asarray(idx, dtype=int)
        counts = (np.atleast_2d(idx)[..., :, None] == np.arange(n)).sum(axis=-2)
        out = stat(counts.astype(np.float32))  # float32 halves the memory traffic; counts are small integers
        return out[..., 0] if idx.ndim == 1 else out

    res = stats.bootstrap((np.arange(n),), on_idx, n_resamples=n_boot, vectorized=True, batch=100,
                          method="percentile", confidence_level=confidence,
                          random_state=np.random.default_rng(seed))
    return (np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high),
            np.asarray(res.bootstrap_distribution))


def _flat(X: np.ndarray, n_last: int) -> tuple[np.ndarray, tuple[int, ...]]:
    X = np.asarray(X, dtype=np.float64)
    lead = X.shape[:-n_last]
    return X.reshape((-1,) + X.shape[-n_last:]), lead


# ---------------------------------------------------------------------------------------------------------
# 1. Category selectivity


@dataclass
class SelectivityProfile:
    """Per-unit (layer, or layer x head) results for one kind of vector (Q or K)."""

    delta: np.ndarray  # within - across
    within: np.ndarray
    across: np.ndarray
    ratio: np.ndarray  # the original index: mean over categories of within_c / across_c
    null: np.ndarray  # [..., n_perm] delta under label permutations
    z: np.ndarray
    p: np.ndarray
    ci_low: np.ndarray  # bootstrap over words, delta
    ci_high: np.ndarray
    boot_mean: np.ndarray  # [n_boot] bootstrap distribution of delta averaged over all units
    mean_ci: tuple[float, float]


def label_permutations(labels: np.ndarray, n_perm: int, seed: int) -> np.ndarray:
    """``[n_perm, n]`` label permutations. Same seed -> same permutations, so Q, K and every layer share one
    null draw (their profiles stay comparable)."""
    rng = np.random.default_rng(seed)
    return rng.permuted(np.tile(np.asarray(labels), (n_perm, 1)), axis=1)


def within_across(S: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean off-diagonal similarity within and across labels. ``S[U, n, n]``, ``labels[B, n]`` -> ``[U, B]``."""
    s = upper(np.asarray(S, dtype=np.float64))  # [U, P]
    same = same_group(np.atleast_2d(labels)).astype(np.float64)  # [B, P]; group sizes are fixed under permutation
    n_w = same.sum(-1)
    w = s @ same.T
    return w / n_w, (s.sum(-1, keepdims=True) - w) / (same.shape[-1] - n_w)


def selectivity_index(S: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The original index: per category c, mean within-c similarity over mean similarity of c's words to the
    other words; averaged over categories. ``[..., n, n] -> [...]``. Near 1 under the null: never decides."""
    S = np.asarray(S, dtype=np.float64)
    out = []
    for c in np.unique(labels):
        m = labels == c
        rows, k = S[..., m, :], int(m.sum())
        if k < 2:  # a one-word group has no within pairs (e.g. a first-letter grouping)
            continue
        block = rows[..., m]
        win = (block.sum((-1, -2)) - np.trace(block, axis1=-2, axis2=-1)) / (k * (k - 1))
        out.append(win / rows[..., ~m].mean((-1, -2)))
    return np.mean(out, axis=0)


def selectivity_profile(X: np.ndarray, labels: np.ndarray, *, n_perm: int = 1000, n_boot: int = 1000,
                        center: bool = False, seed: int = 0) -> SelectivityProfile:
    """Delta, its label-permutation null (z, p) and bootstrap CI over words, for ``X[..., n, d]``."""
    labels = np.asarray(labels)
    Xf, lead = _flat(X, 2)
    S = cosine_similarity(Xf, center)
    perms = label_permutations(labels, n_perm, seed)
    w, a = within_across(S, labels)
    delta = (w - a)[:, 0]
    nw, na = within_across(S, perms)
    null = nw - na  # [U, n_perm]
    z = np.array([z_score(d, nl) for d, nl in zip(delta, null)])
    p = _p(delta, null)
    s, same = upper(S), same_group(labels).astype(np.float64)

    def stat(c: np.ndarray) -> np.ndarray:  # counts [B, n] -> [U+1, B]
        wt = upper(c[:, :, None] * c[:, None, :])  # weight of pair (i<j) = c_i c_j
        ww, wa = wt * same, wt * (1 - same)
        d = (ww @ s.T) / ww.sum(-1, keepdims=True) - (wa @ s.T) / wa.sum(-1, keepdims=True)
        return np.concatenate([d, d.mean(-1, keepdims=True)], axis=-1).T

    if n_boot:
        lo, hi, dist = _bootstrap(len(labels), stat, n_boot, seed)
    else:
        lo = hi = np.full(len(delta) + 1, np.nan)
        dist = np.full((len(delta) + 1, 1), np.nan)
    r = lambda v: np.asarray(v).reshape(lead + np.shape(v)[1:])  # noqa: E731
    return SelectivityProfile(delta=r(delta), within=r(w[:, 0]), across=r(a[:, 0]),
                              ratio=r(selectivity_index(S, labels)), null=r(null), z=r(z), p=r(p),
                              ci_low=r(lo[:-1]), ci_high=r(hi[:-1]), boot_mean=dist[-1],
                              mean_ci=(float(lo[-1]), float(hi[-1])))


def _p(obs: np.ndarray, null: np.ndarray) -> np.ndarray:
    """One-sided +1-corrected p per unit; NaN where the observed value is NaN (never a small p by accident)."""
    return np.array([perm_p_value(o, nl) if np.isfinite(o) else np.nan for o, nl in zip(obs, null)])


def holds_by_unit(p_sets: Sequence[np.ndarray], alpha: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """BH-FDR (statsmodels) over every p of every set jointly; a unit (layer, head) holds when it is
    significant in every set. Returns (holds, q-values per set); NaN p never counts as significant."""
    flat = np.concatenate([np.ravel(p) for p in p_sets])
    ok = np.isfinite(flat)
    rej, q = np.zeros(flat.shape, bool), np.full(flat.shape, np.nan)
    if ok.any():
        rej[ok], q[ok] = fdrcorrection(flat[ok], alpha=alpha)
    splits = np.cumsum([np.size(p) for p in p_sets])[:-1]
    rejs, qs = np.split(rej, splits), np.split(q, splits)
    return np.logical_and.reduce(rejs), qs


# ---------------------------------------------------------------------------------------------------------
# 2. Q-K RSA against random projection weights


def _ordinal_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks along the last axis with one argsort; equal to average ranks when there are no ties."""
    r = np.empty(a.shape, dtype=np.float64)
    np.put_along_axis(r, np.argsort(a, axis=-1), np.arange(a.shape[-1], dtype=np.float64), axis=-1)
    return r


def _rank_corr(a: np.ndarray, b: np.ndarray, ties: bool = True) -> np.ndarray:
    """Spearman rho along the last axis (broadcasting), via Pearson of ranks (average ranks if ``ties``)."""
    rank = (lambda v: stats.rankdata(v, axis=-1)) if ties else _ordinal_ranks
    ra, rb = rank(a), rank(b)
    ra, rb = ra - ra.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
    return (ra * rb).sum(-1) / np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))


def random_projection_rho(X: np.ndarray, d_q: int, d_k: int, *, n_draws: int = 200, center: bool = False,
                          seed: int = 0) -> np.ndarray:
    """Q-K Spearman rho with i.i.d. N(0,1) weights ``W_q[d, d_q]``, ``W_k[d, d_k]`` on ``X[..., n, d]``.

    Exact shortcut, not an approximation: with ``X = U S V^T`` (rank r), ``X W = (U S)(V^T W)`` and ``V^T W``
    is again i.i.d. N(0,1) of shape ``[r, d_q]``. ``U S`` comes from ``eigh(X X^T)`` (far cheaper than an SVD
    of the wide X), and only Gram matrices ``(US) G G^T (US)^T`` are needed, with ``G G^T`` drawn once and
    shared by every layer. -> ``[..., n_draws]``.
    """
    Xf, lead = _flat(X, 2)
    if center:
        Xf = Xf - Xf.mean(axis=-2, keepdims=True)
    ev, U = np.linalg.eigh(Xf @ np.swapaxes(Xf, -1, -2))
    A = U * np.sqrt(np.clip(ev, 0, None))[:, None, :]  # [L, n, n]: A A^T = X X^T; zero columns are harmless
    rng = np.random.default_rng(seed)
    r = A.shape[-1]
    Ms = [(G @ np.swapaxes(G, -1, -2)).astype(np.float32)  # [n_draws, r, r]; float32 is ample for ranks
          for G in (rng.standard_normal((n_draws, r, d)) for d in (d_q, d_k))]
    out = np.empty((len(A), n_draws))
    for i, a in enumerate(A.astype(np.float32)):
        sims = []
        for M in Ms:
            g = a @ M @ a.T  # [n_draws, n, n]
            dg = 1 / np.sqrt(np.einsum("bii->bi", g))
            sims.append(upper(g * dg[:, :, None] * dg[:, None, :]))
        out[i] = _rank_corr(*sims, ties=False)  # continuous random draws: no ties
    return out.reshape(lead + (n_draws,))

