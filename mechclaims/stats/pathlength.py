"""Path length of the residual stream vs next-token confidence.

Path length of token t: the norm of each step of its residual stream, ``s[t, l] = ||h[l+1]_t - h[l]_t||`` for
l = 0..L-1, where the last step ends at the residual *before* the final norm (HF's ``hidden_states[-1]`` is after
it). The total path length is ``sum_l s[t, l]`` (the cumulative path at the final layer).

Claim (two-sided; the estimand and test were restated in this version after a review showed the earlier pooled rho
mixed in between-document association): within documents, a token's total path length is associated with the
model's confidence in the correct next token, measured as its log-probability, beyond what token position explains.
Statistic: the within-document partial Spearman rho(total path, log p(correct next) | position)
(``mechclaims.stats.within_doc``), over all tokens except position 0. Pass rule, at alpha (default 0.05): the
Freedman-Lane permutation p (reduced-model residuals permuted within documents) < alpha AND the document-jackknife
t-interval excludes 0. Refuted: the 90% jackknife interval lies inside +-0.1 (TOST; the smallest effect of interest,
stated before looking). Calibration: ``tests/test_calibration.py``.

The raw logit of the correct token, the last step alone, and the post-norm variants
are reported beside it, never decide. No torch and no file I/O here.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from mechclaims.verdict.verdict import Verdict
from mechclaims.stats.common import null_summary
from mechclaims.stats.equivalence import absence
from mechclaims.stats.within_doc import freedman_lane, jackknife, partial_rho

CLAIM = "path length ~ next-token confidence"
SESOI = 0.1  # |rho| below this is no association worth the name (stated before looking)


def cumulative_path(steps: np.ndarray) -> np.ndarray:
    """Cumulative path length after each layer, ``[n_tokens, n_layers]``."""
    return np.cumsum(np.asarray(steps, float), axis=1)


def _codes(doc_ids: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(doc_ids), return_inverse=True)[1].ravel()


def within_document_permutation(doc_ids: np.ndarray, n: int, seed: int | np.random.Generator) -> np.ndarray:
    """``n`` index arrays ``[n, n_tokens]``, each a random permutation of the tokens within every document."""
    codes = _codes(doc_ids)
    rng = np.random.default_rng(seed)
    perm = np.empty((n, len(codes)), dtype=np.int64)
    for d in range(codes.max() + 1):
        idx = np.flatnonzero(codes == d)
        perm[:, idx] = rng.permuted(np.broadcast_to(idx, (n, len(idx))), axis=1)
    return perm


def shuffle_within_documents(values: np.ndarray, doc_ids: np.ndarray, seed: int) -> np.ndarray:
    """``values`` shuffled within each document: the shuffled-target negative control."""
    return np.asarray(values)[within_document_permutation(doc_ids, 1, seed)[0]]


def cluster_bootstrap_counts(doc_ids: np.ndarray, n_boot: int, seed: int | np.random.Generator) -> np.ndarray:
    """``[n_boot, n_docs]``: how often each document (in ``np.unique`` order) is drawn when resampling documents
    with replacement. A token-weighted statistic with these counts equals it on the resampled data."""
    n_docs = len(np.unique(np.asarray(doc_ids)))
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_docs, np.full(n_docs, 1.0 / n_docs), size=n_boot).astype(float)


def _partial_from_cov(cov: np.ndarray) -> np.ndarray:
    """Partial correlation of variables 0 and 1 given the rest, from covariance matrices ``[..., p, p]``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if cov.shape[-1] == 2:
            return cov[..., 0, 1] / np.sqrt(cov[..., 0, 0] * cov[..., 1, 1])
        try:
            prec = np.linalg.inv(cov)
        except np.linalg.LinAlgError:  # a constant covariate: pinv, and NaN below instead of an exception
            prec = np.linalg.pinv(cov)
        return -prec[..., 0, 1] / np.sqrt(prec[..., 0, 0] * prec[..., 1, 1])


def _ranks(a: np.ndarray) -> np.ndarray:
    r = stats.rankdata(np.asarray(a, float), axis=0)
    return r - r.mean(axis=0)  # centred: keeps the raw moments below free of cancellation


def clustered_partial_spearman(xs: np.ndarray, y: np.ndarray, z: np.ndarray, doc_ids: np.ndarray,
                               counts: np.ndarray | None = None) -> np.ndarray:
    """Partial Spearman rho(xs[:, j], y | z) for each column j: ``[k]``, or ``[B, k]`` per bootstrap draw.

    Ranks are taken once on the whole sample; a draw re-weights each token by how often its document was drawn
    (``counts`` from :func:`cluster_bootstrap_counts`). Holding the rank transform fixed is the usual cheap form of
    the Spearman bootstrap (re-ranking changes the CI by O(1/n); tests/test_stats_pathlength.py checks it). With
    weights constant within a document, every weighted moment is ``counts @ (per-document sums)``: no
    ``[B, n_tokens]`` array is ever built, so thousands of draws over all layers take milliseconds.
    """
    xs = np.asarray(xs, float).reshape(len(y), -1)
    v = np.column_stack([_ranks(xs), _ranks(y)[:, None], _ranks(np.asarray(z, float).reshape(len(y), -1))])
    k, p = xs.shape[1], v.shape[1] - xs.shape[1]
    codes = _codes(doc_ids)
    q = v.shape[1]
    sizes = np.bincount(codes).astype(float)
    blocks = [v[codes == d] for d in range(len(sizes))]
    sums = np.stack([b.sum(axis=0) for b in blocks])
    prods = np.stack([b.T @ b for b in blocks]).reshape(len(sizes), q * q)
    w = np.ones((1, len(sizes))) if counts is None else np.atleast_2d(counts)
    n = w @ sizes                                                    # [B]
    mean = (w @ sums) / n[:, None]                                   # [B, q]
    cov = (w @ prods).reshape(-1, q, q) / n[:, None, None] - mean[:, :, None] * mean[:, None, :]
    # One small covariance matrix per (draw, x column): [x_j, y, z...].
    idx = [np.r_[j, np.arange(k, k + p)] for j in range(k)]
    sub = np.stack([cov[:, i][:, :, i] for i in idx], axis=1)        # [B, k, 1 + p, 1 + p]
    out = _partial_from_cov(sub)
    return out[0] if counts is None else out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)  # NaN is reported; the verdict says why
        return float(stats.spearmanr(a, b)[0])


def _ci(boot: np.ndarray, alpha: float) -> tuple[float, float]:
    b = boot[np.isfinite(boot)]
    if len(b) < 0.9 * len(boot):
        return float("nan"), float("nan")  # too many degenerate resamples for an honest interval
    lo, hi = np.quantile(b, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


@dataclass
class LayerProfile:
    """Per-layer view: where along depth the path is travelled, and how each step relates to confidence."""

    depth: np.ndarray          # (l + 1) / n_layers: normalised depth at the end of step l, comparable across sizes
    fraction: np.ndarray       # mean over tokens of s[t, l] / sum_l s[t, l]
    fraction_ci: np.ndarray    # [2, n_layers], document-clustered bootstrap
    mean_step: np.ndarray      # mean raw step norm
    rho: np.ndarray            # partial Spearman rho(s[:, l], log p | position)
    rho_ci: np.ndarray         # [2, n_layers]


def _keep(positions: np.ndarray, min_position: int) -> np.ndarray:
    return np.asarray(positions) >= min_position


def layer_profile(steps: np.ndarray, target_logprob: np.ndarray, positions: np.ndarray, doc_ids: np.ndarray, *,
                  n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, min_position: int = 1) -> LayerProfile:
    """Normalised path-length profile and per-layer association, each with document-clustered CIs."""
    k = _keep(positions, min_position)
    s, y = np.asarray(steps, float)[k], np.asarray(target_logprob, float)[k]
    pos, docs = np.asarray(positions, float)[k], np.asarray(doc_ids)[k]
    counts = cluster_bootstrap_counts(docs, n_boot, seed)
    codes = _codes(docs)
    frac = s / s.sum(axis=1, keepdims=True)
    doc_sum = np.stack([frac[codes == d].sum(axis=0) for d in range(codes.max() + 1)])
    boot_frac = (counts @ doc_sum) / (counts @ np.bincount(codes))[:, None]
    boot_rho = clustered_partial_spearman(s, y, pos, docs, counts)
    q = [alpha / 2, 1 - alpha / 2]
    return LayerProfile(depth=np.arange(1, s.shape[1] + 1) / s.shape[1], fraction=frac.mean(axis=0),
                        fraction_ci=np.quantile(boot_frac, q, axis=0), mean_step=s.mean(axis=0),
                        rho=clustered_partial_spearman(s, y, pos, docs),
                        rho_ci=np.array([_ci(boot_rho[:, j], alpha) for j in range(s.shape[1])]).T)


def path_length_claim(steps: np.ndarray, target_logprob: np.ndarray, target_logit: np.ndarray,
                      positions: np.ndarray, doc_ids: np.ndarray, *, last_step_postnorm: np.ndarray | None = None,
                      covariates: np.ndarray | None = None, alpha: float = 0.05, n_boot: int = 1000,
                      n_perm: int = 1000, seed: int = 0, min_position: int = 1, min_docs: int = 5,
                      sesoi: float = SESOI, claim: str = CLAIM, role: str = "claim") -> Verdict:
    """Test the claim in the module docstring on per-token arrays.

    ``steps`` ``[n_tokens, n_layers]``: residual step norms, the last one ending *before* the final norm.
    ``target_logprob``/``target_logit``: the correct next token's log-probability and raw logit. ``positions``:
    token index in its document (position ``< min_position`` is dropped: position 0's norms are anomalous).
    ``doc_ids``: document of each token (the cluster). ``last_step_postnorm``: the last step measured to the post-norm
    state (``hidden_states[-1]``), reported only. ``covariates``: extra columns to partial out, added to position.
    """
    s = np.asarray(steps, float)
    n = s.shape[0]
    arrays = {"target_logprob": target_logprob, "target_logit": target_logit, "positions": positions,
              "doc_ids": doc_ids, "last_step_postnorm": last_step_postnorm}
    for name, a in arrays.items():
        if a is not None and len(a) != n:
            raise ValueError(f"{name} has {len(a)} entries but steps has {n} tokens; pass one value per token")
    k = _keep(positions, min_position)
    docs = np.asarray(doc_ids)[k]
    s, y, logit = s[k], np.asarray(target_logprob, float)[k], np.asarray(target_logit, float)[k]
    pos = np.asarray(positions, float)[k]
    z = pos[:, None] if covariates is None else np.column_stack([pos, np.asarray(covariates, float)[k]])
    total = s.sum(axis=1)
    n_docs = len(np.unique(docs))
    rule = (f"two-sided: within-document partial Spearman rho(total path length, log p(correct next) | position) "
            f"has Freedman-Lane p < {alpha} (residuals permuted within documents) and its {1 - alpha:.0%} "
            f"document-jackknife interval excludes 0; position < {min_position} excluded")
    if n_docs < min_docs or len(total) < 10:
        return Verdict(claim=claim, statistic_name="within_doc_partial_rho", statistic=float("nan"), rule=rule,
                       passed=False, testable=False, role=role,
                       reason=f"{n_docs} documents and {len(total)} tokens after excluding position < {min_position}; "
                              f"the document jackknife needs at least {min_docs} documents. Add passages.")
    rho, null, p = freedman_lane(total, y, z, docs, n_perm, seed + 1)
    _, se, ci = jackknife(total, y, z, docs, alpha)
    _, _, ci90 = jackknife(total, y, z, docs, 2 * alpha)
    holds = bool(np.isfinite(ci[0]) and (ci[0] > 0 or ci[1] < 0) and p < alpha)
    ab = absence(rho, ci90, sesoi, name="within-document partial rho", alpha=alpha)
    xs = {"last_step_prenorm": s[:, -1]}
    if last_step_postnorm is not None:
        post = np.asarray(last_step_postnorm, float)[k]
        xs.update(last_step_postnorm=post, total_postnorm=s[:, :-1].sum(axis=1) + post)
    details: dict[str, float] = {"n_tokens": float(len(total)), "n_docs": float(n_docs), "n_layers": float(s.shape[1]),
                                 "n_excluded_position": float(n - len(total)), "jackknife_se": se,
                                 "mean_total_path": float(total.mean()), "mean_logprob": float(y.mean()),
                                 "pooled_partial_rho": float(clustered_partial_spearman(total, y, z, docs)[0]),
                                 "spearman_rho": _spearman(total, y), "spearman_rho_path_position": _spearman(total, pos),
                                 "partial_rho_logit": float(partial_rho(total, logit, z, docs)[0])}
    for name, x in xs.items():
        details[f"partial_rho_{name}"] = float(partial_rho(x, y, z, docs)[0])
    for layer, r in enumerate(partial_rho(s, y, z, docs)):
        details[f"partial_rho_step_L{layer}"] = float(r)
    return Verdict(claim=claim, statistic_name="within_doc_partial_rho", statistic=rho, rule=rule, passed=holds, p=p,
                   effect_name="partial_rho", effect=rho, effect_ci=ci, null=null_summary(null) if len(null) else None,
                   details=details, absent=ab.shown, absence=ab.text, role=role,
                   reason=f"within-document partial rho {rho:+.3f}, {1 - alpha:.0%} jackknife CI [{ci[0]:+.3f}, "
                          f"{ci[1]:+.3f}], Freedman-Lane p {p:.3g}, {n_docs} documents")
