"""Small calibration of GED's decision part in ``make test`` (the full one, 60,000 runs per row at 0.05 / 30:
``make calibrate``; mechclaims/calibrate/ged.py says what is simulated and why).

Claim: through ``ged_null.sequential`` and ``ged.direction_passes``, with one component exchangeable with its refits
and the others far beyond theirs (least favourable), or all exchangeable (global null), the layer passes at most at
its alpha: every row's Clopper-Pearson 95% upper bound is within 1.5 x alpha at 2,000 runs, a count at which a rule
rejecting at 2 x alpha fails (its bound would be ~0.114 against a limit of 0.075).
Falsified by a row above its limit.
"""
from __future__ import annotations

from mechclaims.calibrate.bound import Size
from mechclaims.calibrate.ged import sizes

ALPHA, RUNS = 0.05, 2000


def test_ged_decision_is_calibrated_at_a_small_count():
    rows = sizes(n_runs=RUNS, seed=1, alpha=ALPHA)
    assert len(rows) == 7  # A: eig, |d| natural, |d| pairs, global; C: eig, |d| natural, global
    bad = [r.explain() for r in rows if not r.ok]
    assert not bad, bad
    assert all(r.rate > ALPHA / 2 for r in rows if "global" not in r.name)  # not vacuous: each component can reject


def test_a_rule_at_twice_alpha_fails_at_this_count():
    assert not Size("x", int(2 * ALPHA * RUNS), RUNS, ALPHA).ok
