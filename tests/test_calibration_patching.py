"""Small calibration of the patching share rules in ``make test`` (the full one: ``make calibrate``).

Claim: through the claims' own p-values (``stats.patching.share_pvalues``), at the least-favourable configuration
(true share at the threshold), every design x noise x direction rejects at a rate whose Clopper-Pearson 95% upper
bound is <= 1.5 x alpha, at alpha 0.05 with 4,000 runs; and at that count a rule rejecting at 2 x alpha fails the
bound. Falsified by a bound above 1.5 x alpha, or a 2 x alpha rule that passes (the check could not fail).
"""
from __future__ import annotations

import numpy as np

from mechclaims.calibrate.bound import Size
from mechclaims.calibrate.patching import sizes

RUNS, ALPHA = 4000, 0.05


def test_share_rules_are_calibrated_at_a_small_count():
    rows = sizes(n_runs=RUNS, seed=1, alpha=ALPHA)
    bad = [s.explain() for s in rows if not s.ok]
    assert len(rows) == 24 and not bad, "\n".join(bad)


def test_a_rule_at_twice_alpha_fails_at_this_count():
    rng = np.random.default_rng(0)
    k = int(rng.binomial(RUNS, 2 * ALPHA))  # a rule whose true rate is 2 x alpha
    assert not Size("rigged", k, RUNS, ALPHA).ok
