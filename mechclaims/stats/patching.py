"""Statistics of the activation-patching claims: pure functions (numpy/scipy in, Verdicts out, no torch).

Everything is in logit-difference units first: ``LD = logit(target) - logit(foil)`` at the last token, with
``F = LD(clean)``, ``C = LD(corrupt)`` per pair. A patched run ``m`` on a *base* run ``b`` with activations from a
*source* run ``s`` moves the metric by the share ``(m - b) / (s - b)``: denoising (base corrupt, source clean) gives
the recovery ``(m - C) / (F - C)``, noising (base clean, source corrupt) the share destroyed ``(F - m) / (F - C)``.
Shares are ratios of means over pairs (a per-pair ratio explodes when ``F - C`` is small).

"The share exceeds theta" is tested without a ratio (:func:`share_test`, the pre-stated design):
``d_i = (m_i - b_i) - theta (s_i - b_i)``, oriented by the sign of the mean gap ``s - b``, has mean > 0 exactly when
the ratio of means exceeds theta, so a one-sample t-test on ``d`` decides, each way: "greater" supports the claim,
"less" is the opposite-direction evidence that refutes it. Its power suffers when the gaps ``F - C`` differ a lot
between pairs (the t-test charges their spread against the share); :func:`pair_share_test` (mean of per-pair shares,
added as a separately named design after the first smollm2 run) does not. Both are calibrated at the boundary
(share = theta) and their power measured in ``tests/test_stats_patching.py``. CIs are bootstraps over pairs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from mechclaims.verdict.verdict import Verdict

MIN_PAIRS = 8  # below this a t-test at alpha / 30 has no power worth the name: inconclusive


@dataclass(frozen=True)
class ShareTest:
    """Share of the metric moved, with its t-tests against ``threshold`` and a 95% bootstrap CI."""

    share: float
    ci: tuple[float, float]
    p_greater: float
    p_less: float
    n: int
    threshold: float


def share(patched: np.ndarray, base: np.ndarray, source: np.ndarray) -> float:
    """Ratio of means ``mean(patched - base) / mean(source - base)`` (over the last axis)."""
    num = np.mean(np.asarray(patched, float) - base, axis=-1)
    den = np.mean(np.asarray(source, float) - base, axis=-1)
    return num / den


def delta_share(delta: np.ndarray, base: np.ndarray, source: np.ndarray) -> float:
    """A change of the metric (a direct effect, an attribution estimate) as a share: ``mean(delta) / mean(s - b)``."""
    return np.mean(np.asarray(delta, float), axis=-1) / np.mean(np.asarray(source, float) - base, axis=-1)


def mean_pair_share(patched: np.ndarray, base: np.ndarray, source: np.ndarray) -> float:
    """Mean over pairs of the per-pair share ``(m_i - b_i) / (s_i - b_i)``."""
    m, b, s = (np.asarray(x, float) for x in (patched, base, source))
    return float(np.mean((m - b) / (s - b)))


def share_test(patched: np.ndarray, base: np.ndarray, source: np.ndarray, threshold: float, *, seed: int = 0,
               n_boot: int = 1000) -> ShareTest:
    """The share of ``source - base`` that patching moves, tested against ``threshold`` (see module doc)."""
    m, b, s = (np.asarray(x, float) for x in (patched, base, source))
    ok = np.isfinite(m) & np.isfinite(b) & np.isfinite(s)
    m, b, s = m[ok], b[ok], s[ok]
    n = int(m.size)
    if n < 3:
        return ShareTest(float("nan"), (float("nan"), float("nan")), float("nan"), float("nan"), n, threshold)
    y, g = m - b, s - b
    r = float(y.mean() / g.mean())
    # share > theta  <=>  mean(y - theta g) > 0 when the gap g is positive on average (denoising), and the reverse
    # when it is negative (noising: s = C < b = F): share_pvalues orients d so that d > 0 means "above theta".
    p_gt, p_lt = share_pvalues(m, b, s, threshold)
    res = stats.bootstrap((y, g), lambda x, z, axis: np.mean(x, axis) / np.mean(z, axis), paired=True,
                          n_resamples=n_boot, method="percentile", vectorized=True,
                          random_state=np.random.default_rng(seed))
    ci = (float(res.confidence_interval.low), float(res.confidence_interval.high))
    return ShareTest(r, ci, p_gt, p_lt, n, threshold)


def pair_share_test(patched: np.ndarray, base: np.ndarray, source: np.ndarray, threshold: float, *,
                    seed: int = 0, n_boot: int = 1000) -> ShareTest:
    """The mean of the per-pair shares ``(m_i - b_i) / (s_i - b_i)``, t-tested against ``threshold`` (one-sided each
    way), with a 95% bootstrap CI. Unlike :func:`share_test` its power does not suffer from the spread of the
    gaps ``s - b`` across pairs: pairs that all share one value (exactly 0 where nothing differs) decide."""
    m, b, s = (np.asarray(x, float) for x in (patched, base, source))
    ok = np.isfinite(m) & np.isfinite(b) & np.isfinite(s) & (s != b)
    r = (m[ok] - b[ok]) / (s[ok] - b[ok])
    n = int(r.size)
    if n < 3:
        return ShareTest(float("nan"), (float("nan"), float("nan")), float("nan"), float("nan"), n, threshold)
    p_gt, p_lt = share_pvalues(m[ok], b[ok], s[ok], threshold, per_pair=True)
    res = stats.bootstrap((r,), np.mean, n_resamples=n_boot, method="percentile", vectorized=True,
                          random_state=np.random.default_rng(seed))
    return ShareTest(float(r.mean()), (float(res.confidence_interval.low), float(res.confidence_interval.high)),
                     p_gt, p_lt, n, threshold)


def share_pvalues(patched: np.ndarray, base: np.ndarray, source: np.ndarray, threshold: float,
                  per_pair: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One-sided p-values (share above, share below ``threshold``) of :func:`share_test` (``per_pair=False``) or
    :func:`pair_share_test`, vectorized over leading axes (pairs on the last): the decision rules, for calibration."""
    m, b, s = (np.asarray(x, float) for x in (patched, base, source))
    y, g = m - b, s - b
    if per_pair:
        d = y / g - threshold
    else:  # orient d so that d > 0 means "above" also when the gap is negative on average (noising)
        d = (y - threshold * g) * np.sign(g.mean(-1, keepdims=True))
    return _t_both(d)


def _t_both(d: np.ndarray) -> tuple[Any, Any]:
    """One-sample t-tests of mean(d) > 0 and < 0 over the last axis; a constant d decides by its sign."""
    n = d.shape[-1]
    mean, sd = d.mean(-1), d.std(-1, ddof=1)
    const = sd <= 1e-12 * np.maximum(1.0, np.abs(d).max(-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(const, np.sign(mean) * np.inf, mean / (sd / np.sqrt(n)))
    p_gt, p_lt = stats.t.sf(t, n - 1), stats.t.cdf(t, n - 1)
    p_gt, p_lt = np.where(const & (mean == 0), 1.0, p_gt), np.where(const & (mean == 0), 1.0, p_lt)
    return (float(p_gt), float(p_lt)) if np.ndim(p_gt) == 0 else (p_gt, p_lt)


def carrier_verdict(den: ShareTest, noise: ShareTest, alpha: float, claim: str, role: str = "claim") -> Verdict:
    """Per layer: the patched activation carries the behaviour when denoising restores AND noising removes more
    than ``threshold`` of the logit difference (intersection-union test: p = the larger one-sided p, at
    ``alpha``, which the caller has already divided by the number of layers). Refuted when either share is
    significantly below the threshold."""
    th = den.threshold
    testable = min(den.n, noise.n) >= MIN_PAIRS
    p = max(den.p_greater, noise.p_greater)
    passed = testable and den.p_greater < alpha and noise.p_greater < alpha
    v = Verdict(claim=claim, statistic_name="denoise_share", statistic=den.share, p=p,
                rule=f"denoising share and noising share both > {th:g} (one-sided t-tests on the linearized share, "
                     f"intersection-union, alpha {alpha:.3g})", passed=passed, effect_name="denoise_share",
                effect=den.share, effect_ci=den.ci, testable=testable, role=role,
                details={"noise_share": noise.share, "noise_share_ci_low": noise.ci[0], "noise_share_ci_high":
                         noise.ci[1], "p_denoise": den.p_greater, "p_noise": noise.p_greater,
                         "p_denoise_below": den.p_less, "p_noise_below": noise.p_less, "n_pairs": float(den.n)},
                reason="" if testable else f"only {min(den.n, noise.n)} pairs (< {MIN_PAIRS})")
    below = [f"{k} share {t.share:.3g} < {th:g} (one-sided p = {t.p_less:.3g})" for k, t in
             (("denoising", den), ("noising", noise)) if t.p_less < alpha]
    if testable and below:
        v.absent, v.absence = True, "; ".join(below) + f" at alpha {alpha:.3g}"
    return v


def crossover_layer(den_share: Sequence[float], noise_share: Sequence[float], threshold: float = 0.5) -> int | None:
    """First layer whose denoising and noising shares both exceed ``threshold`` (None if none does)."""
    hits = [l for l, (a, b) in enumerate(zip(den_share, noise_share)) if a > threshold and b > threshold]
    return hits[0] if hits else None


def transfer_verdict(layer_outcomes: Mapping[int, str], l_star: int | None, claim: str) -> Verdict:
    """Model level: with L* chosen on training pairs, held-out layers < L*-1 must be refuted (the final position
    does not yet carry the answer) and layers > L* supported. Refuted when a late layer is refuted or an early
    one supported (the profile contradicts L*); L*-1 and L* are free (the transition)."""
    layers = sorted(layer_outcomes)
    if l_star is None:
        return Verdict(claim=claim, statistic_name="layers_consistent", statistic=float("nan"), rule="-",
                       passed=False, testable=False, layers=dict(layer_outcomes),
                       reason="no layer carried the answer on the training pairs: L* undefined")
    early = [l for l in layers if l < l_star - 1]
    late = [l for l in layers if l > l_star]
    ok = [l for l in early if layer_outcomes[l] == "refuted"] + [l for l in late if layer_outcomes[l] == "supported"]
    wrong = [l for l in early if layer_outcomes[l] == "supported"] + [l for l in late if layer_outcomes[l] == "refuted"]
    v = Verdict(claim=claim, statistic_name="layers_consistent", statistic=float(len(ok)) / max(1, len(early) + len(late)),
                rule=f"held-out: layers < {l_star - 1} refuted and layers > {l_star} supported (L* = {l_star} from the "
                     f"training pairs)", passed=len(ok) == len(early) + len(late), layers=dict(layer_outcomes),
                details={"l_star_train": float(l_star), "n_early": float(len(early)), "n_late": float(len(late)),
                         "n_contradicting": float(len(wrong))})
    if wrong:
        v.absent, v.absence = True, f"layers {wrong} contradict a transfer at L* = {l_star}"
    elif not v.passed:
        open_ = [l for l in early + late if layer_outcomes[l] not in ("refuted", "supported")]
        v.reason = (f"{len(open_)} of {len(early) + len(late)} held-out layers outside the transition undecided "
                    f"({', '.join(sorted({layer_outcomes[l] for l in open_}))}): the per-layer tests could not decide")
    return v


def select_components(total_share: np.ndarray, tau: float, k_max: int) -> np.ndarray:
    """Components whose (training) share is >= ``tau``, the ``k_max`` largest, in decreasing order."""
    s = np.asarray(total_share, float)
    idx = np.flatnonzero(np.isfinite(s) & (s >= tau))
    return idx[np.argsort(-s[idx], kind="stable")][:k_max]


def share_verdict(t: ShareTest, alpha: float, claim: str, role: str = "claim", what: str = "") -> Verdict:
    """One share against its threshold: passes when significantly above (one-sided t at ``alpha``); refuted when
    significantly below."""
    testable = t.n >= MIN_PAIRS
    v = Verdict(claim=claim, statistic_name="share", statistic=t.share, p=t.p_greater,
                rule=f"{what}share of the logit difference > {t.threshold:g} (one-sided t-test, alpha {alpha:g})",
                passed=testable and t.p_greater < alpha, effect_name="share", effect=t.share, effect_ci=t.ci,
                testable=testable, role=role, details={"p_below": t.p_less, "n_pairs": float(t.n)},
                reason="" if testable else f"only {t.n} pairs (< {MIN_PAIRS})")
    if testable and t.p_less < alpha:
        v.absent, v.absence = True, f"share {t.share:.3g} < {t.threshold:g} (one-sided p = {t.p_less:.3g})"
    return v


def rank_agreement(a: np.ndarray, p: np.ndarray, rho0: float, alpha: float, claim: str, *, seed: int = 0,
                   n_boot: int = 1000, role: str = "claim") -> Verdict:
    """Spearman rho between the pair-mean attribution ``a`` and patching ``p`` (both ``[n_pairs, n_components]``)
    across components; bootstrap over pairs. Passes when the ``alpha`` quantile of the bootstrap rho exceeds
    ``rho0``; refuted when the ``1 - alpha`` quantile is below it."""
    a, p = np.asarray(a, float), np.asarray(p, float)
    n = a.shape[0]
    rho = float(stats.spearmanr(a.mean(0), p.mean(0)).statistic)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    ra = stats.rankdata(a[idx].mean(1), axis=1)
    rp = stats.rankdata(p[idx].mean(1), axis=1)
    ra, rp = ra - ra.mean(1, keepdims=True), rp - rp.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (ra * rp).sum(1) / np.sqrt((ra ** 2).sum(1) * (rp ** 2).sum(1))
    boot = boot[np.isfinite(boot)]
    lo, hi = np.quantile(boot, [alpha, 1 - alpha]) if boot.size else (np.nan, np.nan)
    ci = tuple(float(x) for x in np.quantile(boot, [0.025, 0.975])) if boot.size else (np.nan, np.nan)
    testable = n >= MIN_PAIRS and np.isfinite(rho)
    v = Verdict(claim=claim, statistic_name="spearman_rho", statistic=rho,
                rule=f"bootstrap {alpha:g} quantile of Spearman rho (pair-mean attribution vs patching, over "
                     f"components) > {rho0:g}", passed=bool(testable and lo > rho0), effect_name="spearman_rho",
                effect=rho, effect_ci=ci, testable=bool(testable), role=role,
                details={"rho_q_low": float(lo), "rho_q_high": float(hi), "n_pairs": float(n),
                         "pearson_r": float(stats.pearsonr(a.mean(0), p.mean(0)).statistic)},
                reason="" if testable else f"only {n} pairs (< {MIN_PAIRS})")
    if testable and hi < rho0:
        v.absent, v.absence = True, f"rho {rho:.3g}: its bootstrap {1 - alpha:g} quantile {hi:.3g} < {rho0:g}"
    return v


def attribution(clean: np.ndarray, corrupt: np.ndarray, grad: np.ndarray, seq: np.ndarray, n: int) -> np.ndarray:
    """Attribution patching per sequence: sum over its tokens and features of (clean - corrupt) * grad, where
    rows are tokens flattened like ``capture(..., "all")`` and ``seq`` names each row's sequence. With the gradient
    at ``ln_final.hook_in`` and only the last token's rows, the same sum is a component's *direct* effect: its
    change in the final residual through the (linearized) final norm and the unembedding."""
    per_token = ((np.asarray(clean, float) - corrupt) * grad).reshape(len(seq), -1).sum(1)
    return np.bincount(np.asarray(seq), weights=per_token, minlength=n)
