"""Unit tests of the lesion decision: selectors, the two nulls, the outcome table and the paired precondition.

Each test names the defect of issue 27 that it guards against and failed (or could not be written) on main (40a27e7).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mechclaims.calibrate import lesion_data as LD
from mechclaims.stats import common
from mechclaims.stats import lesion as L
from mechclaims.stats.common import sequential_mc_p
from mechclaims.stats.lesion_null import SideResult, layer_decision, random_baseline, selection_null, side_result
from mechclaims.stats.lesion_pairflip import flip_null, pair_flip_side
from mechclaims.stats.lesion_precondition import paired_precondition

A = 0.05 / 30


# ------------------------------------------------------------------------------------------------ selectors
@pytest.mark.parametrize("rule", ["contrast", "contribution"])
def test_selectors_are_the_claims_rules_and_batch_matches(rule):
    """``select(None)`` is exactly what claims/test_lesion.py's ``_select`` computes; a swap is ``flip_pairs`` then
    the rule; ``batch`` returns what ``__call__`` returns for every swap."""
    lay = LD.make_layer(np.random.default_rng(3), {"him": 3.0}, n_planted={"him": 40})
    sel = lay.selector(rule)
    rng = np.random.default_rng(4)
    swaps = rng.random((40, LD.N_TRAIN)) < 0.5
    for w in [None, *swaps[:5]]:
        her, him = (lay.her, lay.him) if w is None else L.flip_pairs(lay.her, lay.him, w)
        ih, im = (lay.inv_her, lay.inv_him) if w is None else L.flip_pairs(lay.inv_her, lay.inv_him, w)
        if rule == "contrast":
            ref = L.select_by_contrast(L.paired_neuron_ttest(her, him), LD.K, sides=("her", "him"))
        else:
            ref = L.select_by_contribution({"her": L.direct_contributions(her, lay.v[:, None], np.ones(1), ih),
                                            "him": L.direct_contributions(him, lay.v[:, None], -np.ones(1), im)}, LD.K)
        got = sel(w)
        assert all(np.array_equal(got[s], ref[s]) for s in ref)
    size = {"her": 3, "him": 7}
    for w, b in zip(swaps, sel.batch(swaps, size)):
        one = sel(w, size)
        assert all(np.array_equal(np.sort(one[s]), np.sort(b[s])) and len(b[s]) == size[s] for s in size)


# ------------------------------------------------------------------------------------- exchangeability (defect 1)
def _pit(x: float, null: np.ndarray) -> float:
    return float((np.sum(null < x) + 0.5 * np.sum(null == x)) / null.size)


def test_null_sets_are_exchangeable_with_the_selected_set_where_random_sets_are_not():
    """Label-free layers (global null), rule ``contribution``: the selected set's effect, placed in its own
    permute-then-select null, has a uniform rank (its spread around the null's centre equals the null's own); placed
    among random size-matched sets it lands in the tails far more often than 10% (main's null; defect 1)."""
    pit_sel, pit_rand, dev, sd_rand = [], [], [], []
    for i in range(60):
        lay = LD.make_layer(np.random.default_rng((21, i)))
        sel, eff = lay.selector("contribution"), lay.effects_fn()
        obs = sel(None)
        delta = eff([{"her": obs["her"]}])["her"][0]
        nd = selection_null(sel, eff, {"her": delta}, n_pairs=LD.N_TRAIN, n_max=199, h=10 ** 6, seed=i,
                            select_batch=sel.batch, observed_sets=obs)
        m = nd.draws["her"].mean(axis=1)
        rnd = eff([{"her": x} for x in L.random_sets(LD.D, LD.K, 199, np.random.default_rng(i))])["her"].mean(axis=1)
        pit_sel.append(_pit(delta.mean(), m)), pit_rand.append(_pit(delta.mean(), rnd))
        dev.append(delta.mean() - rnd.mean()), sd_rand.append(rnd.std(ddof=1))
    tails = lambda p: np.mean((np.asarray(p) < 0.05) | (np.asarray(p) > 0.95))  # noqa: E731
    assert tails(pit_sel) <= 0.2, tails(pit_sel)  # 10% expected; ties push ranks inward
    assert tails(pit_rand) >= 0.4, tails(pit_rand)
    assert np.std(dev) / np.mean(sd_rand) > 1.3  # the selected set's spread exceeds the random-set null's


def test_pair_flip_null_is_centred_and_scaled_on_label_free_sets():
    """On label-free layers the pair contrast of the selected set (either rule) has a t-statistic with mean ~0, SD ~1."""
    for rule in ("contribution", "contrast"):
        t = []
        for i in range(150):
            lay = LD.make_layer(np.random.default_rng((22, i)), {"him": 3.0}, n_planted={"him": 40})
            idx = lay.selector(rule)(None)["her"]
            if len(idx):
                c = np.add(*lay.pair_change("her", idx))
                t.append(c.mean() / (c.std(ddof=1) / np.sqrt(c.size)))
        assert len(t) > 30 and abs(np.mean(t)) < 0.35 and 0.75 < np.std(t) < 1.3, (rule, len(t), np.mean(t), np.std(t))


# --------------------------------------------------------------------------------------- one p method (defect 2)
def test_p_is_sequential_mc_only_never_a_normal_tail(monkeypatch):
    """No Shapiro switch, no normal tail: the side's p is Besag-Clifford on the draws whatever their shape; an observed
    value beyond every draw gets 1/(N+1), not an extrapolated tail."""
    monkeypatch.setattr(stats, "shapiro", lambda *a, **k: (_ for _ in ()).throw(AssertionError("shapiro called")))
    rng = np.random.default_rng(0)
    for null in (rng.normal(size=600), rng.standard_t(2, 600), np.r_[rng.normal(-3, 1, 300), rng.normal(3, 1, 300)]):
        delta = np.full(20, null.min() - 1.0)
        r = side_result("her", delta, null, alpha=A, sesoi=0.1)
        assert r.p == pytest.approx(sequential_mc_p(delta.mean(), null, 10, "less")[0]) == pytest.approx(1 / 601)
        assert not r.significant and not r.testable  # main's floor 1/601 passed 0.05/30: here it cannot decide
    r = side_result("her", delta, np.r_[null, null], alpha=A, sesoi=0.1)  # 1,200 draws: 1/1201 < alpha / 2
    assert r.p == pytest.approx(1 / 1201) and r.significant
    c = -np.abs(rng.normal(size=48)) - 1.0
    r = pair_flip_side("her", c, np.zeros(48), alpha=A, sesoi=0.1, seed=1)
    assert r.p == pytest.approx(1 / 10_000) and r.significant


def test_outcomes_agree_at_two_draw_budgets_and_first_draws_are_shared():
    """The draw budget never decides: with n_max >= min_draws the same data give the same outcome at n_max and 2 n_max,
    and the first draws are the same whatever n_max."""
    assert common.min_draws(30, 0.05) == 1199
    rng = np.random.default_rng(5)
    for shift in (0.0, -0.3, -1.0, 0.4):
        c = rng.normal(shift, 1.0, 48)
        a = pair_flip_side("her", c, np.zeros(48), alpha=A, sesoi=0.1, seed=7, n_max=9_999)
        b = pair_flip_side("her", c, np.zeros(48), alpha=A, sesoi=0.1, seed=7, n_max=19_999)
        assert a.outcome == b.outcome, shift
    assert np.array_equal(flip_null(c, n_max=3000, seed=2, h=10 ** 9)[:3000], flip_null(c, n_max=6000, seed=2,
                                                                                          h=10 ** 9)[:3000])


def test_selection_null_stores_ties_exactly_and_ignores_other_sides():
    """A draw whose set is the observed set is an exact tie, never re-evaluated (float round-off would break every tie
    the same way), and a side's draws do not depend on which other sides are in ``observed``."""
    lay = LD.make_layer(np.random.default_rng(8))
    sel, eff = lay.selector("contribution"), lay.effects_fn()
    obs = sel(None)
    d = {s: eff([{s: obs[s]}])[s][0] for s in LD.SIDES}
    one = selection_null(sel, eff, {"her": d["her"]}, n_pairs=LD.N_TRAIN, n_max=300, seed=1, select_batch=sel.batch)
    both = selection_null(sel, eff, d, n_pairs=LD.N_TRAIN, n_max=300, seed=1, select_batch=sel.batch)
    assert np.array_equal(one.draws["her"], both.draws["her"])

    def off_by_roundoff(sets):  # what a re-evaluation in another batch would give: the same set, 1 ulp away
        return {s: np.array([d[s] - 1e-15 for _ in sets]) for s in sets[0]}
    tied = selection_null(lambda w, size=None: obs, off_by_roundoff, {"her": d["her"]}, n_pairs=LD.N_TRAIN, n_max=50,
                          seed=1)
    assert tied.same["her"] == len(tied.draws["her"]) > 0 and np.all(tied.draws["her"] == d["her"])
    r = side_result("her", d["her"], tied.draws["her"], alpha=0.05, sesoi=0.1)
    assert r.p == 1.0 and r.p_opposite == 1.0


# ------------------------------------------------------------------------------------- outcome table (defect 4)
def _side(p=1.0, po=1.0, eff=-0.5, eq=False, testable=True, name="her") -> SideResult:
    sig = testable and eff < 0 and p <= A
    opp = testable and po <= A
    out = ("inconclusive" if not testable else "negligible" if sig and eq else "supported" if sig
           else "refuted" if opp or eq else "inconclusive")
    return SideResult(name, out, testable, eff, p, po, eff, 0.01, 0.0, eq, sig, opp, 1000, 20, 48, 0.0, 1.0)


def test_side_outcome_table():
    rng = np.random.default_rng(9)
    big = rng.normal(-1.0, 0.3, 48)
    assert pair_flip_side("her", big, big, alpha=A, sesoi=0.1, seed=1).outcome == "supported"
    small = rng.normal(-0.03, 0.02, 48)  # significant, inside +-0.1: L13 on smollm2 (defect 4)
    r = pair_flip_side("her", small, small, alpha=A, sesoi=0.1, seed=1)
    assert (r.outcome, r.significant, r.equivalent) == ("negligible", True, True)
    assert pair_flip_side("her", -big, -big, alpha=A, sesoi=0.1, seed=1).outcome == "refuted"  # opposite direction
    zero = rng.normal(0.0, 0.02, 48)
    assert pair_flip_side("her", zero, -zero[::-1], alpha=A, sesoi=0.1, seed=1).outcome == "refuted"  # TOST
    noisy = rng.normal(0.0, 3.0, 48)
    assert pair_flip_side("her", noisy, noisy, alpha=A, sesoi=0.1, seed=1).outcome == "inconclusive"
    assert pair_flip_side("her", big, big, alpha=A, sesoi=0.1, n_selected=0).outcome == "inconclusive"
    assert pair_flip_side("her", big, big, alpha=A, sesoi=0.1, precondition=False).outcome == "inconclusive"


@pytest.mark.parametrize("her, him, outcome, flags", [
    (dict(p=1e-4), dict(p=1e-4), "supported", (True, True, False, False)),
    (dict(p=1e-4, eq=True), dict(p=1e-4), "negligible", (False, True, False, True)),
    (dict(p=1e-4), dict(po=1e-4, eff=0.5), "refuted", (False, True, True, False)),
    (dict(p=1e-4), dict(eq=True), "refuted", (False, True, True, False)),
    (dict(eq=True), dict(testable=False), "refuted", (False, True, True, False)),
    (dict(p=1e-4), dict(p=0.2), "inconclusive", (False, True, False, False)),
    (dict(p=1e-4), dict(testable=False), "inconclusive", (False, False, False, False)),
    (dict(p=1e-4, eff=0.2), dict(p=1e-4), "inconclusive", (False, True, False, False)),
])
def test_layer_combination_table(her, him, outcome, flags):
    d = layer_decision({"her": _side(**her), "him": _side(name="him", **him)})
    assert d.outcome == outcome and (d.passed, d.testable, d.absent, d.negligible) == flags
    assert layer_decision({"her": _side(p=1e-4), "him": _side(p=1e-4)}, precondition=False).outcome == "inconclusive"


# ------------------------------------------------------------------------------------ precondition (defect 3)
def test_paired_sign_test_sees_the_task_through_a_prior():
    """smollm2-135m's pattern: margins her +1.35, him +0.06 (a 0.65-logit prior for " her"). Per-side accuracy drops
    the him side (main's precondition); the paired sign test passes and reports the prior."""
    rng = np.random.default_rng(10)
    shared = rng.normal(size=48)
    her = 1.35 + 0.8 * (0.6 * shared + 0.8 * rng.normal(size=48))
    him = 0.06 + 0.8 * (0.6 * shared + 0.8 * rng.normal(size=48))
    old_him = stats.binomtest(int(np.sum(him > 0)), 48, 0.5, alternative="greater").pvalue
    assert old_him >= 0.05  # main: "the model is at chance on the held-out him prompts"
    pre = paired_precondition(her, him)
    assert pre["passed"] == 1.0 and pre["p"] < 1e-4
    assert pre["prior_her"] == pytest.approx(np.mean((her - him) / 2)) and 0.4 < pre["prior_her"] < 0.9
    assert pre["contrast_ci_low"] < pre["contrast_mean"] < pre["contrast_ci_high"]
    no_task = paired_precondition(her - 1.35, -(her - 1.35) + rng.normal(0, 0.1, 48))  # a prior only: c ~ 0
    assert no_task["passed"] == 0.0


def test_random_sets_are_a_reported_baseline():
    rng = np.random.default_rng(11)
    out = random_baseline(-2.0, rng.normal(0, 1, 500), rng.normal(0, 3, 500))
    assert out["random_z"] == pytest.approx(-2.0, abs=0.2) and out["sd_ratio_selection_to_random"] > 2
