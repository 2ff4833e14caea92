"""Small calibration of the path-length rule (mechclaims/calibrate/pathlength.py) that still fails a bad rule.

Claim under test: the checker (``bound.Size``: Clopper-Pearson 95% upper bound <= 1.5 x alpha) accepts the new
rule's Freedman-Lane component under AR(1) phi 0.9 tokens with a shared exp(-pos/8) trend, and rejects (a) the old
within-document-permutation Freedman-Lane on the same data and (b) a rule that rejects at exactly 2 x alpha.
The full table, at the deciding alpha 0.05 with 1,000 runs per cell, is ``python -m mechclaims.calibrate.pathlength``.

Why alpha 0.2 here: at 0.05 a correct rule needs ~1,000 runs to pass reliably (P(pass) 0.89 at a true 0.05), which
does not fit in a unit test (seconds). At alpha 0.2, 120 runs and 39 draws (a valid test's true size is then at most
0.175) the checker (CP upper <= 0.3) accepts up to 27 rejections; a rule at 2 x alpha (0.4) expects 48.
Measured (seed 0): shift FL 19/120 = 0.158 (CP upper 0.236 <= 0.3); the same p-values at 2 x alpha 48/120; old
permutation FL 32/40 = 0.80.
Falsified by: the new component failing the checker, or either bad rule passing it.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from threadpoolctl import threadpool_limits
import pytest

from mechclaims.calibrate.bound import Size
from mechclaims.calibrate.pathlength import EXTEND, cell_sizes, cells, power, run_cell, sizes
from mechclaims.stats.pathlength import path_length_claim
from mechclaims.stats.pathlength_serial import path_length_rule


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Small matrices: multi-threaded BLAS only spins on the shared machine (a decision 1.79 s -> 0.11 s)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield

ALPHA = 0.2
RUNS = 120
N_PERM = 39  # a valid p < 0.2 then rejects at most 7/40 = 0.175


class _Recorder:
    """Wraps the rule and keeps every p-value, so one set of runs is judged at alpha and at 2 x alpha."""

    def __init__(self, rule):
        self.rule, self.p = rule, []

    def __call__(self, *a, **kw):
        v = self.rule(*a, **kw)
        self.p.append(v.p)
        return v


@pytest.fixture(scope="module")
def new_cell():
    rec = _Recorder(path_length_rule)
    c = run_cell(0.9, "exp8", "null", RUNS, 0, n_perm=N_PERM, alpha=ALPHA, rule=rec)
    return c, np.array(rec.p)


def test_new_fl_component_passes_the_checker(new_cell):
    c, _ = new_cell
    s = cell_sizes(c, ALPHA)[0]
    assert s.name.startswith("FL alone") and s.testable == RUNS
    assert s.ok, s.explain()


def test_a_rule_at_twice_alpha_fails_the_checker(new_cell):
    _, p = new_cell
    s = Size("FL at 2 x alpha", int(np.sum(p < 2 * ALPHA)), len(p), ALPHA)
    assert not s.ok, s.explain()


def test_old_permutation_fl_fails_the_checker():
    c = run_cell(0.9, "exp8", "null", 40, 0, n_perm=N_PERM, alpha=ALPHA, rule=path_length_claim)
    s = cell_sizes(c, ALPHA)[0]
    assert not s.ok, s.explain()
    assert c.fl / c.n >= 0.4


def test_sizes_and_power_run_end_to_end():
    rows = sizes(4, 0, n_perm=19, phis=(0.5,), trends=("rise60",))
    assert [r.name.split(" ")[0] for r in rows] == ["FL", "rule,", "JK", "rule,"]
    assert all(r.n == 4 and r.alpha == 0.05 for r in rows)
    # 39 draws: with 19 the smallest p is 1/20 = 0.05, never < 0.05, so power would be 0 by construction
    pw, mde = power(3, 0, phis=(0.0,), effects=(0.0, 0.6), n_perm=39)
    assert pw[-1].power == 1.0 and pw[-1].rho > 0.4 and 0 < mde[0.0] < pw[-1].rho


def test_a_cell_that_fails_its_bound_is_extended_with_fresh_seeds():
    """The two-stage rule (calibrate.pathlength.EXTEND): a failing cell runs 4 more blocks with seeds seed+1..seed+4
    and is judged on all its runs; a passing cell keeps its first count."""
    def rejects_first_block(*_a, seed: int, **_k):  # JK rejects in 5 of 20 runs of block seed 0, fewer later
        ci = (0.1, 0.2) if seed < 5 else (-0.1, 0.1)
        return SimpleNamespace(testable=True, p=0.5, effect_ci=ci, passed=ci[0] > 0)

    def never(*_a, **_k):
        return SimpleNamespace(testable=True, p=0.5, effect_ci=(-0.1, 0.1), passed=False)

    kw = dict(phis=(0.0,), trends=("exp8",), configs=("slopes",), n_perm=9, extend=True)
    bad = cells(20, 0, rule=rejects_first_block, **kw)[0]
    assert bad.n == 20 * (1 + EXTEND["cell"]) and bad.jk == 5 + 4 + 3 + 2 + 1
    assert cells(200, 0, rule=never, **kw)[0].n == 200  # 0/200: bound 0.015, no extension (0/20 would extend)
