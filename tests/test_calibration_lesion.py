"""A small version of the lesion calibration (``python -m mechclaims.calibrate --only lesion`` runs the full count at 0.05/30).

It runs the claim's selection rules and the recommended decision (held-out pair sign flips) on the structured null with
the other side planted, and judges each rate with the committed criterion (Clopper-Pearson 95% upper <= 1.5 x alpha).
Sizing (computed with ``bound.clopper_pearson`` and ``scipy.stats.binom``): at alpha 0.1 and 800 testable runs a rule
whose rate is exactly alpha passes with probability 0.991, and a rule at 2 x alpha passes with probability < 1e-6. At
0.05 the same margin needs 1,500 runs (0.978), which for rule ``contrast`` (37% of runs testable) does not fit in a
minute on 2 shared cores. The test then shows the checker failing three broken rules on the same counts: main's
random-set rule, this rule run at 2 x alpha, and a coin with rate 2 x alpha.
"""
from __future__ import annotations

import numpy as np
import pytest

from mechclaims.calibrate import lesion as C
from mechclaims.calibrate.bound import Size

ALPHA, N = 0.1, 800


@pytest.fixture(scope="module")
def runs():
    return {r: C.side_runs(r, "her", N, seed=11, alpha=ALPHA) for r in C.RULES}


@pytest.mark.parametrize("rule", C.RULES)
def test_pair_flip_rule_is_calibrated_with_the_other_side_planted(runs, rule):
    t = [r for r in runs[rule] if r.testable]
    assert len(t) == N and sum(r.mismatched for r in runs[rule]) == 0
    for what in ("significant", "opposite"):
        s = Size(f"{rule}.her.{what}", sum(getattr(r, what) for r in t), len(t), ALPHA, testable=len(t))
        assert s.ok, s.explain()
    assert sum(not r.precondition for r in t) == 0  # the paired sign test sees the task through the " her" prior



def test_checker_fails_rules_that_reject_at_twice_alpha(runs):
    t = [r for r in runs["contribution"] if r.testable]
    at_2a = sum(r.effect < 0 and r.p <= 2 * ALPHA for r in t)  # the same test run at 2 x alpha, judged at alpha
    assert not Size("pairflip at 2 alpha", at_2a, len(t), ALPHA).ok
    coin = int(np.random.default_rng(0).binomial(len(t), 2 * ALPHA))
    assert not Size("coin at 2 alpha", coin, len(t), ALPHA).ok
    old = C.side_runs("contribution", "her", 300, seed=12, alpha=ALPHA, with_old=True)
    k = sum(r.old_opposite for r in old if r.testable)  # its "refuted" direction fires: the selected set's effect varies
    assert not Size("main's random-set rule, opposite", k, sum(r.testable for r in old), ALPHA).ok  # more than random
    assert sum(not r.old_precondition for r in old) > 0.8 * len(old)  # main's per-side accuracy drops the him side
    assert sum(not r.precondition for r in old) == 0  # the paired sign test sees the task through the " her" prior
