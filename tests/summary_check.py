"""Every summary.json a test writes is strict JSON and fits docs/summary.schema.json (a pytest plugin of the tests).

Registered in tests/conftest.py (``pytest_plugins``). After each test that used ``tmp_path``, every ``summary.json``
under it is parsed with ``json.loads`` refusing the ``NaN``/``Infinity`` tokens that ``JSON.parse`` and other
strict parsers reject, and validated against the schema with ``jsonschema`` (Draft 2020-12) when it is installed
(it is in the ``dev`` extra); a store unit test's stand-in without a ``run`` key is only parsed. Falsified by: any summary a run writes that a strict reader cannot read.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "docs" / "summary.schema.json"


def _reject(token: str) -> Any:
    raise ValueError(f"bare {token} token: not JSON (RFC 8259)")


def strict_load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject)


def check_summary(path: Path) -> dict:
    """Parse ``path`` strictly and validate it against the schema; returns the parsed summary."""
    try:
        data = strict_load(path)
    except ValueError as e:
        raise AssertionError(f"{path} is not strict JSON: {e}") from None
    if not (isinstance(data, dict) and "run" in data):
        return data  # a store unit test's stand-in ({"records": [1]}), not a run's summary: strict JSON is enough
    try:
        import jsonschema
    except ImportError:  # the dev extra installs it; without it the strict parse alone is checked
        return data
    errors = sorted(jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).iter_errors(data),
                    key=lambda e: list(e.absolute_path))
    assert not errors, f"{path} does not fit {SCHEMA.name}:\n" + "\n".join(
        f"  {e.json_path}: {e.message[:300]}" for e in errors[:10])
    return data


@pytest.fixture(autouse=True)
def _summaries_are_strict_json(request: pytest.FixtureRequest):
    # Taken before the test: tmp_path is then set up first and torn down after this check.
    tmp = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if tmp is None:
        return
    seen = set()
    for p in tmp.rglob("summary.json"):
        real = p.resolve()
        if real in seen or not real.is_file():
            continue
        seen.add(real)
        check_summary(real)
