"""Within-document partial Spearman rho for serially dependent tokens: a spline position basis, ranks within
documents, a Freedman-Lane test whose null keeps the autocorrelation (circular shifts within documents), and the
document jackknife on that basis.

Estimand: the association of x and y *within* documents beyond position: ranks of x and y, demeaned within each
document (document fixed effects), residualized on the covariates ``z``; rho is the correlation of the residuals
(``mechclaims.stats.within_doc``'s construction). Three changes, each measured:

- ``position_basis``: position enters as a cubic B-spline in log(1 + position), 8 knots uniform in log between the
  smallest and largest position (knots at positions 1, 3, 8, 17, 36, 76, 159, 332 for positions 1..349), 9 columns
  without the bias column (the document means take the constant). Why log: position effects in LMs are fast at the
  start of a document and slow later, so the resolution goes where the trend moves. Share of a trend's
  within-document variance left after partialling out (12 documents of 150-350 tokens): exp(-pos/8): a line 84%,
  this basis 1.4e-5 (5 knots 5e-4, 12 knots 8e-8); 1 - exp(-pos/60): a line 28%, this basis 1.7e-6. The basis is a
  design, not a random variable: it is used as given, never ranked (``within_doc`` ranks every z column, which bends
  a B-spline column into another shape).
- ranks are taken *within each document* (scaled by n_doc + 1) by default, not over all tokens. With ranks over all
  tokens, a document whose level is high sits where the pooled rank transform is compressed, so a shared position
  trend reaches the ranks with a document-specific amplitude, in x and y alike, which no shared basis removes.
  Population bias of rho (1,500 documents, phi 0, trend amplitude 2 SD, minus the no-trend value of the same draw):
  over all tokens +0.002 (exp(-pos/8), document-mean SD 1) to +0.025 (1 - exp(-pos/60), SD 3); within documents
  below 0.001 in all four. On data without documents' shifts or trends the two agree (0.189 vs 0.186 at a planted
  0.19, same SD). ``within="all"`` gives the old ranks.
- ``shift_freedman_lane``: Freedman & Lane (1983) with the reduced-model residuals of y *circularly shifted* within
  each document, one uniform random offset per document per draw, instead of permuted. A shift keeps each
  document's residual series, and so its autocorrelation, intact except at one wrap point; a permutation destroys it,
  which made the null too narrow (rejection 0.52 at AR(1) phi 0.9 for nominal 0.05, scripts/pathlength_defects.py).
  Tokens must be in order within each document (as the capture writes them); documents may differ in length.

Falsified by: a rejection rate above alpha under autocorrelated nulls with a shared non-linear position trend
(``mechclaims.calibrate.pathlength`` measures it per AR(1) phi and trend shape).
"""
from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.preprocessing import SplineTransformer
from mechclaims.stats.within_doc import demean, doc_codes  # noqa: F401  (re-exported: one definition)

N_KNOTS = 8
DEGREE = 3
RANKS = "document"


def position_basis(positions: np.ndarray, *, n_knots: int = N_KNOTS, degree: int = DEGREE) -> np.ndarray:
    """Cubic B-spline basis of log(1 + position) ``[n, n_knots + degree - 2]``, knots uniform in log position.

    ``include_bias=False`` drops one column: the full basis sums to 1, which the document means already span.
    A single distinct position gives ``[n, 0]`` (nothing to partial out)."""
    u = np.log1p(np.asarray(positions, float)).reshape(-1, 1)
    if len(u) == 0 or np.ptp(u) == 0:
        return np.zeros((len(u), 0))
    st = SplineTransformer(n_knots=n_knots, degree=degree, knots="uniform", include_bias=False,
                           extrapolation="constant")
    return st.fit_transform(u)


def covariate_block(positions: np.ndarray, covariates: np.ndarray | None = None, doc_ids: np.ndarray | None = None,
                    within: str = RANKS) -> np.ndarray:
    """``z`` for this module: the position basis, then each extra covariate (e.g. the target's token id) ranked the
    way x and y are (``ranks``; ``doc_ids`` is needed for ranks within documents)."""
    b = position_basis(positions)
    if covariates is None:
        return b
    docs = np.zeros(len(b)) if doc_ids is None else doc_ids
    if doc_ids is None and within == "document":
        raise ValueError("ranks within documents need doc_ids")
    return np.column_stack([b, ranks(covariates, docs, within)])


def orthonormal(a: np.ndarray) -> np.ndarray:
    """Orthonormal basis of span(a), rank-revealing: plain QR of a rank-deficient matrix spans arbitrary extra
    directions, and a leave-one-document-out subset can drop a spline column's support entirely."""
    if a.size == 0:
        return np.zeros((a.shape[0], 0))
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    keep = s > (s[0] if len(s) else 0.0) * max(a.shape) * np.finfo(float).eps * 10
    return u[:, keep]


def ranks(a: np.ndarray, doc_ids: np.ndarray, within: str = RANKS) -> np.ndarray:
    """Ranks of each column of ``a``: within each document, scaled by ``n_doc + 1`` (``within="document"``), or
    over all tokens (``"all"``, ``within_doc``'s estimand)."""
    a = np.asarray(a, float)
    a = a.reshape(len(a), -1)
    if within == "all":
        return stats.rankdata(a, axis=0)
    if within != "document":
        raise ValueError(f"ranks within 'document' or 'all', not {within!r}")
    codes = doc_codes(doc_ids)
    sizes = np.bincount(codes)
    before = np.concatenate([[0], np.cumsum(sizes)[:-1]])[codes]
    out = np.empty_like(a)
    for j in range(a.shape[1]):
        # one global ranking of the (document, value) pairs: ties only where both agree, so subtracting the tokens
        # of earlier documents leaves each document's own average ranks (12x fewer rankdata calls than a loop)
        dense = stats.rankdata(a[:, j], method="dense")
        out[:, j] = (stats.rankdata(codes * (dense.max() + 1.0) + dense) - before) / (sizes[codes] + 1)
    return out


def prepare(x: np.ndarray, y: np.ndarray, z: np.ndarray, doc_ids: np.ndarray, within: str = RANKS):
    codes = doc_codes(doc_ids)
    n = len(codes)
    return (codes,) + _ranked(ranks(np.asarray(x).reshape(n, -1), codes, within), ranks(y, codes, within)[:, 0], z,
                              codes)


def _ranked(rx: np.ndarray, ry: np.ndarray, z: np.ndarray, codes: np.ndarray):
    """Demeaned ranks and the orthonormal basis of the demeaned covariates."""
    return (demean(rx, codes), demean(ry, codes)[:, 0],
            orthonormal(demean(np.asarray(z, float).reshape(len(codes), -1), codes)))


def residualize(v: np.ndarray, q: np.ndarray) -> np.ndarray:
    return v - q @ (q.T @ v)


def _rho(rx: np.ndarray, ry: np.ndarray, q: np.ndarray) -> np.ndarray:
    ex, ey = residualize(rx, q), residualize(ry, q)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ex.T @ ey) / (np.linalg.norm(ex, axis=0) * np.linalg.norm(ey))


def partial_rho(x: np.ndarray, y: np.ndarray, z: np.ndarray, doc_ids: np.ndarray, *, within: str = RANKS
                ) -> np.ndarray:
    """Within-document partial Spearman rho of each column of ``x`` with ``y`` given ``z`` (used as given): ``[k]``."""
    return _rho(*prepare(x, y, z, doc_ids, within)[1:])


def circular_shifts(doc_ids: np.ndarray, n: int, seed: int | np.random.Generator) -> np.ndarray:
    """``n`` index arrays ``[n, n_tokens]``: each document's tokens rotated by one uniform random offset per draw.

    Offset 0 (the identity) is one of the offsets, as a randomization test's group must contain it."""
    codes = doc_codes(doc_ids)
    rng = np.random.default_rng(seed)
    out = np.empty((n, len(codes)), dtype=np.int64)
    for d in range(codes.max() + 1):
        idx = np.flatnonzero(codes == d)
        m = len(idx)
        off = rng.integers(0, m, size=n)
        out[:, idx] = idx[(np.arange(m)[None, :] + off[:, None]) % m]
    return out


def shift_freedman_lane(x: np.ndarray, y: np.ndarray, z: np.ndarray, doc_ids: np.ndarray, n_perm: int, seed: int,
                        *, within: str = RANKS) -> tuple[float, np.ndarray, float]:
    """(observed rho, null draws ``[n_perm]``, two-sided +1 p) for a single x column; ``within_doc.freedman_lane``'s
    signature, with circular shifts of the reduced-model residuals in place of permutations."""
    codes, rx, ry, q = prepare(x, y, z, doc_ids, within)
    ex = residualize(rx[:, 0], q)
    e = residualize(ry, q)  # reduced-model residuals of y: document means and the position basis removed
    nx = np.linalg.norm(ex)
    obs = float(ex @ e / (nx * np.linalg.norm(e)))
    E = e[circular_shifts(codes, n_perm, seed)]
    E = E - (E @ q) @ q.T  # a shifted residual is no longer orthogonal to the basis: residualize it again
    with np.errstate(invalid="ignore", divide="ignore"):
        null = (E @ ex) / (nx * np.linalg.norm(E, axis=1))
    p = float((np.sum(np.abs(null) >= abs(obs) - 1e-12) + 1) / (n_perm + 1)) if np.isfinite(obs) else float("nan")
    return obs, null, p


def effective_df(doc_ids: np.ndarray) -> float:
    """Degrees of freedom of the jackknife t-interval: (sum n_g^2)^2 / sum n_g^4 - 1 for documents of n_g tokens.

    The estimate weights each document by its tokens, and the jackknife variance is then a weighted sum of G
    squared deviations whose Satterthwaite df is (sum w^2)^2 / sum w^4, not G. Equal lengths give G - 1 exactly; 12
    documents of 150-350 tokens about 9; the bundled passages (207-327 SmolLM2 tokens) about 10.6. With t on G - 1
    the interval ran liberal where documents differ in their association (mechclaims.calibrate.pathlength)."""
    n = np.bincount(doc_codes(doc_ids)).astype(float)
    return float((n ** 2).sum() ** 2 / (n ** 4).sum() - 1.0)


def jackknife(x: np.ndarray, y: np.ndarray, z: np.ndarray, doc_ids: np.ndarray, alpha: float = 0.05, *,
              within: str = RANKS) -> tuple[float, float, tuple[float, float]]:
    """(estimate, jackknife SE, ``1 - alpha`` t-interval on ``effective_df`` df), leaving out one document at a
    time; ``z`` rows travel with their tokens (the basis is built once on all tokens, so its knots do not move)."""
    docs = np.asarray(doc_ids)
    x = np.asarray(x, float).reshape(len(docs), -1)
    y = np.asarray(y, float)
    z = np.asarray(z, float).reshape(len(docs), -1)
    est = float(partial_rho(x, y, z, docs, within=within)[0])
    u = np.unique(docs)
    if within == "document":  # a document's ranks do not depend on the others: rank once, then leave out
        codes = doc_codes(docs)
        rx, ry = ranks(x, codes)[:, :1], ranks(y, codes)[:, 0]
        loo = np.array([_rho(*_ranked(rx[docs != g], ry[docs != g], z[docs != g], doc_codes(codes[docs != g])))[0]
                        for g in u])
    else:
        loo = np.array([partial_rho(x[docs != g], y[docs != g], z[docs != g], docs[docs != g], within=within)[0]
                        for g in u])
    G = len(u)
    se = float(np.sqrt((G - 1) / G * np.sum((loo - loo.mean()) ** 2)))
    t = stats.t.ppf(1 - alpha / 2, effective_df(docs))
    return est, se, (est - t * se, est + t * se)


def lag1(v: np.ndarray, doc_ids: np.ndarray) -> float:
    """Pooled lag-1 autocorrelation within documents (demeaned per document; pairs never cross a document)."""
    codes = doc_codes(doc_ids)
    e = demean(v, codes)[:, 0]
    same = codes[1:] == codes[:-1]
    return float(np.sum(e[1:][same] * e[:-1][same]) / np.sum(e * e))
