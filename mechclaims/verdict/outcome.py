"""The five outcomes of a claim, how controls gate them, and how per-unit outcomes add up.

A claim's pass rule alone never makes it ``supported``: its controls must fail their rules too.

- ``supported``: the rule passes, the effect is not inside the smallest effect of interest, and every control of
  the claim fails its rule;
- ``confounded``: the rule passes, but a control passes too (the evidence is not specific to the claim);
- ``negligible``: the rule passes (significant in the claimed direction), but an equivalence test shows the effect
  inside the smallest effect of interest stated before looking: neither supported nor refuted;
- ``refuted``: the effect is shown absent, by an equivalence test (TOST) against a smallest effect of interest
  stated before looking, or by a significant effect in the opposite direction;
- ``inconclusive``: neither. Underpowered, untestable (nothing selected), a failed precondition (the model at
  chance), a non-finite statistic, or a control that could not be evaluated.

A control's own outcome is ``failed`` (as it must: its rule does not hold on the control condition), ``passed``
(it holds there too: the claim is confounded) or ``inconclusive`` (it could not be evaluated; a NaN never counts as
a failing control).
"""
from __future__ import annotations

from typing import Iterable, Mapping

OUTCOMES = ("supported", "confounded", "negligible", "refuted", "inconclusive")
CONTROL_OUTCOMES = ("failed", "passed", "inconclusive")
DEFAULT_EXPECTED = {"claim": "supported", "control": "failed"}


def decide(passed: bool, testable: bool, absent: bool, controls: Mapping[str, str]) -> str:
    """The claim outcome from its rule (``passed``), whether it could be tested, whether absence was shown (the effect
    inside the smallest effect of interest, or the opposite effect), and its controls' outcomes (``failed`` /
    ``passed`` / ``inconclusive``). A rule that passes with its effect shown inside the SESOI is ``negligible``."""
    bad = [c for c in controls.values() if c not in CONTROL_OUTCOMES]
    if bad:
        raise ValueError(f"control outcomes must be one of {CONTROL_OUTCOMES}, got {bad}")
    if not testable:
        return "inconclusive"
    if passed:
        if any(c == "passed" for c in controls.values()):
            return "confounded"
        if absent:
            return "negligible"
        if any(c == "inconclusive" for c in controls.values()):
            return "inconclusive"
        return "supported"
    return "refuted" if absent else "inconclusive"


def control_outcome(passed: bool, testable: bool) -> str:
    """A control's outcome: a control that could not be evaluated is never a failing control."""
    if not testable:
        return "inconclusive"
    return "passed" if passed else "failed"


def aggregate(outcomes: Iterable[str], mode: str = "all", controls: Mapping[str, str] | None = None) -> str:
    """A model-level outcome from per-unit (per-layer) outcomes, gated on the model-level ``controls`` too.

    ``all``: the claim is that every unit holds (intersection-union): supported only if every unit is; refuted if
    any unit is refuted. ``any``: the claim is that some unit holds (each unit decided under a correction over all
    units): supported if any unit is and no unit is confounded (a confounded unit says the rule's evidence is not
    specific somewhere: never ``supported`` beside it); refuted only if every unit is. Then, as for one unit, a
    ``supported`` aggregate with a control that passes is ``confounded``, and with a control that could not be
    evaluated ``inconclusive``.
    """
    o = list(outcomes)
    if any(x not in OUTCOMES for x in o):
        raise ValueError(f"unknown outcome in {o}; outcomes are {OUTCOMES}")
    if mode not in ("all", "any"):
        raise ValueError(f"aggregate mode must be 'all' or 'any', not {mode!r}")
    if not o:
        return "inconclusive"
    if mode == "all":
        out = next((x for x in ("refuted", "inconclusive", "confounded", "negligible") if x in o), "supported")
    elif "supported" in o:
        out = "confounded" if "confounded" in o else "supported"
    elif all(x == "refuted" for x in o):
        out = "refuted"
    else:
        out = next((x for x in ("confounded", "negligible") if x in o), "inconclusive")
    if out == "supported" and controls:
        return decide(True, True, False, controls)
    return out


def counts(outcomes: Iterable[str]) -> str:
    """``'supported 6 · confounded 20 · inconclusive 4'`` in the order of OUTCOMES."""
    o = list(outcomes)
    return " · ".join(f"{k} {o.count(k)}" for k in dict.fromkeys(OUTCOMES + CONTROL_OUTCOMES) if o.count(k))
