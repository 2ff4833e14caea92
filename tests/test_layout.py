"""Repository layout: ``make test`` collects ``tests`` and ``claims`` together in pytest's default (prepend) import
mode, where two test files with the same basename cannot both be imported. Falsified by a shared basename."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_test_file_basename_is_shared_between_tests_and_claims():
    tests = {p.name for p in (ROOT / "tests").glob("test_*.py")}
    claims = {p.name for p in (ROOT / "claims").glob("test_*.py")}
    assert not tests & claims, f"rename one of each: {sorted(tests & claims)} (pytest: 'import file mismatch')"
