"""Small calibration of the Q/K rotated-weights rules' decision part in ``make test`` (the full one, at 0.05 / 60:
``make calibrate``; mechclaims/calibrate/qk.py says what is simulated and why).

Claim: through ``sequential_null(stop="all")`` and its ``tail_p`` (Besag-Clifford, else the Shapiro-checked normal
tail of 300 draws), an observed value exchangeable with its null is rejected at most at alpha, for normal, skewed (0.3, 0.6) and
heavy-tailed (t20, t8) nulls, in both tails: each row's Clopper-Pearson 95% upper bound is within 1.5 x alpha
at 2,000 runs, a count at which a rule rejecting at 2 x alpha fails. At alpha 0.05 the normal tail hardly decides
(a p below 0.05 needs under 15 of 300 draws beyond the value); the deep-alpha rows are in docs/calibration.
Seeded: at this count a rule at exactly alpha shows a bound above 1.5 x alpha in about 1% of rows (binomial tail).
Falsified by a row above its limit.
"""
from __future__ import annotations

import pytest

from mechclaims.calibrate.bound import Size
from mechclaims.calibrate.qk import sizes

ALPHA, RUNS = 0.05, 2000


def test_rotation_tail_is_calibrated_at_a_small_count():
    rows = sizes(n_runs=RUNS, seed=1, alpha=ALPHA)
    assert len(rows) == 10
    bad = [r.explain() for r in rows if not r.ok]
    assert not bad, bad
    assert all(r.rate > ALPHA / 2 for r in rows)  # not vacuous: each tail can reject


def test_a_rule_at_twice_alpha_fails_at_this_count():
    assert not Size("x", int(2 * ALPHA * RUNS), RUNS, ALPHA).ok


# Known failure, kept visible (strict: it fails the run once it passes, so the fix must update it): at the deciding
# alpha the normal tail of 300 rotations is anti-conservative. Full count (60,000 runs, docs/calibration): normal
# 0.00097 / 0.00115, skew 0.3 upper 0.00185, t20 0.00193 / 0.00138, t8 0.00223 / 0.00190 against alpha 0.000833.
@pytest.mark.xfail(strict=True, reason="issue 28: the Q/K rotated-weights p (Shapiro-checked normal tail of 300 draws) "
                                       "rejects at 1.2-2.7 x alpha at 0.05/60 under realistic null shapes; claims B-D "
                                       "decide there (README, Q/K)")
def test_rotation_tail_is_calibrated_at_the_deciding_alpha():
    rows = sizes(n_runs=12_000, seed=3, shapes=("t8",))
    assert all(r.ok for r in rows), [r.explain() for r in rows]
