"""Recorded outcomes: what each claim test is expected to conclude on the bundled stimuli, with the numbers.

A claim module's recorded outcomes live in ``<claims dir>/expected/<module name>.yml`` (test id -> {outcome,
reason}), written deliberately by ``mechclaims record-outcomes <run>/summary.json`` after a run and reviewed like a
baseline. Only outcomes other than the default (claim: supported; control: failed) are recorded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from mechclaims.verdict.outcome import CONTROL_OUTCOMES, DEFAULT_EXPECTED, OUTCOMES


def load_expected(module_file: str) -> dict[str, tuple[str, str]]:
    """The recorded outcomes of the claim module at ``module_file`` (empty when none are recorded)."""
    p = Path(module_file).with_suffix("").parent / "expected" / (Path(module_file).stem + ".yml")
    if not p.exists():
        return {}
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    return {k: (v["outcome"], v.get("reason", "")) for k, v in data.items()}


def expected_for(mapping: Mapping[str, Any], test_id: str, role: str) -> tuple[str, str]:
    """(expected outcome, its recorded reason) of ``test_id``: the recorded one, else the default for its role."""
    entry = mapping.get(test_id)
    if entry is None:
        return DEFAULT_EXPECTED[role], ""
    exp, why = (entry, "") if isinstance(entry, str) else entry
    allowed = CONTROL_OUTCOMES if role == "control" else OUTCOMES
    if exp not in allowed:
        raise ValueError(f"EXPECTED_OUTCOMES[{test_id!r}] = {exp!r}: a {role}'s outcome is one of {allowed}")
    return exp, why
