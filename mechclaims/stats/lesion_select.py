"""The lesion claim's two selection rules as selectors for the permute-then-select null.

A selector answers ``select(swap, size=None) -> {side: neuron indices}``: the claim's rule on the training pairs with
the labels swapped within the pairs where ``swap`` is True (``None``: the true labels). Under H0 (no neuron's
activation depends on the label) within-pair swaps leave the training data's distribution unchanged, so they are the
exchangeable group for paired data (:mod:`mechclaims.stats.lesion_null`).

``size`` forces each side's set to the observed size: the rule's own ranking under the swapped labels, truncated to
``size[side]`` neurons. Why the null needs it: rule ``contrast`` keeps only FDR-significant neurons, so its set's size
is itself driven by the labels. Swapped labels break the label signal and the null's sets come out smaller (or empty,
measured: :mod:`mechclaims.calibrate.lesion`), and a smaller set's ablation effect varies less, so the observed set
would look extreme in both tails for its size alone. With ``size``, rule ``contrast`` ranks neurons by the swapped
paired t (sign = side) and drops the FDR filter; rule ``contribution`` is unchanged (its size is already ``k``
whenever at least ``k`` neurons have a positive mean contribution; a swap where fewer have is skipped by the null).

Both selectors call the claim's own functions (:mod:`mechclaims.stats.lesion`) for every single selection. ``batch``
computes many swaps at once for the calibration's full count; ``tests/test_lesion_null.py`` shows it returns exactly
what ``__call__`` returns, and every calibration run re-checks a sample of its draws against ``__call__``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from . import lesion as L

SIDES = ("her", "him")  # the bundled sides (a file may declare others: pass them)


def _sized(scores: np.ndarray, size: int, eligible: np.ndarray) -> np.ndarray:
    """Row-wise ``L.top_k``: [B, d] scores -> list of index arrays (largest positive eligible scores, lower index first
    on ties, exactly as ``top_k``'s stable sort)."""
    s = np.where(eligible & np.isfinite(scores) & (scores > 0), scores, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")[:, :max(int(size), 0)]
    keep = np.take_along_axis(s, order, axis=1) > -np.inf
    return [o[k] for o, k in zip(order, keep)]


class ContrastSelector:
    """Rule (a): paired t-test her-minus-him per neuron, BH FDR at ``alpha``, at most ``k`` per side by |t|.

    ``her``/``him``: ``[n_pairs, d]`` training activations, row i of each from pair i."""

    def __init__(self, her: np.ndarray, him: np.ndarray, k: int = L.DEFAULT_K, alpha: float = 0.05,
                 sides: Sequence[str] = SIDES):
        self.her, self.him = np.asarray(her, float), np.asarray(him, float)
        self.k, self.alpha, self.sides = int(k), float(alpha), tuple(sides)
        self.n_pairs = self.her.shape[0]

    def __call__(self, swap: np.ndarray | None = None, size: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
        her, him = (self.her, self.him) if swap is None else L.flip_pairs(self.her, self.him, swap)
        test = L.paired_neuron_ttest(her, him, alpha=self.alpha)
        if size is None:
            return L.select_by_contrast(test, self.k, sides=self.sides)
        forced = L.ContrastTest(t=test.t, p=test.p, q=test.q, reject=test.testable, testable=test.testable)
        return {s: L.select_by_contrast(forced, int(size[s]), sides=self.sides)[s] for s in self.sides if s in size}

    def batch(self, swaps: np.ndarray, size: Mapping[str, int]) -> list[dict[str, np.ndarray]]:
        """``[__call__(s, size) for s in swaps]`` for a forced ``size`` (only the sides in ``size``), computed at once (same formulas as scipy's
        ``ttest_rel``: mean and ddof-1 variance of the paired differences)."""
        sign = np.where(np.asarray(swaps, bool), -1.0, 1.0)[:, :, None]
        dif = sign * (self.her - self.him)[None]  # [B, n, d]: a swap flips the pair's difference
        n = dif.shape[1]
        mean, sd = dif.mean(axis=1), dif.std(axis=1, ddof=1)
        scale = np.maximum(np.abs(self.her).max(axis=0), np.abs(self.him).max(axis=0))
        with np.errstate(all="ignore"):
            t = mean / (sd / np.sqrt(n))
        ok = ~(sd <= 1e-6 * scale) & np.isfinite(t)  # paired_neuron_ttest's testable neurons
        got = {s: _sized(t if i == 0 else -t, size[s], ok) for i, s in enumerate(self.sides) if s in size}
        return [{s: got[s][b] for s in got} for b in range(len(t))]


class ContributionSelector:
    """Rule (b): per side, the ``k`` neurons with the largest positive mean direct contribution to its target.

    ``c_her = direct_contributions(her_acts, W_out, d, inv_her)`` and ``c_him = direct_contributions(him_acts, W_out,
    -d, inv_him)`` (``[n_pairs, d_mlp]``). A swapped pair's her row is its him prompt read with ``+d``: ``-c_him``,
    because a contribution is linear in the direction."""

    def __init__(self, c_her: np.ndarray, c_him: np.ndarray, k: int = L.DEFAULT_K, sides: Sequence[str] = SIDES):
        self.c_her, self.c_him = np.asarray(c_her, float), np.asarray(c_him, float)
        self.k, self.sides = int(k), tuple(sides)
        self.n_pairs = self.c_her.shape[0]

    def __call__(self, swap: np.ndarray | None = None, size: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
        ch, cm = self.c_her, self.c_him
        if swap is not None:
            ch, cm = L.flip_pairs(self.c_her, -self.c_him, swap)[0], L.flip_pairs(self.c_him, -self.c_her, swap)[0]
        s0, s1 = self.sides
        if size is None:
            return L.select_by_contribution({s0: ch, s1: cm}, self.k)
        return {s: L.select_by_contribution({s: c}, int(size[s]))[s] for s, c in ((s0, ch), (s1, cm)) if s in size}

    def batch(self, swaps: np.ndarray, size: Mapping[str, int]) -> list[dict[str, np.ndarray]]:
        """``[__call__(s, size) for s in swaps]``, computed at once."""
        sw = np.asarray(swaps, float)
        own = dict(zip(self.sides, ((self.c_her, self.c_him), (self.c_him, self.c_her))))
        every = np.ones(self.c_her.shape[1], bool)
        got = {s: _sized(((1.0 - sw) @ c - sw @ o) / self.n_pairs, size[s], every)  # the flipped rows' mean
               for s, (c, o) in own.items() if s in size}
        return [{s: got[s][b] for s in got} for b in range(len(sw))]
