"""Machine-checked pre-registration (issue 28, item 4): every claim's design is hashed, and its recorded outcomes were
recorded under that hash.

Claims: (1) every claim module in claims/ declares ``DESIGNS`` (claim name -> :class:`mechclaims.verdict.design.
Design`) for each claim it decides; (2) each design's hash equals the one in ``claims/expected/<module>.designs.yml``,
written by ``mechclaims record-outcomes`` with the date and commit of the data run; (3) changing a rule's threshold
without re-recording is caught, and ``record-outcomes`` refuses to record a changed design unless ``--new-design``.
Falsified by a module without designs, a hash that differs from the recorded one, or a changed threshold that passes.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from mechclaims.errors import MechClaimsError
from mechclaims.harness.record import record_outcomes
from mechclaims.verdict.design import Design, designs_of, recorded_designs, unrecorded_changes

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted((ROOT / "claims").glob("test_*.py"))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"prereg_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_every_claim_design_is_recorded_under_its_hash(path):
    designs = designs_of(_load(path))
    assert designs, f"{path.name} declares no DESIGNS: state each claim's rule, alpha, SESOI and thresholds there"
    problems = unrecorded_changes(designs, recorded_designs(path))
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


def test_a_changed_threshold_without_re_recording_is_caught():
    d = Design(rule="r", alpha=0.05, sesoi=0.1, thresholds={"tau": 0.10})
    recorded = {"c": {"hash": d.hash(), "recorded": "2026-12-07", "commit": "abc"}}
    assert unrecorded_changes({"c": d}, recorded) == []
    moved = dataclasses.replace(d, thresholds={"tau": 0.12})
    assert "the design changed" in unrecorded_changes({"c": moved}, recorded)[0]
    assert unrecorded_changes({"c": dataclasses.replace(d, stated="2027-01-01")}, recorded) == []  # dates don't count


def _summary(tmp: Path, h: str) -> Path:
    rec = {"test_id": "claims/test_x.py::test_c[m]", "claim": "c", "role": "claim", "outcome": "refuted",
           "verdicts": [{"statistic_name": "s", "statistic": 1.0}], "design": {"hash": h, "stated": "", "post_hoc": ""}}
    f = tmp / f"summary-{h}.json"
    f.write_text(json.dumps({"records": [rec], "run": {"finished": "2026-12-07T10:00:00Z"},
                             "environment": {"commit": "0123456789ab"}}))
    return f


def test_record_outcomes_writes_the_design_and_refuses_a_silent_change(tmp_path):
    claims = tmp_path / "claims"
    (claims / "expected").mkdir(parents=True)
    record_outcomes([_summary(tmp_path, "aaaaaaaaaaaa")], claims)
    got = recorded_designs(claims / "test_x.py")
    assert got["c"] == {"hash": "aaaaaaaaaaaa", "stated": "", "post_hoc": "", "recorded": "2026-12-07",
                        "commit": "0123456789ab"}
    with pytest.raises(MechClaimsError, match="new claim design"):
        record_outcomes([_summary(tmp_path, "bbbbbbbbbbbb")], claims)
    record_outcomes([_summary(tmp_path, "bbbbbbbbbbbb")], claims, new_design=True)
    assert recorded_designs(claims / "test_x.py")["c"]["hash"] == "bbbbbbbbbbbb"
