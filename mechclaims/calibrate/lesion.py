"""Calibration of the lesion decision (permute-then-select) at the alpha where it decides, 0.05 / 30.

Claim: under the structured null of :mod:`mechclaims.calibrate.lesion_data` (label-free activations, heavy-tailed
writes, a " her" prior, correlated neurons), each side's test, run through the claim's selection rules
(:mod:`mechclaims.stats.lesion` via :mod:`mechclaims.stats.lesion_select`) and :func:`stats.lesion_null.selection_null`
/ :func:`side_result`, rejects in the claimed direction at most at alpha, with the OTHER side planted non-null (the
least-favourable configuration of the intersection-union rule): the Clopper-Pearson 95% upper bound of its rate is at
most 1.5 x alpha (:mod:`mechclaims.calibrate.bound`). Also reported: the opposite-direction rate, how often the side
was testable, and the power on planted neurons as a minimum detectable effect in logits.
Falsified by: a bound above 1.5 x alpha for either rule and side.

Run count: ``runs_for(alpha)``, the fewest runs at which a rule whose rate is exactly alpha (as an exact randomization
test is) still passes the criterion with 95% probability (40,0xx at 0.05 / 30; ``bound.runs_needed``'s ~12,400 pass such
a rule only about half the time). Runs where the side selects nothing are counted as untestable and left out of the
rate's denominator: the rate is conditional on testability, so an empty selection cannot make it look small.

``python -m mechclaims.calibrate.lesion [n_runs]`` runs the full count (under the heavy lock) and writes
``calibration/lesion.json``; ``tests/test_calibration_lesion.py`` runs a small version at alpha 0.05.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..stats import lesion as L
from ..stats.common import min_draws, needs_draws, tail_p
from ..stats.lesion_null import layer_decision, selection_null, side_result
from ..stats.lesion_precondition import paired_precondition
from . import lesion_data as LD
from .bound import FACTOR, Size, clopper_pearson

ALPHA = 0.05 / 30  # the deciding level: Bonferroni over smollm2-135m's 30 layers
N_MAX = min_draws(30, 0.05)  # 1,199: the smallest p, 1/1200, is half of ALPHA
H, SESOI = 10, 0.1
THETA_LFC, N_LFC = 3.0, 40  # the other side: 40 planted neurons, 3 logits (power ~1; loosens contrast's FDR)
RULES = ("contrast", "contribution")


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
    old_significant: bool = False  # main's random-set rule on the same side (reported, the broken baseline)
    old_opposite: bool = False


def other(side: str) -> str:
    return LD.SIDES[1] if side == LD.SIDES[0] else LD.SIDES[0]


def old_rule(lay: LD.Layer, side: str, idx: np.ndarray, rng: np.random.Generator, alpha: float,
             n_max: int = 200, h: int = H) -> tuple[bool, bool]:
    """Main's decision (random size-matched sets, chunks of 20 until both tails hold h draws, Shapiro-switched tail,
    ``stats.common.tail_p``): (significant lowers, significant opposite) at ``alpha``."""
    ch = lay.change(side)
    eff = float(ch[:, idx].sum(axis=1).mean())
    null = np.zeros(0)
    while needs_draws([eff], null, n_max, h):
        sets = L.random_sets(LD.D, len(idx), 20, rng)
        null = np.append(null, np.stack([ch[:, s].sum(axis=1).mean() for s in sets]))
    return bool(eff < 0 and tail_p(eff, null, "less", h)[0] <= alpha), bool(tail_p(eff, null, "greater", h)[0] <= alpha)


def side_run(seed: tuple, rule: str, side: str, *, alpha: float = ALPHA, n_max: int = N_MAX, h: int = H,
             theta_other: float = THETA_LFC, n_other: int = N_LFC, with_old: bool = False) -> SideRun:
    """One null layer: ``side`` label-free, the other side planted (``theta_other`` logits, ``n_other`` neurons)."""
    rng = np.random.default_rng(seed)
    lay = LD.make_layer(rng, {other(side): theta_other}, n_planted={other(side): n_other})
    sel = lay.selector(rule)
    obs = sel(None)[side]
    if not len(obs):
        return SideRun(False)
    pre = paired_precondition(lay.ld[LD.SIDES[0]], lay.ld[LD.SIDES[1]], n_resamples=0)["passed"] > 0
    eff = lay.effects_fn()
    delta = eff([{side: obs}])[side][0]
    chk = Checked(sel)
    nd = selection_null(sel, eff, {side: delta}, n_pairs=LD.N_TRAIN, n_max=n_max, seed=int(rng.integers(2 ** 63)),
                        h=h, observed_sets={side: obs}, select_batch=chk)
    r = side_result(side, delta, nd.draws[side], alpha=alpha, sesoi=SESOI, h=h, n_selected=len(obs), precondition=pre)
    old = old_rule(lay, side, obs, rng, alpha) if with_old else (False, False)
    return SideRun(r.testable, r.significant, r.opposite, r.outcome, r.n_null, chk.checked, chk.mismatched, *old)


def side_rates(rule: str, side: str, n_runs: int, seed: int = 0, **kw) -> dict:
    """Counts over ``n_runs`` null layers for one rule and side (see :func:`side_run`)."""
    code = (RULES.index(rule), LD.SIDES.index(side))
    runs = [side_run((seed, *code, i), rule, side, **kw) for i in range(n_runs)]
    t = [r for r in runs if r.testable]
    return {"rule": rule, "side": side, "n_runs": n_runs, "testable": len(t),
            "significant": sum(r.significant for r in t), "opposite": sum(r.opposite for r in t),
            "outcomes": {o: sum(r.outcome == o for r in t) for o in ("supported", "negligible", "refuted",
                                                                       "inconclusive")},
            "old_significant": sum(r.old_significant for r in t), "old_opposite": sum(r.old_opposite for r in t),
            "mean_null_draws": float(np.mean([r.n_null for r in t])) if t else float("nan"),
            "checked": sum(r.checked for r in runs), "mismatched": sum(r.mismatched for r in runs)}


def sizes(n_runs: int | None = None, seed: int = 0, *, alpha: float = ALPHA, n_max: int = N_MAX,
          rates: list | None = None, **kw) -> list[Size]:
    """Per rule and side, the claimed-direction and opposite-direction rejection rates at ``alpha`` with the other
    side planted non-null, over the runs where the side was testable (``Size.n``; ``Size.testable`` says so too; the
    total run count is in the name). ``n_runs`` default: :func:`runs_for` (alpha). ``rates``: a list that receives the
    raw counts of :func:`side_rates`."""
    n_runs = runs_for(alpha) if n_runs is None else int(n_runs)
    out = []
    for rule in RULES:
        for side in LD.SIDES:
            r = side_rates(rule, side, n_runs, seed, alpha=alpha, n_max=n_max, **kw)
            if rates is not None:
                rates.append(r)
            for what in ("significant", "opposite"):
                name = f"lesion.{rule}.{side}.{'lowers' if what == 'significant' else 'opposite'} (of {n_runs} runs)"
                out.append(Size(name, r[what], r["testable"], alpha, testable=r["testable"]))
    return out


def power(theta: float, rule: str, n_runs: int, seed: int = 0, *, alpha: float = ALPHA, n_max: int = N_MAX,
          h: int = H, budgets: tuple[int, ...] = ()) -> dict:
    """Both sides planted at ``theta`` logits (``N_PLANTED`` neurons each): how often the layer is supported. With
    ``budgets``, the same runs are also decided at those ``n_max`` and the layer outcomes compared."""
    outs: dict[int, list[str]] = {b: [] for b in (n_max, *budgets)}
    for i in range(n_runs):
        for b in outs:
            rng = np.random.default_rng((seed, 7, RULES.index(rule), int(round(theta * 1000)), i))
            lay = LD.make_layer(rng, {s: theta for s in LD.SIDES})
            sel, eff = lay.selector(rule), lay.effects_fn()
            obs = sel(None)
            delta = {s: eff([{s: obs[s]}])[s][0] if len(obs[s]) else np.zeros(LD.N_TEST) for s in LD.SIDES}
            live = {s: delta[s] for s in LD.SIDES if len(obs[s])}
            draws = selection_null(sel, eff, live, n_pairs=LD.N_TRAIN, n_max=b, seed=int(rng.integers(2 ** 63)),
                                   h=h, observed_sets=obs, select_batch=sel.batch).draws
            pre = paired_precondition(lay.ld[LD.SIDES[0]], lay.ld[LD.SIDES[1]], n_resamples=0)["passed"] > 0
            res = {s: side_result(s, delta[s], draws.get(s, np.zeros(0)), alpha=alpha, sesoi=SESOI, h=h,
                                  n_selected=len(obs[s]), precondition=pre) for s in LD.SIDES}
            outs[b].append(layer_decision(res, precondition=pre, sesoi=SESOI).outcome)
    sup = sum(o == "supported" for o in outs[n_max])
    lo, hi = clopper_pearson(sup, n_runs)
    row = {"theta": theta, "rule": rule, "n": n_runs, "supported": sup, "power": sup / n_runs, "ci": [lo, hi],
           "outcomes": {o: outs[n_max].count(o) for o in set(outs[n_max])}}
    for b in budgets:
        row[f"agree_{b}"] = int(sum(x == y for x, y in zip(outs[n_max], outs[b])))
    return row


def mde(rows: list[dict], target: float = 0.8) -> float:
    """The smallest planted size (logits) at which power reaches ``target``, linearly interpolated on the grid;
    NaN when the grid never reaches it."""
    rows = sorted(rows, key=lambda r: r["theta"])
    for a, b in zip(rows, rows[1:]):
        if a["power"] < target <= b["power"]:
            return float(a["theta"] + (target - a["power"]) * (b["theta"] - a["theta"]) / (b["power"] - a["power"]))
    return float(rows[0]["theta"]) if rows and rows[0]["power"] >= target else float("nan")


def null_agreement(rule: str, side: str, n_runs: int, seed: int = 0, budgets: tuple[int, int] = (N_MAX, 2 * N_MAX + 1),
                   alpha: float = ALPHA) -> dict:
    """The same null runs (same data, same first draws) decided at two draw budgets: side outcomes compared."""
    a = [side_run((seed, 9, RULES.index(rule), LD.SIDES.index(side), i), rule, side, alpha=alpha, n_max=budgets[0])
         for i in range(n_runs)]
    b = [side_run((seed, 9, RULES.index(rule), LD.SIDES.index(side), i), rule, side, alpha=alpha, n_max=budgets[1])
         for i in range(n_runs)]
    return {"rule": rule, "side": side, "n": n_runs, "budgets": list(budgets),
            "agree": int(sum(x.outcome == y.outcome for x, y in zip(a, b))),
            "significant": [int(sum(x.significant for x in a)), int(sum(x.significant for x in b))]}


def _sig(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "nan"
