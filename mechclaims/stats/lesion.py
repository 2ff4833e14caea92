"""Statistics for the MLP lesion claim ("her neurons" and "him neurons"). Pure: numpy arrays in, Verdicts out.

The claim, per model, selection rule and layer: on held-out prompts whose next (or masked) token is " her",
zeroing the selected "her" neurons at the prediction position lowers the her-minus-him logit difference more
than zeroing size-matched random neuron sets of the same layer does; likewise for " him" prompts and "him"
neurons. What falsifies it at a layer: the selected set's mean change is not below zero on either side, or
random sets of the same size lower the difference as much (per-side Monte Carlo p, the larger of the two sides
taken, corrected across layers).

Two selection rules, both fixed before looking:

(a) ``select_by_contrast``: the original analysis. A paired t-test per neuron (her prompt vs its matched him
    prompt), Benjamini-Hochberg FDR over the testable neurons, t>0 = "her", t<0 = "him". Neurons whose paired
    differences have zero variance (dead or constant units, up to float32 round-off) get NaN, +-inf or a
    round-off t from ``ttest_rel``; they are *untestable*,
    left out of the FDR family, never selected, and counted. At most ``k`` per side (largest |t|), so both rules
    ablate sets of comparable size and the comparison is about which neurons, not how many.
(b) ``select_by_contribution``: the direct contribution of neuron i to the target-minus-foil logit,
    ``a_i * W_out[i] . (g * (u_target - u_foil))`` (g = the final norm's scale, centred for LayerNorm, divided by
    the sample's norm denominator when given), averaged over the training prompts of that side; the top ``k``
    with a positive mean. Unlike (a), this knows which way each neuron pushes the logit.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import fdrcorrection, multipletests

from ..verdict import Verdict
from .common import bootstrap_ci, null_summary, z_score

SIDES = ("her", "him")
DEFAULT_K = 20  # neurons per side; fixed before looking (about 1.3% of SmolLM2's 1536 MLP neurons)
# A prompt counts as lowered only beyond float32 noise: an ablation that changes nothing moves a logit difference by
# ~1e-5 depending on how rows are batched, and that must not flip the count.
LOWERED_TOL = 1e-3
DEFAULT_H = 10  # sequential Monte Carlo: stop a side after this many random sets at least as strong


# ----------------------------------------------------------------------------------------------- rule (a)
@dataclass
class ContrastTest:
    """Per-neuron paired t-test her-minus-him with FDR. NaN t/p/q mark untestable (zero-variance) neurons."""

    t: np.ndarray
    p: np.ndarray
    q: np.ndarray
    reject: np.ndarray
    testable: np.ndarray

    @property
    def n_untestable(self) -> int:
        return int((~self.testable).sum())


def paired_neuron_ttest(x_her: np.ndarray, x_him: np.ndarray, alpha: float = 0.05,
                        fdr_method: str = "indep") -> ContrastTest:
    """``scipy.stats.ttest_rel`` per neuron over matched rows, then ``fdrcorrection`` over testable neurons.

    ``x_her``/``x_him``: ``[n_pairs, d]``, row i of each from the same pair. ``fdr_method='negcorr'`` gives BY.
    """
    x_her, x_him = np.asarray(x_her, float), np.asarray(x_him, float)
    if x_her.shape != x_him.shape or x_her.ndim != 2:
        raise ValueError(f"x_her and x_him must be matched [n_pairs, d] arrays; got {x_her.shape} and {x_him.shape}")
    if x_her.shape[0] < 3:
        raise ValueError(f"a paired t-test needs at least 3 pairs; got {x_her.shape[0]}")
    sd = (x_her - x_him).std(axis=0, ddof=1)
    # "Zero variance" up to float32 round-off of the captured activations, relative to the column's scale.
    scale = np.maximum(np.abs(x_her).max(axis=0), np.abs(x_him).max(axis=0))
    constant = sd <= 1e-6 * scale
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # scipy warns on zero-variance columns; they are handled below
        res = stats.ttest_rel(x_her, x_him, axis=0)
    t, p = np.asarray(res.statistic, float), np.asarray(res.pvalue, float)
    # Zero-variance differences give NaN (or +-inf) t: no information, so not part of the tested family.
    testable = ~constant & np.isfinite(t) & np.isfinite(p)
    t = np.where(testable, t, np.nan)
    p = np.where(testable, p, np.nan)
    q = np.full_like(p, np.nan)
    reject = np.zeros(p.shape, dtype=bool)
    if testable.any():
        reject_t, q_t = fdrcorrection(p[testable], alpha=alpha, method=fdr_method)
        reject[testable] = reject_t
        q[testable] = q_t
    return ContrastTest(t=t, p=p, q=q, reject=reject, testable=testable)


def top_k(scores: np.ndarray, k: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """Indices of the (at most) ``k`` largest *positive* finite scores among ``eligible``, best first.

    Ties are broken by the lower index (stable sort), so the selection is deterministic.
    """
    s = np.asarray(scores, float)
    ok = np.isfinite(s) & (s > 0)
    if eligible is not None:
        ok &= np.asarray(eligible, bool)
    idx = np.flatnonzero(ok)
    order = np.argsort(-s[idx], kind="stable")
    return idx[order[:max(int(k), 0)]]


def select_by_contrast(test: ContrastTest, k: int = DEFAULT_K) -> dict[str, np.ndarray]:
    """Rule (a): FDR-significant neurons, t>0 -> "her", t<0 -> "him"; at most ``k`` each, largest |t| first."""
    return {"her": top_k(test.t, k, test.reject), "him": top_k(-test.t, k, test.reject)}


# ----------------------------------------------------------------------------------------------- rule (b)
def logit_direction(u_target: np.ndarray, u_foil: np.ndarray, norm_scale: np.ndarray | None = None,
                    center: bool = False) -> np.ndarray:
    """Residual-space direction whose dot product with the final-norm input is the target-minus-foil logit.

    ``(u_target - u_foil) * norm_scale``; ``center=True`` for LayerNorm, which subtracts the mean over features
    first (``(x - mean(x)) . v == x . (v - mean(v))``). RMSNorm (Llama) does not centre.
    """
    v = np.asarray(u_target, float) - np.asarray(u_foil, float)
    if norm_scale is not None:
        v = v * np.asarray(norm_scale, float)
    if center:
        v = v - v.mean()
    return v


def direct_contributions(acts: np.ndarray, w_out: np.ndarray, direction: np.ndarray,
                         inv_scale: np.ndarray | None = None) -> np.ndarray:
    """``[n, d_mlp]`` direct logit contribution of each neuron on each prompt: ``a * (W_out @ v) * inv_scale``.

    ``acts``: ``[n, d_mlp]`` at ``mlp.hook_post``; ``w_out``: ``[d_mlp, d_model]`` (row i = what neuron i writes);
    ``inv_scale``: ``[n]`` the final norm's 1/rms (or 1/std) per prompt, if known (else 1).
    """
    acts, w_out = np.asarray(acts, float), np.asarray(w_out, float)
    if acts.shape[1] != w_out.shape[0]:
        raise ValueError(f"acts has {acts.shape[1]} neurons but w_out has {w_out.shape[0]} rows; pass W_out as "
                         f"[d_mlp, d_model] (transpose nn.Linear.weight)")
    c = acts * (w_out @ np.asarray(direction, float))[None, :]
    if inv_scale is not None:
        c = c * np.asarray(inv_scale, float)[:, None]
    return c


def select_by_contribution(contrib: Mapping[str, np.ndarray], k: int = DEFAULT_K) -> dict[str, np.ndarray]:
    """Rule (b): per side, the ``k`` neurons with the largest positive mean contribution toward that side's
    target (``contrib[side]``: ``[n_side, d_mlp]``, computed with that side's target-minus-foil direction)."""
    return {s: top_k(np.asarray(contrib[s], float).mean(axis=0), k) for s in SIDES}


# ------------------------------------------------------------------------------- controls and stability
def flip_pairs(a: np.ndarray, b: np.ndarray, flip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Swap rows i of ``a`` and ``b`` where ``flip[i]``: the shuffled-label control for matched pairs."""
    f = np.asarray(flip, bool).reshape(-1, *([1] * (np.ndim(a) - 1)))
    return np.where(f, b, a), np.where(f, a, b)


def jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    """|a & b| / |a | b|; NaN when both are empty (stability of nothing is undefined)."""
    sa, sb = set(np.asarray(a, int).tolist()), set(np.asarray(b, int).tolist())
    union = sa | sb
    return float(len(sa & sb) / len(union)) if union else float("nan")


def split_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` into two halves (sizes differ by at most one)."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


def selection_stability(sel_1: Mapping[str, np.ndarray], sel_2: Mapping[str, np.ndarray]) -> float:
    """Mean Jaccard over the sides of two selections made on disjoint halves of the training pairs."""
    vals = [jaccard(sel_1[s], sel_2[s]) for s in SIDES]
    vals = [v for v in vals if math.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def random_sets(n_neurons: int, size: int, n_sets: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_sets, size]`` size-matched random neuron sets (each without replacement) from one layer."""
    if size > n_neurons:
        raise ValueError(f"cannot draw {size} of {n_neurons} neurons")
    return np.argsort(rng.random((n_sets, n_neurons)), axis=1)[:, :size]


# ------------------------------------------------------------------------------------ sequential null
def sequential_mc_p(observed: float, null: np.ndarray, h: int = DEFAULT_H) -> tuple[float, int]:
    """Besag & Clifford (1991) sequential Monte Carlo p-value, left tail (``null <= observed`` is extreme).

    The draws are scanned in the order they were made. At the ``h``-th extreme draw (draw n) the test stops:
    p = h / n. If the draws run out first with g < h extreme: p = (g + 1) / (N + 1). Draws made after the
    stopping point do not change p, so a caller may draw in chunks. Returns (p, draws used).
    """
    null = np.asarray(null, float)
    extreme = np.cumsum(null <= observed)
    hit = np.flatnonzero(extreme >= h)
    if hit.size:
        n = int(hit[0]) + 1
        return float(h / n), n
    return float((extreme[-1] if null.size else 0) + 1) / (null.size + 1), int(null.size)


def needs_more_draws(observed: float, null: np.ndarray, n_max: int, h: int = DEFAULT_H) -> bool:
    """True while a side's sequential test is undecided: fewer than ``h`` extreme draws and fewer than ``n_max``."""
    null = np.asarray(null, float)
    return null.size < n_max and int((null <= observed).sum()) < h


# ------------------------------------------------------------------------------------------- verdicts
@dataclass
class LayerLesion:
    """One layer's measurements on held-out prompts, per side (``"her"``, ``"him"``).

    Each array holds the target-minus-foil logit difference per prompt of that side: ``clean``; ``zero`` with
    the selected set zeroed; ``mean`` with it set to its reference mean; ``null`` ``[n_sets, n_side]`` with
    size-matched random sets zeroed, rows in the order drawn.
    """

    layer: int
    clean: dict[str, np.ndarray]
    zero: dict[str, np.ndarray]
    null: dict[str, np.ndarray]
    mean: dict[str, np.ndarray] | None = None
    n_selected: dict[str, int] = field(default_factory=dict)
    stability: float = float("nan")


def lesion_verdicts(layers: Sequence[LayerLesion], *, claim: str, alpha: float = 0.05,
                    correction: str = "fdr_bh", h: int = DEFAULT_H, seed: int = 0,
                    n_boot: int = 1000) -> list[Verdict]:
    """One Verdict per layer; the per-layer p-values are corrected across ``layers`` together.

    Pass rule (per layer): the selected set lowers the mean logit difference on both sides
    (``weaker_side_effect`` = the larger of the two side means < 0) and the corrected
    max(p_her, p_him) <= ``alpha`` (``correction``: a ``multipletests`` method, default BH FDR).
    p_side is the sequential Monte Carlo p of the side's mean change against the random sets' mean changes;
    taking the larger is an intersection-union test of "both sides beat random".
    """
    rows = [_layer_numbers(L, h, seed, n_boot) for L in layers]
    p_layer = np.array([r["p_uncorrected"] for r in rows])
    q = multipletests(p_layer, alpha=alpha, method=correction)[1] if len(rows) else np.array([])
    out = []
    for L, r, ql in zip(layers, rows, q):
        stat = r.pop("weaker_side_effect")
        eff, ci = r.pop("effect"), r.pop("effect_ci")
        null, reason = r.pop("null"), r.pop("reason")
        passed = bool(math.isfinite(stat) and stat < 0 and ql <= alpha)
        if not passed and not reason:
            reason = ("a side is not lowered" if not stat < 0 else
                      f"random sets of the same size do as well (q={ql:.3g} > {alpha})")
        out.append(Verdict(
            claim=f"{claim}@layer{L.layer}", statistic_name="weaker_side_effect", statistic=stat,
            rule=(f"both sides' mean logit-diff change < 0 and {correction}-corrected max(p_her, p_him) <= "
                  f"{alpha} over {len(layers)} layers (sequential MC p vs size-matched random sets, h={h})"),
            passed=passed, p=float(ql), effect_name="mean_change", effect=eff, effect_ci=ci, null=null,
            details=r, reason=reason))
    return out


def _layer_numbers(L: LayerLesion, h: int, seed: int, n_boot: int) -> dict:
    d: dict = {"reason": ""}
    effects, ps, null_means, no_null = {}, {}, {}, []
    for s in SIDES:
        clean = np.asarray(L.clean[s], float)
        delta = np.asarray(L.zero[s], float) - clean
        raw_null = np.asarray(L.null[s], float)
        d[f"n_prompts_{s}"] = clean.size
        d[f"n_selected_{s}"] = L.n_selected.get(s, np.nan)
        if clean.size == 0 or L.n_selected.get(s, 1) == 0:
            why = "no held-out prompts" if clean.size == 0 else "no neurons selected"
            d["reason"] += f"{why} on side {s}. "
            effects[s], ps[s], null_means[s] = float("nan"), 1.0, np.array([])
            continue
        effects[s] = float(delta.mean())
        null_means[s] = (raw_null.reshape(-1, clean.size) - clean[None, :]).mean(axis=1)
        if null_means[s].size:
            ps[s], used = sequential_mc_p(effects[s], null_means[s], h)
        else:  # a caller may skip the null of a rule that cannot pass (a side not lowered): p stays 1
            ps[s], used = 1.0, 0
            no_null.append(s)
        d[f"effect_{s}"], d[f"p_{s}"], d[f"n_null_{s}"] = effects[s], ps[s], used
        d[f"z_vs_null_{s}"] = z_score(effects[s], null_means[s]) if null_means[s].size > 1 else float("nan")
        d[f"frac_lowered_{s}"] = float((delta < -LOWERED_TOL).mean())
        d[f"clean_{s}"] = float(clean.mean())
        if L.mean is not None:
            d[f"mean_ablation_effect_{s}"] = float((np.asarray(L.mean[s], float) - clean).mean())
    d["weaker_side_effect"] = max(effects.values()) if all(map(math.isfinite, effects.values())) else float("nan")
    if no_null and d["weaker_side_effect"] < 0:  # both sides lowered, yet no null to judge them against
        d["reason"] += f"no random sets on side {', '.join(no_null)}. "
    d["p_uncorrected"] = max(ps.values())
    deltas = [np.asarray(L.zero[s], float) - np.asarray(L.clean[s], float) for s in SIDES]
    pooled = np.concatenate(deltas)
    d["effect"], d["effect_ci"] = float(pooled.mean()) if pooled.size else float("nan"), None
    if pooled.size >= 2 and np.ptp(pooled) > 0:
        d["effect_ci"] = bootstrap_ci((pooled,), np.mean, seed=seed, n_resamples=n_boot)
        d["d_z"] = float(pooled.mean() / pooled.std(ddof=1))
    d["frac_lowered"] = float((pooled < -LOWERED_TOL).mean()) if pooled.size else float("nan")
    if L.mean is not None and pooled.size:
        mean_d = np.concatenate([np.asarray(L.mean[s], float) - np.asarray(L.clean[s], float) for s in SIDES])
        d["mean_ablation_effect"] = float(mean_d.mean())
    # Null band for the pooled effect: random draw j of both sides, weighted by prompt counts.
    n_common = min(len(null_means[s]) for s in SIDES)
    if n_common >= 2:
        w = np.array([len(L.clean[s]) for s in SIDES], float)
        pooled_null = sum(w[i] * null_means[s][:n_common] for i, s in enumerate(SIDES)) / w.sum()
        d["null"] = null_summary(pooled_null)
    else:
        d["null"] = None
    d["stability_jaccard"] = L.stability
    return d
