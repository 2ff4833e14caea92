"""The lesion-claim statistics on synthetic data with known answers, plus its stimuli loaders and figures."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import fdrcorrection

from mechclaims.datasets.lesion import (load_causal_pairs, load_masked_pairs, fill_mask, referent_names,
                                        split_by_name, split_pairs)
from mechclaims.errors import StimuliError
from mechclaims.stats.common import needs_draws, sequential_mc_p, tail_p
from mechclaims.stats.lesion import (
    direct_contributions, flip_pairs, jaccard, logit_direction, paired_neuron_ttest, random_sets, select_by_contrast,
    select_by_contribution, selection_stability, split_halves, top_k)
from mechclaims.stats.lesion_decision import Side, layer_verdict, unrelated_control


def _pairs(rng, n=40, d=60, planted_her=(0, 1, 2), planted_him=(3, 4), shift=1.5):
    base = rng.normal(size=(n, d))
    her = base + rng.normal(scale=0.5, size=(n, d))
    him = base + rng.normal(scale=0.5, size=(n, d))
    her[:, list(planted_her)] += shift
    him[:, list(planted_him)] += shift
    return her, him


# ------------------------------------------------------------------------------------------ rule (a)
def test_ttest_finds_planted_neurons_and_matches_scipy():
    rng = np.random.default_rng(0)
    her, him = _pairs(rng)
    test = paired_neuron_ttest(her, him)
    ref = stats.ttest_rel(her, him, axis=0)
    np.testing.assert_allclose(test.t, ref.statistic)
    np.testing.assert_allclose(test.q, fdrcorrection(ref.pvalue)[1])
    sel = select_by_contrast(test, 20, ('her', 'him'))
    assert set(sel["her"]) == {0, 1, 2}
    assert set(sel["him"]) == {3, 4}


def test_constant_neurons_are_untestable_not_errors():
    rng = np.random.default_rng(1)
    her, him = _pairs(rng, d=30)
    her[:, 10] = him[:, 10] = 0.0           # dead neuron: NaN t in scipy
    her[:, 11] = him[:, 11] + 2.0           # constant shift: zero-variance difference, +inf t
    test = paired_neuron_ttest(her, him)
    assert test.n_untestable == 2
    assert not test.reject[[10, 11]].any() and np.isnan(test.q[[10, 11]]).all()
    # The FDR family is the testable neurons only.
    ok = test.testable
    np.testing.assert_allclose(test.q[ok], fdrcorrection(stats.ttest_rel(her[:, ok], him[:, ok]).pvalue)[1])
    assert 10 not in select_by_contrast(test, 20, ('her', 'him'))["her"] and 11 not in select_by_contrast(test, 20, ('her', 'him'))["her"]


def test_all_constant_gives_empty_selection():
    x = np.ones((5, 4))
    test = paired_neuron_ttest(x, x)
    assert test.n_untestable == 4 and not test.reject.any()
    assert all(len(v) == 0 for v in select_by_contrast(test, 20, ('her', 'him')).values())


def test_ttest_rejects_bad_shapes():
    with pytest.raises(ValueError):
        paired_neuron_ttest(np.ones((5, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError):
        paired_neuron_ttest(np.ones((2, 3)), np.ones((2, 3)))


def test_top_k_positive_eligible_and_stable():
    s = np.array([3.0, -1.0, 3.0, np.nan, 0.5, 0.0])
    assert top_k(s, 2).tolist() == [0, 2]
    assert top_k(s, 10).tolist() == [0, 2, 4]
    assert top_k(s, 10, eligible=[False, True, True, True, True, True]).tolist() == [2, 4]
    assert top_k(s, 0).size == 0


# ------------------------------------------------------------------------------------------ rule (b)
def test_direct_contributions_sum_to_the_direct_logit_effect():
    rng = np.random.default_rng(2)
    n, d_mlp, d_model = 7, 12, 9
    a, w = rng.normal(size=(n, d_mlp)), rng.normal(size=(d_mlp, d_model))
    ut, uf, g = rng.normal(size=d_model), rng.normal(size=d_model), rng.uniform(0.5, 2, d_model)
    inv = rng.uniform(0.5, 2, n)
    for center in (False, True):
        v = logit_direction(ut, uf, g, center=center)
        c = direct_contributions(a, w, v, inv)
        out = a @ w                                        # what the MLP writes
        if center:
            out = out - out.mean(axis=1, keepdims=True)    # LayerNorm subtracts the feature mean
        expected = (out * g) @ (ut - uf) * inv
        np.testing.assert_allclose(c.sum(axis=1), expected, rtol=1e-10)


def test_contribution_rule_sees_the_sign_the_contrast_rule_misses():
    """A neuron more active on her prompts whose output pushes toward ' him' is a "her neuron" by rule (a),
    but rule (b) does not select it for her: ablating it would *raise* her-minus-him."""
    rng = np.random.default_rng(3)
    n, d_mlp, d_model = 50, 8, 6
    v_her = np.zeros(d_model)
    v_her[0] = 1.0
    w = np.zeros((d_mlp, d_model))
    w[0, 0], w[1, 0] = +1.0, -1.0                          # neuron 0 pushes her, neuron 1 pushes him
    her = rng.normal(0, 0.3, (n, d_mlp)) + 1.0
    him = rng.normal(0, 0.3, (n, d_mlp)) + 1.0
    her[:, [0, 1]] += 2.0                                  # both more active on her prompts
    assert {0, 1} <= set(select_by_contrast(paired_neuron_ttest(her, him), 20, ('her', 'him'))["her"])
    contrib = {"her": direct_contributions(her, w, v_her), "him": direct_contributions(him, w, -v_her)}
    sel = select_by_contribution(contrib, k=3)
    assert 0 in sel["her"] and 1 not in sel["her"]
    assert 1 in sel["him"]


def test_direct_contributions_checks_orientation():
    with pytest.raises(ValueError, match="transpose"):
        direct_contributions(np.ones((2, 3)), np.ones((4, 3)), np.ones(3))


# ------------------------------------------------------------------------- controls and stability
def test_flip_pairs_swaps_rows():
    a, b = np.arange(6).reshape(3, 2), -np.arange(6).reshape(3, 2)
    fa, fb = flip_pairs(a, b, np.array([True, False, True]))
    assert fa[0].tolist() == b[0].tolist() and fa[1].tolist() == a[1].tolist() and fb[2].tolist() == a[2].tolist()


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=10), st.lists(st.integers(0, 30), max_size=10))
def test_jaccard_properties(a, b):
    j = jaccard(a, b)
    if not a and not b:
        assert np.isnan(j)
    else:
        assert 0 <= j <= 1 and j == jaccard(b, a)
    if a:
        assert jaccard(a, a) == 1.0


def test_split_halves_and_stability():
    h1, h2 = split_halves(11, seed=0)
    assert len(h1) + len(h2) == 11 and not set(h1) & set(h2)
    stab = selection_stability({"her": [1, 2], "him": [3]}, {"her": [2, 5], "him": [3]})
    assert stab == pytest.approx((1 / 3 + 1) / 2)
    assert np.isnan(selection_stability({"her": [], "him": []}, {"her": [], "him": []}))


def test_random_sets_are_size_matched_without_replacement():
    sets = random_sets(50, 7, 30, np.random.default_rng(0))
    assert sets.shape == (30, 7)
    assert all(len(set(r)) == 7 for r in sets.tolist())


# ---------------------------------------------------------------------------------- p-values
def test_sequential_p_known_values():
    null = np.arange(1, 101, dtype=float)                  # observed 0 is below every draw
    assert sequential_mc_p(0.0, null, h=10, tail="less") == (pytest.approx(1 / 101), 100)
    p, used = sequential_mc_p(1000.0, null, h=10, tail="less")  # every draw is as extreme: stop at the 10th
    assert (p, used) == (1.0, 10)
    assert not needs_draws([50.0], null, n_max=100)        # both tails have >= 10 draws beyond 50
    assert needs_draws([0.0], null[:50], n_max=100)        # nothing below 0 yet
    assert not needs_draws([0.0], null, n_max=100)         # n_max reached


def test_tail_p_is_valid_under_the_null_and_reaches_small_values():
    """Observed exchangeable with normal draws: P(p <= alpha) <= alpha (+ MC error), including alpha / 30, which
    200 draws could not reach by counting alone."""
    rng = np.random.default_rng(4)
    ps = np.array([tail_p(rng.normal(), rng.normal(size=200), "less")[0] for _ in range(4000)])
    for alpha in (0.05 / 30, 0.05, 0.2):
        assert (ps <= alpha).mean() <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / 4000)
    assert tail_p(-6.0, rng.normal(size=200), "less")[0] < 0.05 / 30


def test_tail_p_falls_back_when_draws_are_not_normal():
    rng = np.random.default_rng(5)
    heavy = rng.standard_t(1, size=200)                    # Cauchy draws: Shapiro-Wilk rejects normality
    p, how = tail_p(-50.0, heavy, "less")
    assert how.startswith("empirical") and p >= 1 / 201


# -------------------------------------------------------------------------------------- verdicts
def _side(rng, name, shift, *, n=30, n_null=200, selected=20, above=True):
    null = rng.normal(0, 0.1, n_null)
    return Side(name, above, selected, rng.normal(shift, 0.05, n), rng.normal(shift, 0.05, n), null,
                rng.normal(0, 0.05, n), rng.normal(0, 0.05, n_null))


def test_planted_layer_is_supported_and_null_is_not():
    rng = np.random.default_rng(6)
    v = layer_verdict({s: _side(rng, s, -1.0) for s in ("her", "him")}, claim="l", alpha=0.05 / 30, sesoi=0.1)
    assert v.passed and v.outcome == "supported" and v.details["her.normal_tail"] == 1.0
    v0 = layer_verdict({s: _side(rng, s, 0.0) for s in ("her", "him")}, claim="l", alpha=0.05 / 30, sesoi=0.1)
    assert not v0.passed and v0.outcome == "refuted"  # the excess over random sets is bounded inside +-0.1


def test_one_side_alone_does_not_pass():
    rng = np.random.default_rng(7)
    v = layer_verdict({"her": _side(rng, "her", -1.0), "him": _side(rng, "him", 0.0)}, claim="l", alpha=0.05,
                      sesoi=0.1)
    assert not v.passed and v.outcome == "refuted"  # the him side's equivalence refutes the conjunction


def test_side_at_chance_or_nothing_selected_is_inconclusive():
    rng = np.random.default_rng(8)
    v = layer_verdict({"her": _side(rng, "her", -1.0), "him": _side(rng, "him", -1.0, above=False)}, claim="l",
                      alpha=0.05, sesoi=0.1)
    assert not v.passed and v.outcome == "inconclusive" and "at chance" in v.reason
    v = layer_verdict({"her": _side(rng, "her", -1.0), "him": _side(rng, "him", -1.0, selected=0)}, claim="l",
                      alpha=0.05, sesoi=0.1)
    assert v.outcome == "inconclusive" and "no neuron selected" in v.reason
    ctl = layer_verdict({"her": _side(rng, "her", -1.0), "him": _side(rng, "him", 0.0, selected=0)}, claim="c",
                        alpha=0.05, sesoi=0.1, role="control")
    assert ctl.outcome == "failed"  # a control that selects nothing fails its rule: it cannot vouch, nor confound


def test_unrelated_pair_control():
    rng = np.random.default_rng(9)
    sides = {s: _side(rng, s, -1.0) for s in ("her", "him")}
    assert unrelated_control(sides, claim="u", alpha=0.05).outcome == "failed"
    sides["her"].delta_unrelated = sides["her"].delta_unrelated + 1.0
    assert unrelated_control(sides, claim="u", alpha=0.05).outcome == "passed"


# -------------------------------------------------------------------------------------- stimuli
def test_shipped_fixtures_are_valid():
    causal, masked = load_causal_pairs(), load_masked_pairs()
    assert len(causal) >= 100 and len(masked) >= 50
    assert all(fill_mask(p.her, "her").count("[MASK]") == 0 for p in masked)
    tr2, te2 = split_by_name(causal, 0.4, seed=0)
    assert not {n for p in tr2 for n in referent_names(p)} & {n for p in te2 for n in referent_names(p)}
    tr, te = split_pairs(causal, 0.4, seed=0)
    assert len(te) == round(0.4 * len(causal)) and not {p.id for p in tr} & {p.id for p in te}
    assert [p.id for p in split_pairs(causal, 0.4, seed=0)[1]] == [p.id for p in te]


@pytest.mark.parametrize("rows, loader, match", [
    ([{"id": "a", "her": "x", "him": "y"}, {"id": "a", "her": "z", "him": "w"}], load_causal_pairs, "unique"),
    ([{"id": "a", "her": "Mary fell, so I helped ", "him": "John fell, so I helped"}], load_causal_pairs,
     "whitespace"),
    ([{"id": "a", "her": "I saw [MASK].", "him": "I saw [MASK] [MASK]."}], load_masked_pairs, "exactly one"),
    ([{"id": "a", "her": "same", "him": "same"}], load_causal_pairs, "same text"),
    ([{"id": "a", "her": "I saw x[MASK].", "him": "I saw [MASK]."}], load_masked_pairs, "stand alone"),
])
def test_bad_stimuli_name_the_problem(tmp_path, rows, loader, match):
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(StimuliError, match=match):
        loader(p, min_pairs=1)


def test_too_few_pairs(tmp_path):
    p = tmp_path / "few.jsonl"
    p.write_text(json.dumps({"id": "a", "her": "Mary fell, so I helped", "him": "John fell, so I helped"}))
    with pytest.raises(StimuliError, match="at least"):
        load_causal_pairs(p)


# -------------------------------------------------------------------------------------- figures
def test_figures_are_written(tmp_path):
    from mechclaims.plots.lesion import plot_clean_vs_ablated, plot_effect_by_layer, plot_neuron_scores

    rng = np.random.default_rng(10)
    r = {k: rng.normal(size=5) for k in ("effect", "null_q05", "null_q50", "null_q95", "mean_effect")}
    r["passed"] = np.array([True, False, False, True, False])
    assert plot_effect_by_layer(range(5), {"contrast": r, "contribution": r}, tmp_path / "a.png").exists()
    c = {"her": rng.normal(size=9), "him": rng.normal(size=7)}
    assert plot_clean_vs_ablated(c, {s: v - 1 for s, v in c.items()}, tmp_path / "b.png").exists()
    sel = {"contrast": {"her": [1, 2], "him": [3]}, "contribution": {"her": [4], "him": [5]}}
    t = rng.normal(size=20)
    t[0] = np.nan
    assert plot_neuron_scores(t, {"her": rng.normal(size=20), "him": rng.normal(size=20)}, sel,
                              tmp_path / "c.png").exists()
