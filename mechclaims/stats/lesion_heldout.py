"""The lesion claim at one layer as a Verdict: held-out pair sign flips per side, two controls that can pass.

Claim, per layer (``claims/test_lesion.py``): mean-ablating the set that the rule selected for a side, on training pairs,
lowers that side's target-minus-foil logit difference on held-out pairs that share no referent name with training,
beyond what a label swap within a pair would give (:func:`mechclaims.stats.lesion_pairflip.pair_flip_side`: sign flips
of the pair task contrast c_i, Besag-Clifford p, at most 9,999 flips; no normal tail, no switch, and a p that only the
floor 1/(N+1) could push below alpha makes the side untestable, never decided). Both sides (intersection-union), each at
alpha = 0.05 / n_layers. Side and layer outcomes: :mod:`mechclaims.stats.lesion_null` (``layer_decision``): significant
and inside +-sesoi (TOST) is ``negligible``; the opposite direction, or inside +-sesoi without significance, is
``refuted``; a failed precondition (paired sign test, :mod:`mechclaims.stats.lesion_precondition`) is ``inconclusive``.

Controls (each the claim's own test where the claim's explanation cannot hold; each passes on a planted case in
``tests/test_lesion_claim.py`` through these functions):
- :func:`random_set_control`: a size-matched random set of the same layer, ablated the same way and judged by the same
  rule. It passes (every side supported) when label information is spread so widely that any set removes it: then the
  selected neurons are not what carries it.
- :func:`unrelated_control`: the selected set's label-specific change of an unrelated logit difference (" the" minus
  " a"), by the same sign-flip test, two-sided at alpha, outside +-sesoi. It passes when removing the set moves an
  unrelated readout differently on a pair's two prompts: the set's information is not specific to the pronoun.
Size-matched random sets are reported as a baseline beside the effect (:func:`mechclaims.stats.lesion_null.
random_baseline`), never deciding.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from mechclaims.stats.lesion_null import SideResult, layer_decision
from mechclaims.verdict.tolerance import EXACT, guard
from mechclaims.verdict.verdict import Verdict

COUNT_TOL = {"rtol": 0.25, "atol": 0.05}  # sign flips drawn before the sequential stop: reported, never deciding


def _note_side(v: Verdict, prefix: str, r: SideResult, alpha: float, sesoi: float) -> None:
    for k, x in r.numbers().items():
        key = f"{prefix}.{k}"
        if k in ("p", "p_opposite", "p_tost"):
            v.note(key, x, guard(x, alpha))
        elif k == "effect":
            v.note(key, x, guard(x, 0.0))
        elif k == "excess":
            v.note(key, x, guard(abs(x), sesoi))
        elif k in ("testable", "equivalent", "significant", "opposite", "n_selected", "n_prompts"):
            v.note(key, x, EXACT)
        elif k == "n_null":
            v.note(key, x, COUNT_TOL)
        else:
            v.note(key, x)


def layer_verdict(sides: Mapping[str, SideResult], *, claim: str, alpha: float, sesoi: float, precondition: bool,
                  reported: Mapping[str, float] | None = None, role: str = "claim") -> Verdict:
    """The claim at one layer from its sides' pair-flip results (``layer_decision``'s table)."""
    d = layer_decision(sides, precondition=precondition, sesoi=sesoi)
    absence = "; ".join(
        f"{s}: raises the target beyond label swaps (sign-flip p = {r.p_opposite:.3g})" if r.opposite else
        f"{s}: label-specific effect {r.excess:+.3g} inside +-{sesoi:g} (TOST p = {r.p_tost:.3g})"
        for s, r in d.sides.items() if r.outcome == "refuted")
    if d.negligible:
        absence = d.reason
    v = Verdict(claim=claim, statistic_name="max_p", statistic=d.p, role=role,
                rule=f"both sides: mean-ablating the side's selected set lowers its target-minus-foil logit difference "
                     f"on held-out pairs beyond label swaps (sign-flip p <= {alpha:.3g} each, Bonferroni over the "
                     f"model's layers); inside +-{sesoi:g} logit: negligible",
                passed=d.passed or d.negligible, testable=d.testable, absent=d.absent or d.negligible, absence=absence,
                effect_name="mean_effect", effect=float(np.nanmean([r.effect for r in sides.values()]))
                if sides else float("nan"), reason=d.reason if not d.negligible else "")
    v.tolerances["max_p"] = guard(d.p, alpha)
    for s, r in d.sides.items():
        _note_side(v, s, r, alpha, sesoi)
    for k, x in (reported or {}).items():
        v.note(k, x)
    return v


def random_set_control(sides: Mapping[str, SideResult], *, claim: str, alpha: float, sesoi: float) -> Verdict:
    """The claim's rule on a size-matched random set per side: passes when it comes out ``supported``."""
    v = layer_verdict(sides, claim=claim, alpha=alpha, sesoi=sesoi, precondition=True, role="control")
    v.passed, v.absent = v.passed and not v.absent, False  # a negligible random-set effect does not confound
    v.reason = "a random set of the same size removes the label information too" if v.passed else v.reason
    return v


def unrelated_control(sides: Mapping[str, SideResult], *, claim: str, alpha: float) -> Verdict:
    """Specificity: on some side, the selected set's ablation moves the unrelated readout's pair contrast (sign flips,
    two-sided at ``alpha``) by more than +-sesoi (TOST not shown)."""
    p2 = {s: min(1.0, 2.0 * min(r.p, r.p_opposite)) for s, r in sides.items()}
    moving = [s for s, r in sides.items() if r.testable and p2[s] <= alpha and not r.equivalent]
    v = Verdict(claim=claim, statistic_name="min_p", statistic=min(p2.values(), default=1.0), role="control",
                rule=f"on some side the selected set moves an unrelated logit difference label-specifically (two-sided "
                     f"sign-flip p <= {alpha:.3g}, outside the SESOI)", passed=bool(moving),
                testable=bool(sides) and all(r.testable for r in sides.values()),
                reason=f"moves it on {moving}" if moving else "")
    v.tolerances["min_p"] = guard(v.statistic, alpha)
    for s, r in sides.items():
        v.note(f"{s}.unrelated_excess", r.excess)
        v.note(f"{s}.unrelated_p2", p2[s], guard(p2[s], alpha))
    return v
