"""Verdict: the one result type every claim function returns.

A claim function is pure (arrays in, Verdict out). The test asserts on it, the plugin writes it to
``summary.json`` and the report, and the baseline helper checks its numbers. NaN anywhere in the
deciding numbers makes the verdict fail with the reason; it can never pass by accident.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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

    def __post_init__(self) -> None:
        deciding = {"statistic": self.statistic}
        if self.p is not None:
            deciding["p"] = self.p
        bad = [k for k, v in deciding.items() if v is None or not math.isfinite(float(v))]
        if bad:
            # NaN statistics must fail loudly with their reason, never pass.
            self.passed = False
            self.reason = (f"non-finite {', '.join(bad)} ({self.statistic_name}={self.statistic}, p={self.p}); "
                           "usually a constant or empty input: check the stimuli and the site. "
                           + self.reason).strip()
        self.passed = bool(self.passed)

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
        return _clean({
            "claim": self.claim, "statistic_name": self.statistic_name, "statistic": self.statistic,
            "rule": self.rule, "passed": self.passed, "p": self.p, "effect_name": self.effect_name,
            "effect": self.effect, "effect_ci": self.effect_ci, "null": self.null,
            "details": self.details, "reason": self.reason,
        })

    def explain(self) -> str:
        """One paragraph a researcher can read in a failure message."""
        parts = [f"{self.claim}: {'HOLDS' if self.passed else 'DOES NOT HOLD'}",
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
        return "\n  ".join(parts)

    def assert_holds(self) -> None:
        """Fail the calling test with the full numbers when the claim does not hold."""
        if not self.passed:
            raise AssertionError(self.explain())
