"""The lesion claim's outcome table and layer decision, and the training-label permute-then-select null.

Which null decides: :mod:`mechclaims.stats.lesion_pairflip` (sign flips over held-out pairs, no reselection), because
the null here, though valid, loses all power on strong mechanisms under rule ``contribution`` (numbers there). This
module keeps the shared parts: :class:`SideResult`, the per-side outcome table (:func:`side_result` for draws from
:func:`selection_null`; ``pair_flip_side`` follows the same table), :func:`layer_decision` and the reported random-set
baseline.

Claim, per side (a "her" prompt's target is " her", a "him" prompt's " him"): mean-ablating the neurons that the rule
selects on the training pairs lowers the target-minus-foil logit difference on the side's held-out prompts. Layer rule
(intersection-union): both sides, each at ``alpha`` (= 0.05 / n_layers, Bonferroni over every layer of the model).
Falsified at a side by: a significant effect in the opposite direction, or an excess inside +-``sesoi`` (TOST) without
significance.

The training-label null (:func:`selection_null`). A rule that picks neurons for a large |W_out . d| picks sets whose
ablation moves the logit more than a random set does, with or without label information (main's structured null: SD
3.1-3.5 against 1.6 for random sets; the random-set test rejected at 0.145 per side at a nominal 0.05). Redoing the
selection on training pairs whose labels are swapped within random pairs gives sets made by the same rule from data
that carry no label: under H0 (no neuron's activation depends on the label) every swap leaves the training data's
distribution unchanged, so the observed effect and the null effects are exchangeable (a group-invariance
randomization test). The null sets have the observed set's size (:mod:`mechclaims.stats.lesion_select`).
p-value, one method only: Besag-Clifford sequential Monte Carlo (``stats.common.sequential_mc_p``): stop a tail at its
``h``-th draw at least as extreme (p = h / n), else after ``n_max`` draws p = (g + 1) / (n_max + 1). No normal tail, no
switch. With ``n_max >= stats.common.min_draws(n_layers, 0.05)`` (1,199 at 30 layers) the smallest p is half the
deciding alpha; a side whose draws ran out before that is untestable, never decided by the floor.

Side outcome (``side_result``), with ``sig`` = effect < 0 and p <= alpha, ``opp`` = p_opposite <= alpha, ``eq`` = TOST
of the excess over the null mean inside +-sesoi at alpha:

    not testable (nothing selected, too few null draws: the floor 1/(N+1) above alpha/2, failed precondition)
                                                                                                -> inconclusive
    sig and eq                                                                                  -> negligible
    sig                                                                                         -> supported
    opp, or eq without sig                                                                      -> refuted
    otherwise                                                                                   -> inconclusive

Layer outcome (``layer_decision``, intersection-union over the sides):

    precondition failed                                 -> inconclusive (testable False)
    any side refuted                                    -> refuted     (absent True)
    every side supported                                -> supported   (passed True)
    every side supported or negligible, some negligible -> negligible  (negligible True)
    otherwise                                           -> inconclusive (testable = every side testable)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping

import numpy as np

from .common import sequential_mc_p
from .equivalence import tost_t

Select = Callable[..., dict]  # select(swap: bool[n_pairs] | None, size: {side: int} | None) -> {side: idx}
Effects = Callable[[list], dict]  # effects([{side: idx}, ...]) -> {side: [n_sets] or [n_sets, n_prompts]}
SIDE_OUTCOMES = ("supported", "negligible", "refuted", "inconclusive")


def _means(draws: np.ndarray) -> np.ndarray:
    d = np.asarray(draws, float)
    return d.mean(axis=1) if d.ndim == 2 else d


@dataclass
class NullDraws:
    """``selection_null``'s result. ``draws[side]``: null effects in draw order, ``[N]`` means (observed given as a
    float) or ``[N, n_prompts]`` (observed given per prompt). ``same[side]``: draws whose set was the observed set or
    whose effect was within ``tie_tol`` of it (stored as exact copies of the observed value: ties, extreme in both
    tails). ``skipped[side]``: swaps whose set had another size. ``made``: swaps drawn."""

    draws: dict
    made: int
    same: dict
    skipped: dict


def selection_null(select: Select, effects: Effects, observed: Mapping[str, float | np.ndarray], *, n_pairs: int,
                   n_max: int, seed: int, h: int = 10, chunk: int = 64, observed_sets: Mapping | None = None,
                   select_batch: Callable[..., list] | None = None, max_draws: int | None = None,
                   tie_tol: float = 1e-6) -> NullDraws:
    """Permute-then-select null draws for every side in ``observed`` (side -> observed effect: the mean change, or the
    ``[n_prompts]`` per-prompt changes, in which case ``effects`` must return per-prompt rows for that side).

    Each draw swaps the labels within a random half of the ``n_pairs`` training pairs (independent fair coins) and
    reselects with ``select(swap, sizes)``, ``sizes`` being the observed sets' sizes (``observed_sets``, default
    ``select(None)``). A set that comes back with another size is skipped (not exchangeable); a set equal to the
    observed one is not evaluated: its effect IS the observed effect (a tie; evaluating it again would break the tie
    by float round-off, one way for every copy: measured, that alone made a side reject at 0.03 at a nominal 0.0017).
    The other sets go to ``effects``. Draws come in chunks of ``chunk`` swaps from one seeded generator, so the first
    draws are the same whatever ``n_max``. A side stops once its observed value has ``h`` draws at least as extreme on
    BOTH tails, or after ``n_max`` draws; the loop ends when every side has stopped, or after ``max_draws`` swaps
    (default 4 x n_max). ``select_batch(swaps, sizes)`` (optional) must return ``[select(s, sizes) for s in swaps]``.
    A side with an empty observed set gets no draws."""
    rng = np.random.default_rng(seed)
    obs_sets = select(None) if observed_sets is None else observed_sets
    ref = {s: np.sort(np.asarray(obs_sets[s], int)) for s in observed}
    sizes = {s: len(ref[s]) for s in observed}
    obs = {s: np.asarray(observed[s], float) for s in observed}
    obs_mean = {s: float(obs[s].mean()) if obs[s].size else float("nan") for s in observed}
    got: dict[str, list[np.ndarray]] = {s: [] for s in observed}
    means: dict[str, list[float]] = {s: [] for s in observed}
    same = {s: 0 for s in observed}
    skipped = {s: 0 for s in observed}
    max_draws = 4 * n_max if max_draws is None else int(max_draws)

    def done(s: str) -> bool:
        if sizes[s] == 0 or len(means[s]) >= n_max or not np.isfinite(obs_mean[s]):
            return True
        m = np.asarray(means[s])
        return min(int(np.sum(m <= obs_mean[s])), int(np.sum(m >= obs_mean[s]))) >= h

    made = 0
    active = [s for s in observed if not done(s)]
    while active and made < max_draws:
        swaps = rng.random((min(chunk, max_draws - made), n_pairs)) < 0.5
        made += len(swaps)
        need = {s: sizes[s] for s in active}
        sel = select_batch(swaps, need) if select_batch is not None else [select(w, need) for w in swaps]
        new, keep = {}, {}
        for s in active:
            ok = np.array([len(x[s]) == sizes[s] for x in sel], bool)
            eq = np.array([o and np.array_equal(np.sort(np.asarray(x[s], int)), ref[s]) for o, x in zip(ok, sel)], bool)
            new[s], keep[s] = ok & ~eq, ok
            skipped[s] += int((~ok).sum())
        sets = [{s: (np.asarray(x[s], int) if new[s][i] else np.zeros(0, int)) for s in active}
                for i, x in enumerate(sel)]
        out = effects(sets) if any(new[s].any() for s in active) else {}
        for s in active:
            rows = np.repeat(obs[s][None], len(sel), axis=0)
            if new[s].any():
                rows[new[s]] = np.asarray(out[s], float)[new[s]]
            m = rows.reshape(len(sel), -1).mean(axis=1)
            tie = keep[s] & (np.abs(m - obs_mean[s]) <= tie_tol)  # the observed set, or within round-off of it
            rows[tie], m[tie] = obs[s], obs_mean[s]
            take = np.flatnonzero(keep[s])[:n_max - len(means[s])]
            same[s] += int(tie[take].sum())
            got[s].extend(rows[take])
            means[s].extend(m[take].tolist())
        active = [s for s in active if not done(s)]
    draws = {s: (np.stack(v) if v else np.zeros((0, *obs[s].shape))) for s, v in got.items()}
    return NullDraws(draws, made, same, skipped)


@dataclass
class SideResult:
    """One side at one layer. ``effect``: mean change of the target-minus-foil logit difference (negative = lowers)."""

    name: str
    outcome: str
    testable: bool
    effect: float
    p: float  # claimed direction (lowers), sequential MC
    p_opposite: float
    excess: float  # effect minus the null's mean
    excess_se: float
    p_tost: float
    equivalent: bool
    significant: bool
    opposite: bool
    n_null: int
    n_selected: int
    n_prompts: int
    null_mean: float
    null_sd: float
    reason: str = ""

    def numbers(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items() if isinstance(v, (int, float, bool, np.floating))}


def side_result(name: str, delta: np.ndarray, null: np.ndarray, *, alpha: float, sesoi: float, h: int = 10,
                n_selected: int | None = None, precondition: bool = True) -> SideResult:
    """One side's p-values, TOST and outcome (table in the module docstring).

    ``delta``: ``[n_prompts]`` observed per-prompt changes; ``null``: :func:`selection_null`'s draws for the side
    (``NullDraws.draws[side]``, ``[N]`` or ``[N, n_prompts]``; ties with the observed value must be exact copies, as
    ``selection_null`` stores them). The TOST's excess is the effect minus the null's mean; its variance adds the
    prompts' sampling variance (paired per prompt when the null is per prompt) and the null mean's Monte Carlo variance,
    with Welch-Satterthwaite degrees of freedom."""
    delta = np.asarray(delta, float)
    null = np.asarray(null, float)
    nm = _means(null)
    n, N = delta.size, nm.size
    n_selected = n if n_selected is None else int(n_selected)
    eff = float(delta.mean()) if n else float("nan")
    p, _ = sequential_mc_p(eff, nm, h, "less") if N else (float("nan"), 0)
    po, _ = sequential_mc_p(eff, nm, h, "greater") if N else (float("nan"), 0)
    why = []
    if not precondition:
        why.append("precondition failed")
    if n_selected == 0:
        why.append("nothing selected")
    if n < 2:
        why.append(f"{n} held-out prompts")
    decided = N > 0 and min(int(np.sum(nm <= eff)), int(np.sum(nm >= eff))) >= h  # both tails stopped: p's fixed
    if not decided and 2.0 / (N + 1) > alpha:  # too few draws: the floor 1/(N+1) would decide (min_draws' margin 2)
        why.append(f"{N} null draws: the smallest p, 1/{N + 1}, is not below {alpha:.3g} / 2")
    testable = not why
    if N and n > 1:
        d = delta - (null.mean(axis=0) if null.ndim == 2 and null.shape[1] == n else nm.mean())
        a, b = d.var(ddof=1) / n, (nm.var(ddof=1) / N if N > 1 else 0.0)
        se = float(np.sqrt(a + b))
        df = (a + b) ** 2 / (a ** 2 / (n - 1) + (b ** 2 / (N - 1) if N > 1 else 0.0)) if a + b > 0 else float("nan")
        excess = float(d.mean())
        eq, p_tost = tost_t(excess, se, df, sesoi, alpha)
    else:
        excess, se, eq, p_tost = float("nan"), float("nan"), False, float("nan")
    sig = testable and eff < 0 and p <= alpha
    opp = testable and po <= alpha
    eq = testable and bool(eq)
    outcome = ("inconclusive" if not testable else "negligible" if sig and eq else "supported" if sig
               else "refuted" if opp or eq else "inconclusive")
    return SideResult(name, outcome, testable, eff, float(p), float(po), excess, se, float(p_tost), eq, sig, opp, N,
                      n_selected, n, float(nm.mean()) if N else float("nan"),
                      float(nm.std(ddof=1)) if N > 1 else float("nan"), "; ".join(why))


@dataclass
class LayerDecision:
    """The intersection-union decision at one layer, as booleans the Verdict takes, with every side's numbers."""

    outcome: str
    passed: bool
    testable: bool
    absent: bool
    negligible: bool
    p: float  # max over the sides of the claimed-direction p (the IUT's p)
    sides: dict[str, SideResult] = field(default_factory=dict)
    reason: str = ""
    absence: str = ""

    def numbers(self) -> dict[str, float]:
        out = {"p": self.p, "passed": float(self.passed), "testable": float(self.testable),
               "absent": float(self.absent), "negligible": float(self.negligible)}
        out.update({f"{s}.{k}": v for s, r in self.sides.items() for k, v in r.numbers().items()})
        return out


def layer_decision(sides: Mapping[str, SideResult], *, precondition: bool = True, sesoi: float = 0.1) -> LayerDecision:
    """Combine the sides (table in the module docstring). ``precondition``: the paired sign test that the model does
    the task (:func:`mechclaims.stats.lesion_precondition.paired_precondition`)."""
    r = dict(sides)
    p = max((x.p for x in r.values()), default=float("nan"))
    p = float(p) if np.isfinite(p) else 1.0
    if not precondition:
        return LayerDecision("inconclusive", False, False, False, False, p, r,
                             "the model does not do the task (paired sign test)")
    ref = [s for s, x in r.items() if x.outcome == "refuted"]
    untested = [f"{s}: {x.reason}" for s, x in r.items() if not x.testable]
    if ref:
        absence = "; ".join(
            f"{s}: raises the target more than label-swapped selections (p = {r[s].p_opposite:.3g})" if r[s].opposite
            else f"{s}: excess over label-swapped selections {r[s].excess:+.3g} inside +-{sesoi:g} (TOST p = "
                 f"{r[s].p_tost:.3g})" for s in ref)
        return LayerDecision("refuted", False, True, True, False, p, r, "; ".join(untested), absence)
    if r and all(x.outcome == "supported" for x in r.values()):
        return LayerDecision("supported", True, True, False, False, p, r)
    if r and all(x.outcome in ("supported", "negligible") for x in r.values()):
        small = [s for s, x in r.items() if x.outcome == "negligible"]
        return LayerDecision("negligible", False, True, False, True, p, r,
                             f"significant but inside +-{sesoi:g} on {', '.join(small)}")
    return LayerDecision("inconclusive", False, not untested, False, False, p, r, "; ".join(untested))


def random_baseline(effect: float, random_null: np.ndarray, selection_null_draws: np.ndarray | None = None
                    ) -> dict[str, float]:
    """Size-matched random sets as a REPORTED baseline (never deciding): their mean, SD and 5-95% band, the effect's
    z against them, and, when given, the ratio of the permute-then-select null's SD to theirs (above 1: the rule's
    selection alone moves the logit more than a random set does)."""
    r = _means(random_null)
    out = {"random_mean": float(r.mean()) if r.size else float("nan"),
           "random_sd": float(r.std(ddof=1)) if r.size > 1 else float("nan"), "random_n": float(r.size)}
    if r.size > 2:
        out["random_q05"], out["random_q95"] = (float(x) for x in np.quantile(r, [0.05, 0.95]))
        out["random_z"] = float((effect - out["random_mean"]) / out["random_sd"]) if out["random_sd"] > 0 else np.nan
    if selection_null_draws is not None and r.size > 1:
        s = _means(selection_null_draws)
        out["sd_ratio_selection_to_random"] = float(s.std(ddof=1) / out["random_sd"]) if s.size > 1 else np.nan
    return out
