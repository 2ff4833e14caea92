"""Baseline tolerances as strict as the decisions they guard (issue 27, item 7).

Claim: a number that decides against a threshold (a p against alpha, an excess against the SESOI) is compared with
its baseline under a tolerance strictly below its distance to that threshold, so no drift that the baseline accepts
can flip the decision. Falsified by a tolerance at or above half the gap (tests/test_baseline.py).
"""
from __future__ import annotations

import numpy as np

CAP = 1e-3  # the largest absolute baseline tolerance of a number that decides (float32 forward passes)
EXACT = {"rtol": 0.0, "atol": 0.0}


def guard(value: float, threshold: float, cap: float = CAP) -> dict[str, float]:
    """A baseline tolerance strictly below the distance between ``value`` and the threshold it is compared with:
    half that distance, at most ``cap`` (absolute; no relative part)."""
    gap = abs(float(value) - float(threshold)) if np.isfinite(value) else cap
    return {"rtol": 0.0, "atol": float(min(cap, 0.5 * gap))}
