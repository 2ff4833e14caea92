"""Generalized eigendecomposition (GED; Cohen 2022, NeuroImage 247:118809) of two conditions, tested out of sample.

Pipeline (fixed before any model was run): PCA of the training rows to 99% of their variance (label-free, so fitted
once; for unpaired training also at most half the smaller class's row count, so each covariance rests on at least
twice as many rows as dimensions), S = covariance of condition A, R = covariance of condition B, R shrunk toward
mean-eigenvalue * I (``sklearn.covariance.shrunk_covariance``, gamma = 0.01), ``scipy.linalg.eigh(S, R~)``; the top
component is the *last* column (eigenvalues come ascending). Sign (Cohen): the largest-|entry| of the pattern S·w is
positive. Both directions (A>B and B>A) are fitted.

Inference, per direction: every null draw is a refit after shuffling the training labels (within pairs for paired
training, over all rows otherwise: ``mechclaims.stats.ged_null``). A direction passes when its top eigenvalue beats
the refits' top eigenvalues AND, on every deciding held-out set, the component's held-out |d| beats the refits'
held-out |d| (specificity: were the labels needed?), each at ``alpha`` (the caller passes alpha / n_layers). The
held-out t-test is reported, never deciding: when each held-out item carries its label as a token, almost any
direction correlated with that token separates held-out data, and shuffled-label refits pass it 80-99.9% of the time.
Evidence of absence (``refuted``): for a direction, the excess of held-out |d| over the refits' median |d| on the
primary held-out set lies inside +-``sesoi`` by TOST (normal interval from a bootstrap over held-out items), AND the
rule could have seen an excess of ``sesoi`` there: the |d| test's power at an excess of ``sesoi`` is at least
``POWER`` (:func:`power_at_sesoi`). Round five (issue 27): before, a layer whose refits spread so wide that no
component could beat them (the rule cannot pass on strong, clean data) was called ``refuted``; now it is
``inconclusive``, and the power is reported (``<direction>.power_at_sesoi_<set>``). The eigenvalue part of the rule
has no SESOI, so this power is an upper bound on the whole rule's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import linalg, stats
from sklearn.covariance import shrunk_covariance
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from mechclaims.verdict.tolerance import guard
from mechclaims.verdict.verdict import Verdict
from mechclaims.stats.common import NORMALITY_ALPHA, cohens_d, null_summary
from mechclaims.stats.equivalence import Absence, absence
from mechclaims.stats.ged_null import d_axis, perm_eval, sequential, swap_eval

DIRECTIONS = ("him>her", "her>him")  # the bundled classes' directions: A>B, B>A
POWER = 0.8  # a refuted layer's |d| test must have this power at an excess of SESOI (round five, stated after the
# refuted outcomes were recorded, as issue 27 asked; claims/test_ged.py's designs say so in post_hoc)


def directions(names: tuple[str, str] = ("him", "her")) -> tuple[str, str]:
    """The two fit directions of classes ``(A, B)``: ``("A>B", "B>A")``."""
    a, b = names
    return f"{a}>{b}", f"{b}>{a}"


def shrink(R: np.ndarray, gamma: float) -> np.ndarray:
    """Cohen's regularization (1-g)R + g*mean(eig R)*I, i.e. sklearn's ``shrunk_covariance``."""
    return shrunk_covariance(R, shrinkage=gamma)


@dataclass
class GEDFit:
    """Top GED component of one direction, in the PCA space of ``pca``."""

    pca: PCA
    evals: np.ndarray  # all generalized eigenvalues, descending
    w: np.ndarray  # top eigenvector (PCA space), Cohen's sign
    pattern: np.ndarray  # S·w mapped to feature space, largest-|entry| positive
    r_min_eig: float  # smallest eigenvalue of R~ (must be > 0)

    def project(self, X: np.ndarray) -> np.ndarray:
        return self.pca.transform(X) @ self.w


def fit_ged(Zs: np.ndarray, Zr: np.ndarray, pca: PCA, gamma: float) -> GEDFit:
    """``scipy.linalg.eigh(S, R~)`` on PCA scores; raises ValueError when R~ is not positive-definite."""
    S, R = np.atleast_2d(np.cov(Zs, rowvar=False)), np.atleast_2d(np.cov(Zr, rowvar=False))
    Rs = shrink(R, gamma)
    r_min = float(np.linalg.eigvalsh(Rs)[0])
    if not r_min > 1e-12 * max(float(np.trace(Rs)), 1e-300):
        raise ValueError(f"shrunk R is not positive-definite (min eigenvalue {r_min:.3g}); the conditions have "
                         f"(near) zero within-class variance, e.g. an embedding that depends on the token alone.")
    evals, W = linalg.eigh(S, Rs)
    w = W[:, -1]  # ascending order: the top component is the last column
    pattern = pca.components_.T @ (S @ w)
    if pattern[np.argmax(np.abs(pattern))] < 0:
        w, pattern = -w, -pattern
    return GEDFit(pca, evals[::-1].copy(), w, pattern, r_min)


@dataclass
class GEDLayer:
    """Everything measured at one layer, both directions."""

    gamma: float
    n_components: int
    n_train: tuple[int, int]
    numbers: dict[str, dict[str, float]]  # direction -> flat numbers
    nulls: dict[str, np.ndarray]  # "<direction>.eig" / "<direction>.d_<set>" -> refit draws
    n_null: int
    decide_on: tuple[str, ...]
    primary: str
    pattern_corr: float = float("nan")
    degenerate: str = ""
    fits: dict[str, GEDFit] = field(default_factory=dict)
    directions: tuple[str, str] = DIRECTIONS  # "A>B", "B>A" of the classes' names


def ged_layer(train_a: np.ndarray, train_b: np.ndarray, heldout: dict[str, tuple[np.ndarray, np.ndarray]], *,
              decide_on: tuple[str, ...], paired_train: bool, paired_heldout: tuple[str, ...] = (),
              gamma: float = 0.01, var: float = 0.99, n_null: int = 1199, seed: int = 0, n_boot: int = 1000,
              h: int = 10, names: tuple[str, str] = ("him", "her")) -> GEDLayer:
    """Fit GED both ways (A = him, B = her; ``names`` labels them) and test it on ``heldout[name] = (a_rows, b_rows)``.

    ``paired_train``: row i of ``train_a`` and ``train_b`` form a matched pair (within-pair swap null); otherwise the
    two are independent samples (label-permutation null). ``decide_on[0]`` is the primary held-out set (the effect
    and the absence test). The null stops sequentially (see ``ged_null.sequential``), at most ``n_null`` draws.
    """
    # Small LAPACK calls slow down badly when several BLAS threads compete for 2 cores (measured: 100x for eigh).
    with threadpool_limits(1):
        return _ged_layer(np.asarray(train_a, float), np.asarray(train_b, float), heldout, decide_on, paired_train,
                          paired_heldout, gamma, var, n_null, seed, n_boot, h, directions(names))


def _ged_layer(ta, tb, heldout, decide_on, paired_train, paired_heldout, gamma, var, n_null, seed, n_boot, h,
               DIRECTIONS):
    if paired_train and ta.shape != tb.shape:
        raise ValueError(f"paired training arrays must have equal shapes, got {ta.shape} and {tb.shape}")
    X = np.vstack([ta, tb])
    within = np.vstack([ta - ta.mean(0), tb - tb.mean(0)])
    if float((within ** 2).sum()) <= 1e-12 * max(float(((X - X.mean(0)) ** 2).sum()), 1e-300):
        return _degenerate(gamma, (len(ta), len(tb)), decide_on, DIRECTIONS)
    cap = None if paired_train else max(2, min(len(ta), len(tb)) // 2)
    pca = PCA(n_components=var, svd_solver="full").fit(X)
    if cap is not None and pca.n_components_ > cap:
        pca = PCA(n_components=cap, svd_solver="full").fit(X)
    Za, Zb = pca.transform(ta), pca.transform(tb)
    Hz = {s: (pca.transform(np.asarray(a, float)), pca.transform(np.asarray(b, float))) for s, (a, b) in heldout.items()}
    fits = {DIRECTIONS[0]: fit_ged(Za, Zb, pca, gamma), DIRECTIONS[1]: fit_ged(Zb, Za, pca, gamma)}
    numbers: dict[str, dict[str, float]] = {}
    for j, (direction, fit) in enumerate(fits.items()):
        num = {"top_eigenvalue": float(fit.evals[0]), "r_min_eig": fit.r_min_eig}
        for s, (ha, hb) in Hz.items():
            pa, pb = ha @ fit.w, hb @ fit.w
            r = stats.ttest_rel(pa, pb) if s in paired_heldout else stats.ttest_ind(pa, pb, equal_var=False)
            num.update({f"d_{s}": cohens_d(pa, pb), f"t_{s}": float(r.statistic), f"p_t_{s}": float(r.pvalue)})
            if n_boot:
                num.update(_boot(pa, pb, s in paired_heldout, n_boot, seed + j, s))
        numbers[direction] = num
    observed = {f"{d}.eig": numbers[d]["top_eigenvalue"] for d in DIRECTIONS}
    observed.update({f"{d}.d_{s}": abs(numbers[d][f"d_{s}"]) for d in DIRECTIONS for s in decide_on})
    if paired_train:
        A, B = Za - Za.mean(0), Zb - Zb.mean(0)

        def draw(n, rng):
            r = swap_eval(A, B, Hz, gamma, rng.random((n, len(A))) < 0.5)
            return {f"{d}.{k}": v for d in DIRECTIONS for k, v in r.items()}
    else:
        Z, lab = np.vstack([Za, Zb]), np.r_[np.ones(len(Za), bool), np.zeros(len(Zb), bool)]

        def draw(n, rng):
            r = perm_eval(Z, np.stack([rng.permutation(lab) for _ in range(n)]), Hz, gamma)
            return {f"{d}.{k}": v for d, key in zip(DIRECTIONS, ("A>B", "B>A")) for k, v in r[key].items()}
    nulls, ps, made = sequential(observed, draw, n_null, seed, h) if n_null else ({}, {}, 0)
    for d in DIRECTIONS:
        num = numbers[d]
        num["p_eig"] = ps.get(f"{d}.eig", float("nan"))
        for s in decide_on:
            num[f"p_refit_{s}"] = ps.get(f"{d}.d_{s}", float("nan"))
            nd = nulls.get(f"{d}.d_{s}", np.zeros(0))
            num[f"refit_median_abs_d_{s}"] = float(np.median(nd)) if nd.size else float("nan")
            num[f"excess_abs_d_{s}"] = abs(num[f"d_{s}"]) - num[f"refit_median_abs_d_{s}"]
    pc = float(np.corrcoef(fits[DIRECTIONS[0]].pattern, fits[DIRECTIONS[1]].pattern)[0, 1])
    return GEDLayer(gamma, int(pca.n_components_), (len(ta), len(tb)), numbers, nulls, made, tuple(decide_on),
                    decide_on[0], pc, fits=fits, directions=DIRECTIONS)


def _boot(pa, pb, paired, n_boot, seed, s) -> dict[str, float]:
    """Percentile CI of d and the bootstrap SE of |d| (resampling held-out items; for the absence test)."""
    rng = np.random.default_rng(seed)
    if paired:
        idx = rng.integers(0, len(pa), (n_boot, len(pa)))
        d = d_axis(pa[idx], pb[idx], axis=1)
    else:
        d = d_axis(pa[rng.integers(0, len(pa), (n_boot, len(pa)))], pb[rng.integers(0, len(pb), (n_boot, len(pb)))],
                   axis=1)
    d = d[np.isfinite(d)]
    lo, hi = np.quantile(d, [0.025, 0.975]) if d.size else (np.nan, np.nan)
    return {f"d_{s}_ci_low": float(lo), f"d_{s}_ci_high": float(hi),
            f"se_abs_d_{s}": float(np.std(np.abs(d), ddof=1)) if d.size > 1 else float("nan")}


def _degenerate(gamma, n, decide_on, dirs=DIRECTIONS) -> GEDLayer:
    nan = float("nan")
    num = {"top_eigenvalue": nan, "p_eig": nan}
    return GEDLayer(gamma, 0, n, {d: dict(num) for d in dirs}, {}, 0, tuple(decide_on), decide_on[0], directions=dirs,
                    degenerate="zero within-class variance: the vectors depend on the token alone, so GED is undefined "
                               "here (token identity separates the classes perfectly)")


def direction_passes(res: GEDLayer, direction: str, alpha: float) -> bool:
    n = res.numbers[direction]
    ps = [n.get("p_eig", np.nan)] + [n.get(f"p_refit_{s}", np.nan) for s in res.decide_on]
    return bool(all(np.isfinite(p) and p <= alpha for p in ps))


def layer_verdict(res: GEDLayer, *, alpha: float, sesoi: float, claim: str, layer: int | None = None,
                  tolerance: dict[str, float] | None = None) -> Verdict:
    """Both directions pass (intersection-union, so ``p`` = the largest deciding p). Refuted when, for a direction,
    the primary set's excess |d| over the refits' median is inside +-``sesoi`` (TOST at ``alpha``) with power (see the
    module docstring). ``tolerance``: the baseline's default (rtol, atol); the p's (against ``alpha``) and the excess
    |d| (the TOST interval's centre, against ``sesoi``) get it capped below half their distance to the threshold.
    The interval's SE and the power keep the default; the recorded-outcome check catches any flip they cause."""
    where = f" at layer {layer}" if layer is not None else ""
    rule = (f"both directions: top eigenvalue and held-out |d| on {', '.join(res.decide_on)} beat shuffled-label "
            f"refits (Besag-Clifford p <= {alpha:.3g} each)")
    if res.degenerate:
        return Verdict(claim=claim, statistic_name="max_p", statistic=float("nan"), rule=rule, passed=False,
                       testable=False, reason=res.degenerate + where)
    s, det = res.primary, {}
    ps = []
    for d in res.directions:
        n = res.numbers[d]
        ps += [n["p_eig"]] + [n[f"p_refit_{x}"] for x in res.decide_on]
        det.update({f"{d}.{k}": v for k, v in n.items()})
    p = float(max(ps))
    ab = []
    for d, n in res.numbers.items():
        a = absence(n[f"excess_abs_d_{s}"], _interval(n[f"excess_abs_d_{s}"], n.get(f"se_abs_d_{s}", np.nan), alpha),
                    sesoi, name=f"{d} excess |d| on {s}", alpha=alpha, what="of a shuffled-label refit's median")
        det[f"{d}.power_at_sesoi_{s}"] = pw = power_at_sesoi(res, d, alpha, sesoi)
        if a.shown and not pw >= POWER:  # an equivalence the rule could not have escaped is not absence
            why = (f"is {pw:.2f} < {POWER:g} (the refits spread too wide for any component to beat them)"
                   if np.isfinite(pw) else f"is unknown (the refits' |d| is not normal, and "
                                           f"{res.nulls.get(f'{d}.d_{s}', np.zeros(0)).size} draws cannot estimate "
                                           f"its 1 - {alpha:.3g} quantile)")
            a = Absence(False, f"absence not shown: {a.text}, but the |d| test's power at an excess of {sesoi:g} "
                               + why)
        ab.append(a)
    shown = [a for a in ab if a.shown]
    det.update(n_components=float(res.n_components), n_null=float(res.n_null), pattern_corr=res.pattern_corr)
    ex = [res.numbers[d][f"excess_abs_d_{s}"] for d in res.directions]
    nl = res.nulls.get(f"{res.directions[0]}.d_{s}")
    v = Verdict(claim=claim, statistic_name="max_p", statistic=p, p=p, rule=rule,
                passed=all(direction_passes(res, d, alpha) for d in res.directions),
                effect_name=f"min_excess_abs_d_{s}",
                effect=float(min(ex)), null=null_summary(nl) if nl is not None and nl.size > 1 else None,
                details=det, absent=bool(shown), absence="; ".join(a.text for a in (shown or ab)))
    if tolerance:  # issue 27 item 7: no drift a baseline accepts may cross the threshold it decides against
        rt, at = tolerance.get("rtol", 0.0), tolerance.get("atol", 0.0)
        for d in res.directions:
            n = res.numbers[d]
            near = {k: alpha for k in n if k == "p_eig" or k.startswith("p_refit_")}
            near.update({k: sesoi for k in n if k.startswith("excess_abs_d_")})
            for k, thr in near.items():
                x = abs(n[k]) if k.startswith("excess") else n[k]
                v.tolerances[f"{d}.{k}"] = guard(x, thr, cap=at + rt * abs(n[k]))
    return v


def power_at_sesoi(res: GEDLayer, direction: str, alpha: float, sesoi: float) -> float:
    """Power of the held-out |d| test on the primary set if the component's |d| exceeded the refits' median by
    ``sesoi``: P(|d| > q) with |d| ~ N(median + sesoi, se), q the refits' ``1 - alpha`` quantile (empirical with at
    least 5 draws beyond it, else the draws' normal tail when they pass Shapiro-Wilk at ``NORMALITY_ALPHA``: a
    sequential null stops early on a clear non-pass, often at 128 draws), se the component's bootstrap SE. NaN (power
    unknown: never enough for ``refuted``) without a bootstrap (controls), without refits, or when the tail cannot be
    estimated (a normal tail fitted to skewed draws sits too low and overstates the power)."""
    s, n = res.primary, res.numbers[direction]
    nd, se = res.nulls.get(f"{direction}.d_{s}", np.zeros(0)), n.get(f"se_abs_d_{s}", np.nan)
    if nd.size < 2 or not np.isfinite(se) or se <= 0:
        return float("nan")
    if nd.size * alpha >= 5:
        q = float(np.quantile(nd, 1 - alpha))
    elif stats.shapiro(nd).pvalue >= NORMALITY_ALPHA:  # the same check that lets tail_p use a normal tail
        q = float(np.mean(nd) + stats.norm.ppf(1 - alpha) * np.std(nd, ddof=1))
    else:  # too few draws for the quantile, and not normal (refit |d| is right-skewed, median skewness 0.83 on
        return float("nan")  # smollm2-135m's claim C): power unknown, so absence is not shown
    return float(stats.norm.sf((q - (np.median(nd) + sesoi)) / se))


def _interval(est: float, se: float, alpha: float) -> tuple[float, float]:
    """The ``1 - 2 alpha`` normal interval from a bootstrap SE (TOST at alpha)."""
    z = stats.norm.ppf(1 - alpha)
    return est - z * se, est + z * se
