"""The outcome model: four outcomes, gated on controls; controls that could not run never vouch for a claim.

Claim under test: a claim whose rule passes is ``supported`` only when every control fails its rule; a passing
control makes it ``confounded``; a control with a non-finite statistic makes it ``inconclusive``; a failed rule is
``refuted`` only with evidence of absence. Falsified by any case below that maps to another outcome.
"""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mechclaims.verdict.outcome import CONTROL_OUTCOMES, OUTCOMES, aggregate, decide
from mechclaims.verdict.verdict import Verdict


def _v(passed=True, stat=1.0, p=0.01, role="claim", **kw) -> Verdict:
    return Verdict(claim="c", statistic_name="s", statistic=stat, rule="r", passed=passed, p=p, role=role, **kw)


def test_supported_only_when_every_control_fails():
    assert _v().gate({"a": _v(False, role="control"), "b": _v(False, role="control")}).outcome == "supported"
    assert _v().gate({"a": _v(False, role="control"), "b": _v(True, role="control")}).outcome == "confounded"


def test_nan_control_is_never_a_failing_control():
    """The silent-wrong case: a control whose statistic is NaN fails its rule, yet proves nothing."""
    nan_ctl = _v(True, stat=math.nan, role="control")
    assert nan_ctl.outcome == "inconclusive" and not nan_ctl.testable
    assert _v().gate({"a": nan_ctl}).outcome == "inconclusive"


def test_refuted_needs_evidence_of_absence():
    assert _v(False).outcome == "inconclusive"
    assert _v(False, absent=True, absence="TOST p=0.01").outcome == "refuted"
    assert _v(True, stat=math.nan).outcome == "inconclusive"  # non-finite: untestable, never refuted
    assert _v(False, testable=False, absent=True).outcome == "inconclusive"


@given(st.booleans(), st.booleans(), st.booleans(), st.lists(st.sampled_from(CONTROL_OUTCOMES), max_size=4))
def test_decide_is_total_and_never_supports_with_a_passing_control(passed, testable, absent, ctl):
    o = decide(passed, testable, absent, {str(i): c for i, c in enumerate(ctl)})
    assert o in OUTCOMES
    if o == "supported":
        assert passed and testable and all(c == "failed" for c in ctl)
    if "passed" in ctl and passed and testable:
        assert o == "confounded"


@pytest.mark.parametrize("layers, mode, want", [
    (["supported"] * 3, "all", "supported"), (["supported", "refuted"], "all", "refuted"),
    (["supported", "inconclusive"], "all", "inconclusive"), (["supported", "confounded"], "all", "confounded"),
    (["refuted", "supported"], "any", "supported"), (["refuted"] * 3, "any", "refuted"),
    (["refuted", "confounded"], "any", "confounded"), (["refuted", "inconclusive"], "any", "inconclusive"),
    ([], "all", "inconclusive"),
])
def test_aggregate(layers, mode, want):
    assert aggregate(layers, mode) == want


def test_record_carries_outcome_and_controls():
    rec = _v().gate({"shuffled": _v(True, role="control")}).to_record()
    assert rec["outcome"] == "confounded" and rec["controls"]["shuffled"]["outcome"] == "passed"
    assert "control shuffled: passed" in _v().gate({"shuffled": _v(True, role="control")}).explain()


# ---- round three: negligible, and gating at every level -------------------------------------------------------
def test_significant_but_inside_the_sesoi_is_negligible_never_supported_nor_refuted():
    from mechclaims.verdict.outcome import decide

    assert decide(passed=True, testable=True, absent=True, controls={}) == "negligible"
    assert decide(passed=True, testable=True, absent=True, controls={"c": "passed"}) == "confounded"
    assert decide(passed=False, testable=True, absent=True, controls={}) == "refuted"


def test_a_model_level_verdict_is_gated_on_its_own_controls():
    """Before round three a model verdict with an aggregate returned its layers' aggregate and ignored its own
    controls: 'supported; controls: X passed' could be written."""
    from mechclaims.verdict.verdict import Verdict

    ctl = Verdict(claim="c", statistic_name="s", statistic=1.0, rule="r", passed=True, role="control")
    v = Verdict(claim="m", statistic_name="n", statistic=2.0, rule="r", passed=True, aggregate="all",
                layers={0: "supported", 1: "supported"}).gate({"c": ctl})
    assert v.outcome == "confounded"
    untestable = Verdict(claim="c", statistic_name="s", statistic=float("nan"), rule="r", passed=False,
                         role="control")
    w = Verdict(claim="m", statistic_name="n", statistic=2.0, rule="r", passed=True, aggregate="all",
                layers={0: "supported"}).gate({"c": untestable})
    assert w.outcome == "inconclusive"


def test_any_with_a_confounded_layer_is_never_supported():
    from mechclaims.verdict.outcome import aggregate

    assert aggregate(["supported", "confounded", "refuted"], "any") == "confounded"
    assert aggregate(["supported", "refuted"], "any") == "supported"
    assert aggregate(["negligible", "refuted"], "any") == "negligible"
    assert aggregate(["supported", "negligible"], "all") == "negligible"


def test_across_layers_gates_on_each_control_summarised_over_layers():
    from mechclaims.verdict.layers import across_layers
    from mechclaims.verdict.verdict import Verdict

    def layer(passed: bool, ctl_passes: bool) -> Verdict:
        c = Verdict(claim="ctl", statistic_name="s", statistic=0.0, rule="r", passed=ctl_passes, role="control")
        return Verdict(claim="x", statistic_name="s", statistic=0.0, rule="r", passed=passed).gate({"ctl": c})

    per = {0: layer(True, False), 1: layer(False, True)}  # the control passes only where the claim does not
    v = across_layers("x", per, "any", ["ctl"])
    assert per[0].outcome == "supported" and v.controls["ctl"].passed and v.outcome == "confounded"


# --- round three: a robustness control (GED's gamma instability) makes the outcome inconclusive, never confounded ---

def test_a_passing_robustness_control_is_inconclusive_not_confounded():
    from mechclaims.verdict.outcome import decide

    assert decide(True, True, False, {"gamma": "passed"}, robustness=["gamma"]) == "inconclusive"
    assert decide(False, True, True, {"gamma": "passed"}, robustness=["gamma"]) == "inconclusive"  # nor refuted
    assert decide(True, True, False, {"gamma": "failed"}, robustness=["gamma"]) == "supported"
    assert decide(True, True, False, {"gamma": "passed", "rw": "passed"}, robustness=["gamma"]) == "confounded"
    assert decide(True, True, False, {"gamma": "passed"}) == "confounded"  # as a confound control it would be


def test_ged_gamma_instability_is_a_robustness_control():
    """The claim's own control code marks it: before round three a gamma-unstable layer came out confounded."""
    import numpy as np

    from mechclaims.stats import ged_ctl
    from mechclaims.verdict import Verdict

    changed = ged_ctl.Verdict(claim="ged_gamma_instability", statistic_name="n", statistic=1.0, rule="-",
                              passed=True, role="control", kind="robustness")
    v = Verdict(claim="ged_heldout_specific", statistic_name="x", statistic=np.float64(1.0), rule="-", passed=True)
    assert v.gate({"ged_gamma_instability": changed}).outcome == "inconclusive"
    src = open(ged_ctl.__file__).read()
    assert 'kind="robustness"' in src.split("def gamma_control")[1].split("def ")[0]


def test_all_of_passes_only_when_every_part_passes():
    from mechclaims.verdict.joint import all_of

    def part(p, passed, absent=False, effect=0.3):
        return Verdict(claim="c", statistic_name="p", statistic=p, p=p, rule="r", passed=passed, effect=effect,
                       effect_name="e", absent=absent, absence="shown" if absent else "")

    j = all_of("c", {"a": part(0.001, True), "b": part(0.2, False, effect=0.1)})
    assert not j.passed and j.p == 0.2 and j.effect == 0.1 and j.outcome != "supported"
    assert all_of("c", {"a": part(0.001, True), "b": part(0.002, True)}).outcome == "supported"
    assert all_of("c", {"a": part(0.001, True), "b": part(0.9, False, absent=True)}).absent
    one = part(0.01, True)
    assert all_of("c", {"a": one}) is one
