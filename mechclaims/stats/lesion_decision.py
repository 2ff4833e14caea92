"""Deciding the lesion claim at one layer: mean-ablation effects against size-matched random neuron sets.

Per side (a "her" prompt's target is " her", a "him" prompt's " him"), the effect is the mean change of the
target-minus-foil logit difference over the side's held-out prompts when the selected neurons are set to their mean
over the training prompts (mean ablation: it removes their information, not their constant push). Zero ablation is
reported beside it. The null is the same change for size-matched random sets of the same layer, mean-ablated the
same way.

p-value (stated before looking; the draws cannot reach alpha / n_layers = 0.00167 at 30 layers by counting alone):
draws come in chunks and stop once both tails of every observed value have ``h`` extreme draws (its sequential
Besag-Clifford p is then fixed and large); otherwise, after ``n_max`` draws, the p of a t-prediction from the draws'
mean and SD, ``t = (x - m) / (s sqrt(1 + 1/n))`` with n - 1 df (exact when the random-set effects are normal), used
only when Shapiro-Wilk does not reject their normality at 0.01; else the +1 empirical p, which cannot pass. The
calibration tests run the whole rule on synthetic nulls with heavy-tailed neuron effects.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from mechclaims.verdict.verdict import Verdict
from mechclaims.stats.common import needs_draws, tail_p  # noqa: F401  (re-exported for the lesion runner)
from mechclaims.stats.equivalence import tost_t

# Counts of sequential null draws and thresholded fractions move in whole steps when the last float bits move
# (another thread count, another batch split): a tolerance of their resolution, never deciding.
COUNT_TOL = {"rtol": 0.25, "atol": 0.05}
COUNTS = ("n_null", "frac_lowered")


@dataclass
class Side:
    """One side at one layer: per-prompt changes (mean ablation, zero ablation), the null's per-draw mean changes,
    and the same for an unrelated target/foil pair (the specificity control)."""

    name: str
    above_chance: bool  # precondition: the model gets this side's held-out prompts right more often than chance
    n_selected: int
    delta: np.ndarray  # [n] mean-ablation change of the claim's logit difference per prompt
    delta_zero: np.ndarray  # [n] zero-ablation change (reported)
    null: np.ndarray  # [B] mean over prompts of the change, per random set
    delta_unrelated: np.ndarray = field(default_factory=lambda: np.zeros(0))
    null_unrelated: np.ndarray = field(default_factory=lambda: np.zeros(0))


def side_numbers(s: Side, alpha: float, sesoi: float, h: int) -> dict[str, float]:
    eff = float(s.delta.mean()) if s.delta.size else float("nan")
    p_less, m = tail_p(eff, s.null, "less", h)
    p_greater, _ = tail_p(eff, s.null, "greater", h)
    d = s.delta - (s.null.mean() if s.null.size else np.nan)
    shown, p_tost = tost_t(float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else np.nan,
                           d.size - 1, sesoi, alpha)
    out = {"effect": eff, "p": p_less, "p_opposite": p_greater, "p_tost": p_tost, "equivalent": float(shown),
           "excess": float(d.mean()) if d.size else float("nan"), "null_mean": float(s.null.mean()) if s.null.size
           else float("nan"), "n_null": float(s.null.size), "n_prompts": float(s.delta.size),
           "n_selected": float(s.n_selected), "zero_ablation_effect": float(s.delta_zero.mean()) if s.delta_zero.size
           else float("nan"), "frac_lowered": float(np.mean(s.delta < -1e-3)) if s.delta.size else float("nan"),
           "normal_tail": float(m == "normal tail"), "above_chance": float(s.above_chance)}
    if s.null.size > 2:
        out["null_shapiro_p"] = float(stats.shapiro(s.null).pvalue)
        out["null_q05"], out["null_q95"] = (float(x) for x in np.quantile(s.null, [0.05, 0.95]))
    if s.delta_unrelated.size:
        out["unrelated_effect"] = float(s.delta_unrelated.mean())
        out["unrelated_p"] = tail_p(out["unrelated_effect"], s.null_unrelated, "two-sided", h)[0]
    return out


def layer_verdict(sides: dict[str, Side], *, claim: str, alpha: float, sesoi: float, h: int = 10,
                  role: str = "claim") -> Verdict:
    """The rule at one layer: on both sides the selected set lowers the target's logit difference more than random
    sets of its size (max(p_her, p_him) <= alpha, an intersection-union test). Untestable (inconclusive) when a side is
    at chance or nothing was selected (for a claim; a control that selects nothing simply fails). Refuted when a
    testable side shows equivalence (TOST of the excess over the random sets inside +-sesoi) or the opposite effect."""
    nums = {s: side_numbers(v, alpha, sesoi, h) for s, v in sides.items()}
    det = {f"{s}.{k}": x for s, n in nums.items() for k, x in n.items()}
    at_chance = [s for s, v in sides.items() if not v.above_chance]
    empty = [s for s, v in sides.items() if v.n_selected == 0]
    ok = [s for s in sides if s not in at_chance and s not in empty]
    p = max((nums[s]["p"] for s in sides), default=float("nan"))
    eq = [s for s in ok if nums[s]["equivalent"]]
    opp = [s for s in ok if nums[s]["p_opposite"] <= alpha]
    # A side shown absent refutes the conjunction whatever the other side is; otherwise a side at chance (or, for a
    # claim, with nothing selected) leaves the layer untestable.
    testable = bool(eq or opp) or (not at_chance and (role == "control" or not empty))
    passed = not at_chance and not empty and all(nums[s]["effect"] < 0 and nums[s]["p"] <= alpha for s in sides)
    why = []
    if at_chance:
        why.append(f"the model is at chance on the held-out {', '.join(at_chance)} prompts, so no ablation effect can "
                   f"show there")
    if empty:
        why.append(f"no neuron selected for {', '.join(empty)}")
    absence = "; ".join([f"{s}: excess over random sets {nums[s]['excess']:+.3g} inside +-{sesoi:g} (TOST p = "
                         f"{nums[s]['p_tost']:.3g})" for s in eq] +
                        [f"{s}: raises the target more than random sets (p = {nums[s]['p_opposite']:.3g})" for s in opp])
    tol = {f"{s}.{k}": COUNT_TOL for s in nums for k in COUNTS}
    return Verdict(claim=claim, statistic_name="max_p", statistic=float(p) if np.isfinite(p) else 1.0, p=None,
                   tolerances=tol,
                   rule=f"both sides: mean ablation lowers the target-minus-foil logit difference more than size-matched "
                        f"random sets (each p <= {alpha:.3g}, Bonferroni over the model's layers)",
                   passed=bool(passed), testable=testable, role=role, details=det, absent=bool(eq or opp),
                   absence=absence, effect_name="mean_effect",
                   effect=float(np.nanmean([nums[s]["effect"] for s in sides])), reason="; ".join(why))


def unrelated_control(sides: dict[str, Side], *, claim: str, alpha: float, h: int = 10) -> Verdict:
    """Specificity: the selected neurons must not move an unrelated target/foil pair more than random sets do (two-sided)
    on any side where the claim is testable. Passes (the neurons are not specific) when some side's p <= alpha."""
    nums = {s: side_numbers(v, alpha, 0.0, h) for s, v in sides.items() if v.above_chance and v.n_selected}
    ps = {s: n.get("unrelated_p", float("nan")) for s, n in nums.items()}
    passing = [s for s, p in ps.items() if np.isfinite(p) and p <= alpha / max(len(ps), 1)]  # Bonferroni over sides
    return Verdict(claim=claim, statistic_name="min_p", statistic=min(ps.values(), default=1.0), role="control",
                   rule=f"the selected set moves an unrelated logit difference more than random sets (two-sided p <= "
                        f"{alpha:.3g} / n_sides) on some side", passed=bool(passing),
                   testable=all(np.isfinite(p) for p in ps.values()),
                   details={f"{s}.unrelated_{k}": n.get(f"unrelated_{k}", np.nan) for s, n in nums.items()
                            for k in ("effect", "p")}, reason=f"moves it on {passing}" if passing else "")
