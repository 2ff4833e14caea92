"""Calibration of the lesion decision at the alpha where it decides, 0.05 / 30, through the claim's own rules.

Claim: under the structured null of :mod:`mechclaims.calibrate.lesion_data` (label-free activations, heavy-tailed
writes, a " her" prior, correlated neurons, a label-dependent final-norm scale), each side's test rejects in the claimed
direction at most at alpha with the OTHER side planted non-null (the least-favourable configuration of the
intersection-union rule): the Clopper-Pearson 95% upper bound of its rate is at most 1.5 x alpha
(:mod:`mechclaims.calibrate.bound`). The selection is the claim's (:mod:`mechclaims.stats.lesion` through
:mod:`mechclaims.stats.lesion_select`); the decision is :func:`stats.lesion_pairflip.pair_flip_side` (``decider``
"pairflip", the recommended one) or the training-label permute-then-select null :func:`stats.lesion_null.selection_null`
(``decider`` "selection"), combined by :func:`stats.lesion_null.layer_decision`.
Falsified by: a bound above 1.5 x alpha for some rule and side.

Run count: :func:`runs_for` (alpha) TESTABLE runs per rule and side, the fewest at which a rule whose rate is exactly
alpha (as an exact randomization test's is) still passes the criterion with 95% probability (40,0xx at 0.05 / 30;
``bound.runs_needed``'s ~12,400 pass such a rule only about half the time). A run whose side selects nothing is
untestable: it is counted, and left out of the rate (a rate over empty selections would be the rate of "nothing").

``python -m mechclaims.calibrate.lesion_report`` (or ``python -m mechclaims.calibrate --only lesion``) runs the full count (under the heavy lock) and writes
``calibration/lesion.json`` (:mod:`mechclaims.calibrate.lesion_report`); ``tests/test_calibration_lesion.py`` runs a
small version at alpha 0.05.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..stats import lesion as L
from ..stats.common import min_draws, needs_draws, tail_p
from ..stats.lesion_null import layer_decision, selection_null, side_result
from ..stats.lesion_pairflip import N_FLIPS, pair_flip_side
from ..stats.lesion_precondition import paired_precondition
from . import lesion_data as LD
from .bound import FACTOR, Size, clopper_pearson, interpolate

ALPHA = 0.05 / 30  # the deciding level: Bonferroni over smollm2-135m's 30 layers
N_MAX = {"pairflip": N_FLIPS, "selection": min_draws(30, 0.05)}  # smallest p 1e-4 / (1/1200): below ALPHA
H, SESOI = 10, 0.1
THETA_LFC, N_LFC = 3.0, 40  # the other side: 40 planted neurons, 3 logits (loosens contrast's FDR for the null side)
# The claim decides with pair-mean ablation (claims/test_lesion.py, ``ablate(fill="pair")``). Training-mean ablation is not
# exact under the label-dependent norm scale: at 300 runs it rejected contrast.him.opposite 4/300 (8 x alpha).
ABLATION = "pair"
RULES, DECIDERS = ("contrast", "contribution"), ("pairflip", "selection")


def runs_for(alpha: float, confidence: float = 0.95, factor: float = FACTOR) -> int:
    """Fewest runs at which a rule rejecting at exactly ``alpha`` passes ``Size.ok`` with probability ``confidence``."""
    n = int(10 / alpha)
    while True:
        k = int(alpha * n)
        while clopper_pearson(k + 1, n)[1] <= factor * alpha:
            k += 1
        while k >= 0 and clopper_pearson(k, n)[1] > factor * alpha:
            k -= 1
        if stats.binom.cdf(k, n, alpha) >= confidence:
            return n
        n = int(n * 1.1) + 1


class Checked:
    """``select_batch`` that re-checks the first swap of every batch against the claim's own functions."""

    def __init__(self, selector):
        self.selector, self.checked, self.mismatched = selector, 0, 0

    def __call__(self, swaps: np.ndarray, size: dict) -> list:
        out = self.selector.batch(swaps, size)
        ref = self.selector(swaps[0], size)
        self.checked += 1
        self.mismatched += int(any(sorted(ref[s].tolist()) != sorted(out[0][s].tolist()) for s in size))
        return out


@dataclass
class SideRun:
    testable: bool
    significant: bool = False
    opposite: bool = False
    outcome: str = "inconclusive"
    n_null: int = 0
    checked: int = 0
    mismatched: int = 0
    old_significant: bool = False  # main's random-set rule on the same side (the broken baseline, reported)
    old_opposite: bool = False
    old_precondition: bool = True  # main's per-side accuracy precondition held on both sides (with_old runs only)
    precondition: bool = True  # the paired sign test held
    p: float = float("nan")
    p_opposite: float = float("nan")
    effect: float = float("nan")


def other(side: str) -> str:
    return LD.SIDES[1] if side == LD.SIDES[0] else LD.SIDES[0]


def old_rule(lay: LD.Layer, side: str, idx: np.ndarray, rng: np.random.Generator, alpha: float,
             n_max: int = 200, h: int = H) -> tuple[bool, bool]:
    """Main's decision (random size-matched sets in chunks of 20 until both tails hold h draws, then the Shapiro-
    switched ``stats.common.tail_p``): (significant lowers, significant opposite) at ``alpha``."""
    ch = lay.change(side)
    eff = float(ch[:, idx].sum(axis=1).mean())
    null = np.zeros(0)
    while needs_draws([eff], null, n_max, h):
        null = np.append(null, [ch[:, s].sum(axis=1).mean() for s in L.random_sets(LD.D, len(idx), 20, rng)])
    return bool(eff < 0 and tail_p(eff, null, "less", h)[0] <= alpha), bool(tail_p(eff, null, "greater", h)[0] <= alpha)


def _old_precondition(lay: LD.Layer) -> bool:
    """Main's per-side precondition: right (LD > 0) on more held-out prompts than chance, binomial p < 0.05, each side."""
    return all(stats.binomtest(int(np.sum(lay.ld[s] > 0)), LD.N_TEST, 0.5, alternative="greater").pvalue < 0.05
               for s in LD.SIDES)


def decide_side(lay: LD.Layer, rule: str, side: str, obs: dict, rng: np.random.Generator, *, decider: str,
                alpha: float, n_max: int, h: int, pre: bool, ablation: str = ABLATION, sel=None):
    """One side's :class:`stats.lesion_null.SideResult` and (checked, mismatched) selector re-checks."""
    idx = obs[side]
    seed = int(rng.integers(2 ** 63))
    if decider == "pairflip":
        own, oth = lay.pair_change(side, idx, ablation) if len(idx) else (np.zeros(LD.N_TEST),) * 2
        return pair_flip_side(side, own, oth, alpha=alpha, sesoi=SESOI, h=h, n_max=n_max, seed=seed,
                              n_selected=len(idx), precondition=pre), (0, 0)
    sel = sel or lay.selector(rule)
    eff = lay.effects_fn()
    delta = eff([{side: idx}])[side][0] if len(idx) else np.zeros(LD.N_TEST)
    chk = Checked(sel)
    nd = selection_null(sel, eff, {side: delta}, n_pairs=LD.N_TRAIN, n_max=n_max, seed=seed, h=h,
                        observed_sets={side: idx}, select_batch=chk)
    return side_result(side, delta, nd.draws[side], alpha=alpha, sesoi=SESOI, h=h, n_selected=len(idx),
                       precondition=pre), (chk.checked, chk.mismatched)


def side_run(seed: tuple, rule: str, side: str, *, decider: str = "pairflip", alpha: float = ALPHA,
             n_max: int | None = None, h: int = H, theta_other: float = THETA_LFC, n_other: int = N_LFC,
             ablation: str = ABLATION, with_old: bool = False) -> SideRun:
    """One null layer: ``side`` label-free, the other side planted (``theta_other`` logits, ``n_other`` neurons)."""
    rng = np.random.default_rng(seed)
    lay = LD.make_layer(rng, {other(side): theta_other}, n_planted={other(side): n_other})
    sel = lay.selector(rule)
    obs = sel(None)
    if not len(obs[side]):
        return SideRun(False)
    pre = paired_precondition(lay.ld[LD.SIDES[0]], lay.ld[LD.SIDES[1]], n_resamples=0)["passed"] > 0
    r, (ck, mm) = decide_side(lay, rule, side, obs, rng, decider=decider, alpha=alpha,
                              n_max=N_MAX[decider] if n_max is None else n_max, h=h, pre=pre, ablation=ablation, sel=sel)
    old = old_rule(lay, side, obs[side], rng, alpha) if with_old else (False, False)
    return SideRun(r.testable, r.significant, r.opposite, r.outcome, r.n_null, ck, mm, *old,
                   _old_precondition(lay) if with_old else True, pre, r.p, r.p_opposite, r.effect)


def side_runs(rule: str, side: str, n_testable: int, seed: int = 0, max_runs: int | None = None,
              **kw) -> list[SideRun]:
    """Null layers for one rule and side until ``n_testable`` were testable (or ``max_runs``, default 10 x)."""
    code = (RULES.index(rule), LD.SIDES.index(side), DECIDERS.index(kw.get("decider", "pairflip")))
    runs: list[SideRun] = []
    n_t = 0
    while n_t < n_testable and len(runs) < (max_runs or 10 * n_testable):
        runs.append(side_run((seed, *code, len(runs)), rule, side, **kw))
        n_t += runs[-1].testable
    return runs


def side_rates(rule: str, side: str, n_testable: int, seed: int = 0, max_runs: int | None = None, **kw) -> dict:
    """Counts over :func:`side_runs`."""
    runs = side_runs(rule, side, n_testable, seed, max_runs, **kw)
    t = [r for r in runs if r.testable]
    return {"rule": rule, "side": side, "decider": kw.get("decider", "pairflip"), "n_runs": len(runs),
            "testable": len(t), "significant": sum(r.significant for r in t), "opposite": sum(r.opposite for r in t),
            "outcomes": {o: sum(r.outcome == o for r in t) for o in ("supported", "negligible", "refuted",
                                                                       "inconclusive")},
            "old_significant": sum(r.old_significant for r in t), "old_opposite": sum(r.old_opposite for r in t),
            "old_precondition_failed": sum(not r.old_precondition for r in t),
            "precondition_failed": sum(not r.precondition for r in t),
            "mean_null_draws": float(np.mean([r.n_null for r in t])) if t else float("nan"),
            "checked": sum(r.checked for r in runs), "mismatched": sum(r.mismatched for r in runs)}


def sizes(n_runs: int | None = None, seed: int = 0, *, alpha: float = ALPHA, rates: list | None = None,
          rules: tuple[str, ...] = RULES, **kw) -> list[Size]:
    """Per rule and side, the claimed-direction and opposite-direction rejection rates at ``alpha`` with the other
    side planted non-null, over ``n_runs`` TESTABLE runs (default :func:`runs_for` (alpha)); ``Size.testable`` holds
    the testable count and the name the total run count. ``rates``: a list that receives :func:`side_rates`' counts."""
    n_runs = runs_for(alpha) if n_runs is None else int(n_runs)
    out = []
    for rule in rules:
        for side in LD.SIDES:
            r = side_rates(rule, side, n_runs, seed, alpha=alpha, **kw)
            if rates is not None:
                rates.append(r)
            for what, word in (("significant", "lowers"), ("opposite", "opposite")):
                out.append(Size(f"lesion.{r['decider']}.{rule}.{side}.{word} (testable {r['testable']} of "
                                f"{r['n_runs']} runs)", r[what], r["testable"], alpha, testable=r["testable"]))
    return out


def layer_run(seed: tuple, rule: str, theta: float, *, decider: str = "pairflip", alpha: float = ALPHA,
              n_max: int | None = None, h: int = H, ablation: str = ABLATION) -> str:
    """Both sides planted at ``theta`` logits (``N_PLANTED`` neurons each, 0: the global null): the layer outcome."""
    rng = np.random.default_rng(seed)
    lay = LD.make_layer(rng, {s: theta for s in LD.SIDES})
    sel = lay.selector(rule)
    obs = sel(None)
    pre = paired_precondition(lay.ld[LD.SIDES[0]], lay.ld[LD.SIDES[1]], n_resamples=0)["passed"] > 0
    res = {s: decide_side(lay, rule, s, obs, rng, decider=decider, alpha=alpha, h=h, pre=pre, ablation=ablation,
                          n_max=N_MAX[decider] if n_max is None else n_max, sel=sel)[0] for s in LD.SIDES}
    return layer_decision(res, precondition=pre, sesoi=SESOI).outcome


def power(theta: float, rule: str, n_runs: int, seed: int = 0, *, budgets: tuple[int, ...] = (), **kw) -> dict:
    """How often the layer is supported with both sides planted at ``theta`` logits; with ``budgets`` (other
    ``n_max``), the same runs decided again and the layer outcomes compared."""
    d = kw.get("decider", "pairflip")
    key = lambda i: (seed, 7, RULES.index(rule), DECIDERS.index(d), int(round(theta * 1000)), i)  # noqa: E731
    outs = [layer_run(key(i), rule, theta, **kw) for i in range(n_runs)]
    sup = outs.count("supported")
    lo, hi = clopper_pearson(sup, n_runs)
    row = {"theta": theta, "rule": rule, "decider": d, "n": n_runs, "supported": sup, "power": sup / n_runs,
           "ci": [lo, hi], "outcomes": {o: outs.count(o) for o in sorted(set(outs))}}
    for b in budgets:
        again = [layer_run(key(i), rule, theta, **{**kw, "n_max": b}) for i in range(n_runs)]
        row[f"agree_at_{b}"] = int(sum(x == y for x, y in zip(outs, again)))
    return row


def mde(rows: list[dict], target: float = 0.8) -> float:
    """The smallest planted size (logits) at which power reaches ``target``, linearly interpolated on the grid
    (``bound.interpolate``); NaN when the grid never reaches it."""
    rows = sorted(rows, key=lambda r: r["theta"])
    m = interpolate([r["theta"] for r in rows], [r["power"] for r in rows], target)
    return float("nan") if m is None else m


def agreement(rule: str, side: str, n_runs: int, budgets: tuple[int, int], seed: int = 0, **kw) -> dict:
    """The same null runs (same data, same first draws) decided at two draw budgets: side outcomes compared."""
    code = (seed, 9, RULES.index(rule), LD.SIDES.index(side))
    a = [side_run((*code, i), rule, side, n_max=budgets[0], **kw) for i in range(n_runs)]
    b = [side_run((*code, i), rule, side, n_max=budgets[1], **kw) for i in range(n_runs)]
    t = [i for i, x in enumerate(a) if x.testable]
    return {"rule": rule, "side": side, "decider": kw.get("decider", "pairflip"), "n": n_runs, "testable": len(t),
            "budgets": list(budgets), "agree": int(sum(a[i].outcome == b[i].outcome for i in t)),
            "significant": [int(sum(a[i].significant for i in t)), int(sum(b[i].significant for i in t))]}
