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
