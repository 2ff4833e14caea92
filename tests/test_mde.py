"""The minimum detectable effect travels from the committed table to summary.json and the README's claims table.

Claim: every outcome row of summary.json carries its claim's MDE (``mechclaims/report/mde.json``, made by
``python -m mechclaims.calibrate.mde``) with its unit, power and alpha, or null for a claim without a row; the
README's claims table shows the same value. Falsified by a row without ``mde``, a value that differs from the table,
or an interpolation that reports a size the power curve never reached.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from mechclaims.calibrate.bound import interpolate
from mechclaims.report.summary import MDE_TABLE, build_outcomes

ROOT = Path(__file__).resolve().parent.parent


def test_interpolation_reports_only_sizes_the_curve_reached():
    assert interpolate([0.1, 0.2, 0.4], [0.1, 0.5, 0.9]) == 0.2 + (0.8 - 0.5) * 0.2 / 0.4
    assert interpolate([0.1, 0.2], [0.85, 0.9]) == 0.1
    assert interpolate([0.1, 0.2], [0.3, 0.7]) is None  # never reached: not measured, not extrapolated


def test_outcome_rows_carry_the_committed_mde():
    table = {r["claim"]: r for r in json.loads(MDE_TABLE.read_text())["rows"]}
    recs = [{"claim": c, "model": "m", "role": "claim", "layer": None, "outcome": "inconclusive", "verdicts": [{}]}
            for c in ("mlp_lesion_contribution", "my_own_claim")]
    rows = {o["claim"]: o for o in build_outcomes(recs)}
    m = rows["mlp_lesion_contribution"]["mde"]
    assert m["value"] == table["mlp_lesion_contribution"]["mde"] and m["power"] == 0.8 and "logits" in m["unit"]
    assert rows["my_own_claim"]["mde"] is None


def test_the_readme_claims_table_shows_the_same_mde():
    table = {r["claim"]: r["mde"] for r in json.loads(MDE_TABLE.read_text())["rows"]}
    readme = (ROOT / "README.md").read_text()
    shown = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z_0-9]+)`.*\| ([^|]+) \|$", readme, re.M)
             if "`claims/" in m.group(0)}
    for claim, value in table.items():
        if claim in shown:
            cell = shown[claim].strip()
            assert (cell == "not measured") if value is None else cell.startswith(f"{value:.3g}"), (claim, cell)
