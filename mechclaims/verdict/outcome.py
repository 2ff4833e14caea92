"""The four outcomes of a claim, how controls gate them, and how per-unit outcomes add up.

A claim's pass rule alone never makes it ``supported``: its controls must fail their rules too.

- ``supported``: the rule passes, and every control of the claim fails its rule;
- ``confounded``: the rule passes, but a control passes too (the evidence is not specific to the claim);
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

OUTCOMES = ("supported", "confounded", "refuted", "inconclusive")
CONTROL_OUTCOMES = ("failed", "passed", "inconclusive")
DEFAULT_EXPECTED = {"claim": "supported", "control": "failed"}


def decide(passed: bool, testable: bool, absent: bool, controls: Mapping[str, str]) -> str:
    """The claim outcome from its rule (``passed``), whether it could be tested, whether absence was shown, and
    its controls' outcomes (``failed`` / ``passed`` / ``inconclusive``)."""
    bad = [c for c in controls.values() if c not in CONTROL_OUTCOMES]
    if bad:
        raise ValueError(f"control outcomes must be one of {CONTROL_OUTCOMES}, got {bad}")
    if not testable:
        return "inconclusive"
    if passed:
        if any(c == "passed" for c in controls.values()):
            return "confounded"
        if any(c == "inconclusive" for c in controls.values()):
            return "inconclusive"
        return "supported"
    return "refuted" if absent else "inconclusive"


def control_outcome(passed: bool, testable: bool) -> str:
    """A control's outcome: a control that could not be evaluated is never a failing control."""
    if not testable:
        return "inconclusive"
    return "passed" if passed else "failed"


def aggregate(outcomes: Iterable[str], mode: str = "all") -> str:
    """A model-level outcome from per-unit (per-layer) outcomes.

    ``all``: the claim is that every unit holds (intersection-union): supported only if every unit is; refuted if
    any unit is refuted. ``any``: the claim is that some unit holds (each unit decided under a correction over all
    units): supported if any unit is; refuted only if every unit is.
    """
    o = list(outcomes)
    if any(x not in OUTCOMES for x in o):
        raise ValueError(f"unknown outcome in {o}; outcomes are {OUTCOMES}")
    if not o:
        return "inconclusive"
    if mode == "all":
        for x in ("refuted", "inconclusive", "confounded"):
            if x in o:
                return x
        return "supported"
    if mode == "any":
        if "supported" in o:
            return "supported"
        if all(x == "refuted" for x in o):
            return "refuted"
        return "confounded" if "confounded" in o else "inconclusive"
    raise ValueError(f"aggregate mode must be 'all' or 'any', not {mode!r}")


def counts(outcomes: Iterable[str]) -> str:
    """``'supported 6 · confounded 20 · inconclusive 4'`` in the order of OUTCOMES."""
    o = list(outcomes)
    return " · ".join(f"{k} {o.count(k)}" for k in dict.fromkeys(OUTCOMES + CONTROL_OUTCOMES) if o.count(k))


def load_expected(module_file: str) -> dict[str, tuple[str, str]]:
    """A claim module's recorded outcomes: ``<claims dir>/expected/<module name>.yml`` (test id -> {outcome,
    reason}), written deliberately by ``python scripts/record_outcomes.py`` after a run and reviewed like a baseline.
    Only outcomes other than the default (claim: supported; control: failed) are recorded."""
    from pathlib import Path

    import yaml

    p = Path(module_file).with_suffix("").parent / "expected" / (Path(module_file).stem + ".yml")
    if not p.exists():
        return {}
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    return {k: (v["outcome"], v.get("reason", "")) for k, v in data.items()}
