"""Path length across model sizes: does the within-document path-length/confidence association differ between two
models? (The original's question "across model sizes", asked of two real models.)

Stated before running it (issue 21), on smollm2-135m (30 layers) and gemma3-270m (18 layers), the same 12 passages:

- Estimand: delta = rho_B - rho_A, where rho_m is model m's within-document partial Spearman rho(total path length,
  log p(correct next) | position), position 0 excluded -- exactly the statistic of ``path_length_confidence``
  (``mechclaims.stats.within_doc.partial_rho``), computed on each model's own tokens. The documents are shared, so
  the design is paired by document (each model tokenizes them its own way: the tokens are not paired).
- Test: leave-one-document-out jackknife of delta (document g is dropped from *both* models), standard error
  sqrt((G-1)/G * sum (delta_-g - mean)^2), t reference on G - 1 degrees of freedom. The jackknife, not a
  percentile bootstrap, decides: with 12 documents the percentile bootstrap over documents ran liberal for one rho
  (false-positive rate 0.085 at 0.05, tests/test_calibration.py); this rule's own rate is checked in
  tests/test_stats_pathlength_sizes.py. A paired document bootstrap (the same resampled documents for both models)
  of delta is reported beside it, never decides.
- Pass rule ("the models differ"): the 95% jackknife t-interval of delta excludes 0 (equivalently p < 0.05, two-sided).
- Refuted ("no difference worth the name"): the 90% jackknife interval lies inside +-0.1 (TOST at 0.05; 0.1 is the
  smallest effect of interest the single-model claim already uses for rho itself).
- Otherwise inconclusive. No controls: this is a comparison of two claims whose own controls are gated in
  ``path_length_confidence``; it says nothing about why the association exists.

Falsified (as "the models differ") by a 95% interval that contains 0. No torch and no file I/O here.
"""
from __future__ import annotations

from dataclasses import dataclass

from typing import Callable

import numpy as np
from scipy import stats

from mechclaims.verdict.verdict import Verdict
from mechclaims.stats.equivalence import absence
from mechclaims.stats.within_doc import partial_rho

CLAIM = "path length ~ confidence differs across model sizes"
SESOI = 0.1  # |delta rho| below this is no difference worth the name (stated before running it)


@dataclass(frozen=True)
class ModelPath:
    """One model's per-token arrays, position 0 already dropped: total path length, log p(correct next), position,
    document id (shared between the models)."""

    name: str
    total: np.ndarray
    logprob: np.ndarray
    pos: np.ndarray
    doc: np.ndarray

    @classmethod
    def from_arrays(cls, name: str, steps: np.ndarray, logprob: np.ndarray, pos: np.ndarray, doc: np.ndarray,
                    min_position: int = 1) -> "ModelPath":
        k = np.asarray(pos) >= min_position
        return cls(name, np.asarray(steps, float)[k].sum(axis=1), np.asarray(logprob, float)[k],
                   np.asarray(pos, float)[k], np.asarray(doc)[k])

    def rho(self, keep_docs: np.ndarray | None = None) -> float:
        m = slice(None) if keep_docs is None else np.isin(self.doc, keep_docs)
        return float(partial_rho(self.total[m], self.logprob[m], self.pos[m], self.doc[m])[0])


def paired_bootstrap(a: ModelPath, b: ModelPath, docs: np.ndarray, n_boot: int, seed: int,
                     rho: Callable[[ModelPath, np.ndarray, np.ndarray], float] | None = None) -> np.ndarray:
    """Paired document bootstrap of delta: one draw of documents (with replacement) applies to both models; a
    document drawn twice enters as two clusters. ``rho(model, rows, clusters)``: the within-document rho of those
    rows (default: position partialled out linearly; ``pathlength_serial`` passes its spline basis)."""
    rho = rho or (lambda m, rows, cl: float(partial_rho(m.total[rows], m.logprob[rows], m.pos[rows], cl)[0]))
    rng = np.random.default_rng([seed, 21])
    out = np.empty(n_boot)
    idx = {m.name: {g: np.flatnonzero(m.doc == g) for g in docs} for m in (a, b)}
    for i in range(n_boot):
        draw = rng.choice(docs, size=len(docs), replace=True)
        r = []
        for m in (a, b):
            rows = np.concatenate([idx[m.name][g] for g in draw])
            cl = np.repeat(np.arange(len(draw)), [len(idx[m.name][g]) for g in draw])
            r.append(rho(m, rows, cl))
        out[i] = r[1] - r[0]
    return out


def size_difference(a: ModelPath, b: ModelPath, *, alpha: float = 0.05, n_boot: int = 1000, seed: int = 0,
                    sesoi: float = SESOI, min_docs: int = 5, bootstrap: bool = True) -> Verdict:
    """Test delta = rho(b) - rho(a) as stated in the module docstring (``a``: the smaller model)."""
    docs = np.intersect1d(np.unique(a.doc), np.unique(b.doc))
    G = len(docs)
    rule = (f"two-sided: delta = rho({b.name}) - rho({a.name}) of the within-document partial Spearman rho(total path "
            f"length, log p(correct next) | position), position 0 excluded; the {1 - alpha:.0%} paired "
            f"document-jackknife t-interval (t on G-1 df) excludes 0. Refuted: {1 - 2 * alpha:.0%} interval inside "
            f"+-{sesoi:g}")
    if G < min_docs or set(np.unique(a.doc)) != set(np.unique(b.doc)):
        return Verdict(claim=CLAIM, statistic_name="delta_partial_rho", statistic=float("nan"), rule=rule,
                       passed=False, testable=False,
                       reason=f"the models share {G} documents ({len(np.unique(a.doc))} and {len(np.unique(b.doc))} "
                              f"in all); the paired jackknife needs the same >= {min_docs} documents for both.")
    ra, rb = a.rho(), b.rho()
    delta = rb - ra
    loo = np.array([b.rho(docs[docs != g]) - a.rho(docs[docs != g]) for g in docs])
    se = float(np.sqrt((G - 1) / G * np.sum((loo - loo.mean()) ** 2)))
    t95, t90 = stats.t.ppf(1 - alpha / 2, G - 1), stats.t.ppf(1 - alpha, G - 1)
    ci = (delta - t95 * se, delta + t95 * se)
    ci90 = (delta - t90 * se, delta + t90 * se)
    p = float(2 * stats.t.sf(abs(delta) / se, G - 1)) if se > 0 else float("nan")
    holds = bool(np.isfinite(p) and (ci[0] > 0 or ci[1] < 0))
    ab = absence(delta, ci90, sesoi, name="delta rho", alpha=alpha)
    details = {"rho_a": ra, "rho_b": rb, "jackknife_se": se, "n_docs": float(G),
               "n_tokens_a": float(len(a.total)), "n_tokens_b": float(len(b.total)),
               "ci90_low": ci90[0], "ci90_high": ci90[1]}
    if bootstrap:
        boot = paired_bootstrap(a, b, docs, n_boot, seed)
        lo, hi = np.quantile(boot[np.isfinite(boot)], [alpha / 2, 1 - alpha / 2])
        details.update(bootstrap_ci_low=float(lo), bootstrap_ci_high=float(hi), bootstrap_sd=float(np.std(boot)))
    return Verdict(claim=CLAIM, statistic_name="delta_partial_rho", statistic=delta, rule=rule, passed=holds, p=p,
                   effect_name="delta_partial_rho", effect=delta, effect_ci=ci, details=details, absent=ab.shown,
                   absence=ab.text,
                   reason=f"rho({a.name}) {ra:+.3f}, rho({b.name}) {rb:+.3f}: delta {delta:+.3f}, {1 - alpha:.0%} "
                          f"jackknife CI [{ci[0]:+.3f}, {ci[1]:+.3f}], p {p:.3g}, {G} documents")
