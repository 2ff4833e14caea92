"""A structured stand-in for one MLP layer of the lesion claim: label-free data with the nuisances that broke the old
null, and planted her/him neurons of a stated size.

Nuisances (issue 28), each present in every draw:
- selection-induced variance: each neuron's write onto the her-minus-him logit direction, ``v_j`` (W_out . d through
  the final norm), is heavy-tailed (t with 3 df), so rule ``contribution`` selects the neurons with large |v|;
- a target prior: ``N_BIAS`` strongly active neurons write " her" on every prompt, whatever the label; the clean logit
  differences carry a ``PRIOR``-logit shift toward " her" (the her side right far more often than the him side);
- label-free activations: no neuron's activation depends on the label (except planted ones);
- prompts' effects correlated across neurons: a pair factor shared by a pair's two prompts and a prompt factor, both
  loading on every neuron (``N_FACTORS``), so t-statistics and ablation effects are correlated across neurons;
- the final norm's per-prompt scale (1 / rms), ``NORM_GAP`` larger on him prompts than on her prompts (the residual's
  norm differs by label; the scale multiplies every neuron's write, so ablation moves the two sides by different
  amounts even for a label-free neuron).

Mean ablation in a linearised model: setting neuron j to its training mean ``m_j`` on prompt p changes the side's
target-minus-foil difference by ``sign_side * (m_j - a_pj) * v_j * inv_p`` (sign +1 her, -1 him); a set's change is the
sum over its neurons. ``Layer.effects`` returns that per prompt, so the null and the TOST see per-prompt changes.

Planted (``theta`` logits per side): ``N_PLANTED`` neurons fire ``DELTA`` base units more on that side's prompts only
and write its target, sized so that mean-ablating all of them changes the side's difference by ``-theta`` on average
(each: ``-DELTA * gamma / 2``; half the training prompts carry the extra activation, so the mean sits halfway).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..stats import lesion as L
from ..stats.lesion_select import ContrastSelector, ContributionSelector

D, N_TRAIN, N_TEST, K = 160, 72, 48, L.DEFAULT_K  # smollm2-135m's split: ~71 training pairs, 48 held-out pairs
N_FACTORS, PAIR_SD, PROMPT_SD, NOISE_SD = 3, 0.5, 0.4, 0.4  # log-activation: pair factor, prompt factor, neuron noise
V_SCALE, V_DF = 0.05, 3  # v_j ~ V_SCALE * t(V_DF): random 20-sets move the logit by ~0.3 (SD over sets; measured)
N_BIAS, BIAS_BASE, BIAS_V = 3, 3.0, 0.3  # the prior's neurons: active on every prompt, writing " her"
PRIOR, TASK, LD_SD = 0.65, 0.7, 0.8  # clean logit differences (smollm2-135m: her +1.35, him +0.06 margins)
NORM_GAP = 0.1  # him prompts' 1 / rms is 10% larger than her prompts'
N_PLANTED, DELTA = 10, 1.0  # planted neurons per side, extra activation on their side (base units)
SIDES = ("her", "him")


@dataclass
class Layer:
    """One synthetic layer: training pairs, held-out prompts, output weights, and the clean logit differences."""

    her: np.ndarray  # [N_TRAIN, D] training activations of the her prompts (row i: pair i)
    him: np.ndarray
    inv_her: np.ndarray  # [N_TRAIN] final-norm scales
    inv_him: np.ndarray
    test: dict  # side -> [N_TEST, D] held-out activations
    inv_test: dict  # side -> [N_TEST]
    v: np.ndarray  # [D] write onto (u_her - u_him) per unit activation
    ld: dict  # side -> [N_TEST] clean target-minus-foil logit differences of the held-out prompts
    planted: dict  # side -> planted neuron indices

    @property
    def mean(self) -> np.ndarray:
        return np.concatenate([self.her, self.him]).mean(axis=0)

    def change(self, side: str) -> np.ndarray:
        """[N_TEST, D]: each neuron's mean-ablation change of the side's difference on each held-out prompt."""
        sign = 1.0 if side == SIDES[0] else -1.0
        return sign * (self.mean[None] - self.test[side]) * self.v[None] * self.inv_test[side][:, None]

    def pair_change(self, side: str, idx: np.ndarray, ablation: str = "mean") -> tuple[np.ndarray, np.ndarray]:
        """The side's set ablated on both prompts of every held-out pair: (change of the own-side prompt's LD, change
        of the other prompt's LD), each read with that prompt's own target (``stats.lesion_pairflip``). ``ablation``:
        "mean" sets each neuron to its training mean (the claim's); "pair" to the mean of the pair's two prompts."""
        idx = np.asarray(idx, int)
        other = SIDES[1] if side == SIDES[0] else SIDES[0]
        if ablation == "mean":
            return self.change(side)[:, idx].sum(axis=1), self.change(other)[:, idx].sum(axis=1)
        mid = (self.test[SIDES[0]] + self.test[SIDES[1]])[:, idx] / 2.0
        sign = {SIDES[0]: 1.0, SIDES[1]: -1.0}
        ch = {s: sign[s] * ((mid - self.test[s][:, idx]) * self.v[idx]).sum(axis=1) * self.inv_test[s] for s in SIDES}
        return ch[side], ch[other]

    def effects_fn(self):
        """``effects(sets) -> {side: [n_sets, N_TEST]}`` per-prompt changes (an empty set: NaN, not evaluated)."""
        ch = {s: self.change(s) for s in SIDES}

        def effects(sets: list) -> dict:
            out = {}
            for s in {k for x in sets for k in x}:
                ind = np.zeros((len(sets), D))
                for i, x in enumerate(sets):
                    if s in x and len(x[s]):
                        ind[i, x[s]] = 1.0
                y = ind @ ch[s].T
                y[ind.sum(axis=1) == 0] = np.nan
                out[s] = y
            return out
        return effects

    def selector(self, rule: str):
        """The claim's rule on this layer's training pairs, through the claim's own functions."""
        if rule == "contrast":
            return ContrastSelector(self.her, self.him, K)
        c_her = L.direct_contributions(self.her, self.v[:, None], np.ones(1), self.inv_her)
        c_him = L.direct_contributions(self.him, self.v[:, None], -np.ones(1), self.inv_him)
        return ContributionSelector(c_her, c_him, K)


def make_layer(rng: np.random.Generator, theta: dict | None = None, *, n_planted: dict | None = None,
               v_scale: float = V_SCALE) -> Layer:
    """One draw. ``theta``: side -> planted size in logits (absent or 0: that side is null); ``n_planted``: side ->
    how many planted neurons (default ``N_PLANTED``; the least-favourable configuration plants more on the other side,
    which loosens rule ``contrast``'s FDR threshold for the null side)."""
    theta = theta or {}
    npl = {s: int((n_planted or {}).get(s, N_PLANTED)) for s in SIDES}
    base = rng.gamma(2.0, 0.5, D)
    lam = rng.normal(size=(N_FACTORS, D)) / np.sqrt(N_FACTORS)
    v = v_scale * rng.standard_t(V_DF, D)
    bias = rng.choice(D, N_BIAS, replace=False)
    base[bias], v[bias] = BIAS_BASE, BIAS_V
    free = np.flatnonzero(~np.isin(np.arange(D), bias))
    pick = rng.choice(free, npl[SIDES[0]] + npl[SIDES[1]], replace=False)
    planted = {SIDES[0]: pick[:npl[SIDES[0]]], SIDES[1]: pick[npl[SIDES[0]]:]}
    for i, s in enumerate(SIDES):
        t = float(theta.get(s, 0.0))
        if t > 0:
            gamma = 2.0 * t / (npl[s] * DELTA)
            v[planted[s]] = (1.0 if i == 0 else -1.0) * gamma / base[planted[s]]

    lam32 = lam.astype(np.float32)
    shift = np.float32(0.5 * (PAIR_SD ** 2 + PROMPT_SD ** 2 + NOISE_SD ** 2))  # so that each neuron's mean is base_j

    def acts(n: int, pair: np.ndarray, side: str) -> np.ndarray:  # float32 draws: twice as fast, same law
        f = PAIR_SD * pair + PROMPT_SD * rng.standard_normal((n, N_FACTORS), dtype=np.float32)
        z = f.astype(np.float32) @ lam32 + NOISE_SD * rng.standard_normal((n, D), dtype=np.float32)
        a = base * np.exp(z - shift)
        if theta.get(side, 0.0) > 0:
            a[:, planted[side]] += DELTA * base[planted[side]]
        return a

    def inv(n: int, side: str) -> np.ndarray:
        return np.exp(0.1 * rng.normal(size=n)) * (1.0 + NORM_GAP * (side == SIDES[1]))

    ptr, pte = rng.normal(size=(N_TRAIN, N_FACTORS)), rng.normal(size=(N_TEST, N_FACTORS))
    her, him = acts(N_TRAIN, ptr, SIDES[0]), acts(N_TRAIN, ptr, SIDES[1])
    test = {s: acts(N_TEST, pte, s) for s in SIDES}
    shared = rng.normal(size=N_TEST)  # a pair's two prompts share part of their clean margin
    ld = {SIDES[0]: TASK + PRIOR + LD_SD * (0.6 * shared + 0.8 * rng.normal(size=N_TEST)),
          SIDES[1]: TASK - PRIOR + LD_SD * (0.6 * shared + 0.8 * rng.normal(size=N_TEST))}
    return Layer(her, him, inv(N_TRAIN, SIDES[0]), inv(N_TRAIN, SIDES[1]), test, {s: inv(N_TEST, s) for s in SIDES}, v,
                 ld, planted)
