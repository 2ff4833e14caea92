"""summary.json is strict JSON with a published schema.

Claim under test: a run's summary parses with a strict parser (no ``NaN``/``Infinity`` tokens, which
``JSON.parse`` rejects: a smollm2-135m run wrote 518 of them), every non-finite value is ``null`` with its JSON
Pointer and original value in the top-level ``nonfinite`` map, :func:`mechclaims.store.runs.loads` puts the values
back, and the schema shipped in the wheel is the one published in docs/. Falsified by: a bare NaN in the text, a
null without its ``nonfinite`` entry, or a summary the schema rejects.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from summary_check import ROOT, check_summary, strict_load


def _summary(**extra) -> dict:
    verdict = {"claim": "c", "statistic_name": "margin", "statistic": float("nan"), "rule": "margin > 0",
               "passed": False, "p": float("inf"), "effect": float("-inf"), "effect_ci": [float("nan"), 1.0],
               "outcome": "inconclusive", "role": "claim", "details": {"a/b": float("nan"), "x~y": 2.0},
               "controls": {}, "layers": {"0": "inconclusive"}}
    return {"records": [{"test_id": "t.py::test_c[m]", "claim": "c", "outcome": "inconclusive",
                         "test_outcome": "passed", "verdicts": [verdict]}],
            "outcomes": [], "interrupted": False, "complete": True, "reason": "",
            "run": {"id": "r", "dir": "/tmp/r"}, **extra}


def test_nonfinite_values_are_null_with_their_pointer(tmp_path):
    from mechclaims.store.runs import dumps, loads

    text = dumps(_summary())
    assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text.replace('"Infinity"', "").replace(
        '"-Infinity"', "")
    (tmp_path / "summary.json").write_text(text)
    data = check_summary(tmp_path / "summary.json")
    v = data["records"][0]["verdicts"][0]
    assert v["statistic"] is None and v["p"] is None and v["effect"] is None and v["effect_ci"] == [None, 1.0]
    assert data["nonfinite"] == {
        "/records/0/verdicts/0/statistic": "NaN", "/records/0/verdicts/0/p": "Infinity",
        "/records/0/verdicts/0/effect": "-Infinity", "/records/0/verdicts/0/effect_ci/0": "NaN",
        "/records/0/verdicts/0/details/a~1b": "NaN"}
    back = loads(text, strict=True)["records"][0]["verdicts"][0]
    assert math.isnan(back["statistic"]) and back["p"] == math.inf and back["effect"] == -math.inf
    assert math.isnan(back["details"]["a/b"]) and back["details"]["x~y"] == 2.0


def test_finite_summary_has_no_nonfinite_map():
    from mechclaims.store.runs import dumps

    s = _summary()
    s["records"][0]["verdicts"] = []
    assert "nonfinite" not in json.loads(dumps(s))


def test_numpy_scalars_are_plain_numbers():
    import numpy as np

    from mechclaims.store.runs import dumps

    data = json.loads(dumps({"a": np.float32("nan"), "b": np.int64(3), "c": np.array([1.5, np.inf])}))
    assert data["a"] is None and data["b"] == 3 and data["c"] == [1.5, None]
    assert data["nonfinite"] == {"/a": "NaN", "/c/1": "Infinity"}


def test_strict_loader_refuses_bare_nan():
    from mechclaims.store.runs import loads

    with pytest.raises(ValueError, match="NaN"):
        loads('{"p": NaN}', strict=True)
    assert math.isnan(loads('{"p": NaN}')["p"])  # an old summary still reads


def test_schema_in_the_wheel_is_the_published_one():
    shipped = ROOT / "mechclaims" / "report" / "summary.schema.json"
    assert shipped.read_text() == (ROOT / "docs" / "summary.schema.json").read_text(), (
        "docs/summary.schema.json and mechclaims/report/summary.schema.json differ: copy one onto the other")
    schema = strict_load(shipped)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_rejects_what_it_should(tmp_path):
    pytest.importorskip("jsonschema")
    bad = _summary(complete=True, interrupted=True)
    (tmp_path / "x").mkdir()
    from mechclaims.store.runs import dumps

    (tmp_path / "x" / "bad.json").write_text(dumps(bad))
    with pytest.raises(AssertionError, match="interrupted"):
        check_summary(tmp_path / "x" / "bad.json")
    (tmp_path / "x" / "nan.json").write_text('{"records": [], "p": NaN}')
    with pytest.raises(AssertionError, match="not strict JSON"):
        check_summary(tmp_path / "x" / "nan.json")


def test_killed_run_summary_fits_the_schema(tmp_path):
    """The short summary the next run writes for a run killed with SIGKILL fits the schema too."""
    import os

    from mechclaims.store.runs import Run

    root = tmp_path / "art"
    dead = Run(root, id="20000101-000000-99999999").start()
    marker = json.loads((dead.dir / ".running").read_text())
    (dead.dir / ".running").write_text(json.dumps({**marker, "pid": 2**22 + 12345}))
    Run(root).start().finish(_summary(), None, complete=True)
    check_summary(dead.dir / "summary.json")
    assert os.path.exists(root / "summary.json")
