"""``mechclaims record-outcomes``: recording outcomes needs nothing from scripts/ (the wheel ships no scripts/).

Claim under test: the subcommand writes ``<claim module's folder>/expected/<module>.yml`` with one entry per test
id whose outcome is not the default, replaces the entries of the test ids in the summary and keeps the others, reads
summaries whose non-finite values are null (the ``nonfinite`` map), and finds the bundled claims' folder for the
test ids of ``mechclaims run``. Falsified by: a missing or wrong entry, a lost entry of another model, a traceback.
"""
from __future__ import annotations

import subprocess
import sys

import yaml

from claimrun import ROOT, env


def _summary(tmp_path, outcome: str, test_id: str = "claims/test_mine.py::test_mine[m1]") -> str:
    from mechclaims.store.runs import dumps

    rec = {"test_id": test_id, "claim": "mine", "role": "claim", "outcome": outcome, "test_outcome": "failed",
           "verdicts": [{"claim": "mine", "statistic_name": "x", "statistic": float("nan"), "p": 0.5,
                         "rule": "x > 0", "passed": False, "outcome": outcome, "role": "claim", "controls": {}}]}
    p = tmp_path / f"summary-{outcome}.json"
    p.write_text(dumps({"records": [rec], "interrupted": False, "complete": True, "run": {"id": "r", "dir": "r"}}))
    return str(p)


def test_record_outcomes_subcommand(tmp_path):
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "test_mine.py").write_text("")
    exp = tmp_path / "claims" / "expected" / "test_mine.yml"
    exp.parent.mkdir()
    exp.write_text(yaml.safe_dump({"test_mine[m2]": {"outcome": "refuted", "reason": "other model"}}))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mechclaims.cli", "record-outcomes", *args], cwd=tmp_path,
                              env=env(), capture_output=True, text=True, timeout=120)

    r = cli(_summary(tmp_path, "refuted"))
    assert r.returncode == 0 and "1 recorded of 1 test ids" in r.stdout, r.stdout + r.stderr
    data = yaml.safe_load(exp.read_text())
    assert data["test_mine[m1]"]["outcome"] == "refuted" and "x = nan" in data["test_mine[m1]"]["reason"]
    assert data["test_mine[m2]"]["reason"] == "other model"
    back = cli(_summary(tmp_path, "supported"))  # now at the default: its entry goes, the other model's stays
    assert back.returncode == 0 and set(yaml.safe_load(exp.read_text())) == {"test_mine[m2]"}
    bad = cli(str(tmp_path / "nope.json"))
    assert bad.returncode == 2 and "not a mechclaims summary.json" in bad.stderr and "Traceback" not in bad.stderr
    # the old script is a thin wrapper over the same command
    old = subprocess.run([sys.executable, str(ROOT / "scripts" / "record_outcomes.py"), _summary(tmp_path, "refuted")],
                         cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert old.returncode == 0 and "1 recorded" in old.stdout, old.stdout + old.stderr


def test_bundled_test_ids_resolve_to_the_bundled_claims(tmp_path, monkeypatch):
    from mechclaims.harness.bundled import claims_dir
    from mechclaims.harness.record import expected_file

    monkeypatch.chdir(tmp_path)  # `mechclaims run` test ids are relative to the bundled claims folder
    assert expected_file("test_additivity.py") == claims_dir() / "expected" / "test_additivity.yml"
    assert expected_file("claims/test_x.py", claims_dir=tmp_path / "mine") == tmp_path / "mine" / "expected" / "test_x.yml"
