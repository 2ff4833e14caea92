"""Neuron selection for the MLP lesion claim ("her neurons" and "him neurons"). Pure: numpy arrays in, selections
out. The per-layer decision (mean ablation against size-matched random sets) is in :mod:`mechclaims.stats.lesion_decision`.

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
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import fdrcorrection


DEFAULT_K = 20  # neurons per side; fixed before looking (about 1.3% of SmolLM2's 1536 MLP neurons)
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


def select_by_contrast(test: ContrastTest, k: int, sides: Sequence[str]) -> dict[str, np.ndarray]:
    """Rule (a): FDR-significant neurons, t>0 -> ``sides[0]`` (e.g. "her"), t<0 -> ``sides[1]``; at most ``k``
    each, largest |t| first (the t-test reads the first side minus the second)."""
    return {sides[0]: top_k(test.t, k, test.reject), sides[1]: top_k(-test.t, k, test.reject)}


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
    return {s: top_k(np.asarray(c, float).mean(axis=0), k) for s, c in contrib.items()}


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
    vals = [jaccard(sel_1[s], sel_2[s]) for s in sel_1]
    vals = [v for v in vals if math.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def random_sets(n_neurons: int, size: int, n_sets: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_sets, size]`` size-matched random neuron sets (each without replacement) from one layer."""
    if size > n_neurons:
        raise ValueError(f"cannot draw {size} of {n_neurons} neurons")
    return np.argsort(rng.random((n_sets, n_neurons)), axis=1)[:, :size]
