"""Library tests: Hypothesis profiles and tiny-model fixtures (seeded, built in code, fast)."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Every summary.json a test writes is strict JSON and fits docs/summary.schema.json (tests/summary_check.py).
pytest_plugins = ("summary_check", "claim_direct")

# `ci`: fewer, derandomized examples so CI is repeatable; `dev`: more examples locally.
settings.register_profile("ci", max_examples=15, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# The tests recompute every statistic (repeatability, invariance and fault tests compare fresh runs; a cached result
# would make them pass by construction). tests/test_statcache.py turns the cache on explicitly where it is the subject.
os.environ.setdefault("MECHCLAIMS_STATISTICS_CACHE", "off")

_TINY: dict[str, object] = {}


@pytest.fixture(scope="session")
def tiny():
    """``tiny(name)`` -> LoadedModel, each loaded once per session."""
    from mechclaims.model.load import load_model

    def get(name: str):
        if name not in _TINY:
            _TINY[name] = load_model(name)
        return _TINY[name]
    return get
