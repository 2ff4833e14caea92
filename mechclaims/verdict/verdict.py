"""Verdict: the one result type every claim function returns.

A claim function is pure (arrays in, Verdict out). The test asserts on it, the plugin writes it to
``summary.json`` and the report, and the baseline helper checks its numbers.

``passed`` says whether the claim's pass rule holds; ``outcome`` is what the claim concludes once its controls are
taken into account (``mechclaims.verdict.outcome``): a rule that passes while a control passes too is ``confounded``, never
``supported``. A NaN anywhere in the deciding numbers makes the verdict untestable (``inconclusive``, with the
reason): it can never pass, and a control with a NaN statistic never counts as a control that failed.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mechclaims.verdict.outcome import aggregate as _aggregate
from mechclaims.verdict.outcome import control_outcome, decide


def _clean(x: Any) -> Any:
    """Make numpy scalars/arrays JSON-friendly, keeping NaN visible as None-free floats."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


@dataclass
class Verdict:
    """Outcome of one claim on one (model, site/layer).

    ``statistic`` is the number the pass rule is about; ``rule`` states that rule in words, fixed
    before looking at data. ``p`` and ``effect``/``effect_ci`` are reported next to it. ``null``
    summarises the null distribution (mean, sd, quantiles, n). ``details`` holds every other reported
    number (flat dict of floats), which also feed the baseline check.
    """

    claim: str
    statistic_name: str
    statistic: float
    rule: str
    passed: bool
    p: float | None = None
    effect_name: str | None = None
    effect: float | None = None
    effect_ci: tuple[float, float] | None = None
    null: dict[str, float] | None = None
    details: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    absent: bool = False  # positive evidence of absence: TOST against the stated SESOI, or the opposite effect
    absence: str = ""  # how absence was (or was not) shown, in words with the numbers
    testable: bool = True  # False: nothing selected, a failed precondition, a non-finite number -> inconclusive
    role: str = "claim"  # "claim" or "control"
    controls: dict[str, Any] = field(default_factory=dict)  # control name -> its Verdict (or its outcome)
    # A model-level verdict of a per-layer claim: its outcome is the aggregate ("all" or "any") of the layers'
    # outcomes, each already gated on its own controls (mechclaims.verdict.outcome.aggregate).
    layers: dict[int, str] = field(default_factory=dict)
    aggregate: str | None = None
    # Baseline tolerances declared beside the numbers they guard (number key -> {"rtol", "atol"}), e.g. a count of
    # sequential null draws, which moves in whole steps when the last float bits move.
    tolerances: dict[str, dict[str, float]] = field(default_factory=dict)
    inapplicable: list[str] = field(default_factory=list)  # declared controls that cannot apply here (see gate)

    def __post_init__(self) -> None:
        deciding = {"statistic": self.statistic}
        if self.p is not None:
            deciding["p"] = self.p
        bad = [k for k, v in deciding.items() if v is None or not math.isfinite(float(v))]
        if bad:
            # NaN statistics are untestable: never a pass, and for a control never a failure that vouches for it.
            self.passed, self.testable = False, False
            self.reason = (f"non-finite {', '.join(bad)} ({self.statistic_name}={self.statistic}, p={self.p}); "
                           "usually a constant or empty input: check the stimuli and the site. "
                           + self.reason).strip()
        if self.role not in ("claim", "control"):
            raise ValueError(f"Verdict.role must be 'claim' or 'control', not {self.role!r}")
        self.passed, self.testable, self.absent = bool(self.passed), bool(self.testable), bool(self.absent)

    @property
    def outcome(self) -> str:
        """Claim: supported / confounded / negligible / refuted / inconclusive. Control: failed / passed /
        inconclusive. A model-level verdict (``aggregate`` set) is gated on its layers and on its own controls."""
        if self.role == "control":
            return control_outcome(self.passed, self.testable)
        if self.aggregate is not None:
            return _aggregate(self.layers.values(), self.aggregate, self.control_outcomes())
        return decide(self.passed, self.testable, self.absent, self.control_outcomes())

    def control_outcomes(self) -> dict[str, str]:
        return {k: (v.outcome if isinstance(v, Verdict) else str(v)) for k, v in self.controls.items()}

    def copy(self) -> "Verdict":
        """A deep copy (a memoised verdict is shared: add details to a copy)."""
        return copy.deepcopy(self)

    def note(self, key: str, value: float, tolerance: dict[str, float] | None = None) -> "Verdict":
        """Add a reported number to ``details``, with its own baseline tolerance when it needs one; returns self."""
        self.details[key] = float(value)
        if tolerance is not None:
            self.tolerances[key] = dict(tolerance)
        return self

    def gate(self, controls: dict[str, Any]) -> "Verdict":
        """Attach the claim's controls (name -> control Verdict or outcome); returns self. A control given as
        ``None`` cannot apply to this unit (e.g. "h one layer too early" at layer 0): it is listed in
        ``inapplicable`` and does not gate."""
        for name, c in controls.items():
            if c is None:
                self.inapplicable.append(name)
            else:
                self.controls[name] = c
        return self

    def numbers(self) -> dict[str, float]:
        """Every reported number, flat, for baselines and summary."""
        out: dict[str, float] = {self.statistic_name: float(self.statistic)}
        if self.p is not None:
            out["p"] = float(self.p)
        if self.effect is not None and self.effect_name:
            out[self.effect_name] = float(self.effect)
            if self.effect_ci is not None:
                out[f"{self.effect_name}_ci_low"] = float(self.effect_ci[0])
                out[f"{self.effect_name}_ci_high"] = float(self.effect_ci[1])
        for k, v in (self.null or {}).items():
            out[f"null_{k}"] = float(v)
        for k, v in self.details.items():
            out[k] = float(v)
        return out

    def to_record(self) -> dict[str, Any]:
        ctl = {k: ({"outcome": v.outcome, "statistic_name": v.statistic_name, "statistic": v.statistic, "p": v.p,
                    "rule": v.rule, "reason": v.reason} if isinstance(v, Verdict) else {"outcome": str(v)})
               for k, v in self.controls.items()}
        return _clean({
            "claim": self.claim, "statistic_name": self.statistic_name, "statistic": self.statistic,
            "rule": self.rule, "passed": self.passed, "p": self.p, "effect_name": self.effect_name,
            "effect": self.effect, "effect_ci": self.effect_ci, "null": self.null,
            "details": self.details, "reason": self.reason, "outcome": self.outcome, "role": self.role,
            "testable": self.testable, "absent": self.absent, "absence": self.absence, "controls": ctl,
            "layers": {str(k): v for k, v in self.layers.items()}, "aggregate": self.aggregate,
        })

    def explain(self) -> str:
        """One paragraph a researcher can read in a failure message."""
        rule = "the rule passes" if self.passed else ("untestable" if not self.testable else "the rule fails")
        parts = [f"{self.claim}: {self.outcome.upper()} ({rule})",
                 f"rule: {self.rule}", f"{self.statistic_name} = {self.statistic:.4g}"]
        if self.p is not None:
            parts.append(f"p = {self.p:.4g}")
        if self.effect is not None:
            ci = "" if self.effect_ci is None else f" [{self.effect_ci[0]:.4g}, {self.effect_ci[1]:.4g}]"
            parts.append(f"{self.effect_name} = {self.effect:.4g}{ci}")
        if self.null:
            parts.append("null: " + ", ".join(f"{k}={v:.4g}" for k, v in self.null.items()))
        if self.reason:
            parts.append(f"reason: {self.reason}")
        if self.absence:
            parts.append(f"absence: {self.absence}")
        for k, c in self.controls.items():
            if isinstance(c, Verdict):
                p = "" if c.p is None else f", p = {c.p:.3g}"
                why = f" ({c.reason})" if c.reason and c.outcome != "failed" else ""
                parts.append(f"control {k}: {c.outcome} ({c.statistic_name} = {c.statistic:.4g}{p}){why}")
            else:
                parts.append(f"control {k}: {c}")
        return "\n  ".join(parts)

    def assert_holds(self) -> None:
        """Fail the calling test with the full numbers when the rule does not pass. Claims use the ``expect``
        fixture instead, which checks the outcome against the recorded one."""
        if not self.passed:
            raise AssertionError(self.explain())
