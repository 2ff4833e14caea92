"""The baseline check reports which numbers moved, by how much, against which tolerance, and the env drift."""
from __future__ import annotations

from pathlib import Path

from mechclaims.store.baseline import compare, format_mismatch


def test_compare_within_and_outside_tolerance():
    rows, keys = compare({"a": 1.0, "b": 2.0, "gone": 1.0}, {"a": 1.0000001, "b": 2.5, "new": 3.0})
    assert [r["key"] for r in rows] == ["b"]
    assert any("gone" in k for k in keys) and any("new" in k for k in keys)


def test_mismatch_message_names_numbers_tolerance_and_env():
    rows, keys = compare({"d": 1.0, "p": 0.01}, {"d": 1.5, "p": 0.01}, tolerances={"d": {"rtol": 0.1}})
    msg = format_mismatch(Path("baselines/m/t/x.yml"), rows, keys, {"torch": "2.13.0", "transformers": "5.23.0"},
                          {"torch": "2.13.0", "transformers": "4.57.1"})
    assert "d" in msg and "1.5" in msg and "rtol=0.1" in msg
    assert "max 0.5" in msg and "median 0.5" in msg
    assert "transformers 5.23.0 -> 4.57.1" in msg
    assert "--force-regen" in msg


def test_nan_equal_nan_is_not_drift():
    rows, _ = compare({"x": float("nan")}, {"x": float("nan")})
    assert rows == []
