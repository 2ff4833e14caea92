"""The version-matrix comparison catches a planted change and names claim, number, environments and tolerance."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from mechclaims.report.matrix import main


def _summary(stat: float, passed: bool = True, fp: str = "abc") -> dict:
    return {"environment": {"transformers": "x"}, "model_fingerprints": {"tiny-gpt2": fp},
            "records": [{"test_id": "claims/test_x.py::test_x[tiny-gpt2-L0]", "claim": "x_claim", "model": "tiny-gpt2",
                         "outcome": "passed" if passed else "failed",
                         "verdicts": [{"statistic_name": "d", "statistic": stat, "p": 0.01, "passed": passed,
                                       "details": {"n": 10.0}}]}]}


def _env(root: Path, name: str, summary: dict) -> Path:
    d = root / name
    d.mkdir()
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def test_identical_environments_agree(tmp_path, capsys):
    a, b = _env(tmp_path, "tf-5", _summary(1.0)), _env(tmp_path, "tf-4", _summary(1.0))
    assert main([str(a), str(b)]) == 0
    assert "no number moved" in capsys.readouterr().out


def test_planted_perturbation_exits_nonzero_with_names(tmp_path, capsys):
    a, b = _env(tmp_path, "tf-5.23.0", _summary(1.0)), _env(tmp_path, "tf-4.57.6", _summary(1.01))
    assert main([str(a), str(b), "--rtol", "1e-3"]) == 1
    out = capsys.readouterr().out
    assert "x_claim" in out and " d:" in out and "tf-5.23.0" in out and "tf-4.57.6" in out and "rtol 0.001" in out
    assert (tmp_path / "comparison.html").exists() and (tmp_path / "comparison.json").exists()


def test_verdict_flip_is_reported(tmp_path, capsys):
    a, b = _env(tmp_path, "tf-5", _summary(1.0)), _env(tmp_path, "tf-4", _summary(1.0, passed=False))
    assert main([str(a), str(b)]) == 1
    assert "VERDICT FLIP: x_claim" in capsys.readouterr().out


def test_unsupported_cell_and_different_weights(tmp_path, capsys):
    a = _env(tmp_path, "tf-5", _summary(1.0))
    b = tmp_path / "tf-old"
    b.mkdir()
    (b / "status.json").write_text(json.dumps({"env": "tf-old", "supported": False, "reason": "no GGUF support"}))
    c = _env(tmp_path, "tf-4", _summary(5.0, fp="other"))
    assert main([str(a), str(b), str(c)]) == 0
    out = capsys.readouterr().out
    assert "unsupported tf-old: no GGUF support" in out and "not comparable: tiny-gpt2" in out


def test_outcome_flip_where_both_fail_is_reported(tmp_path, capsys):
    """refuted -> inconclusive is a flip although every verdict "fails" in both (the four outcomes, not passed)."""
    a, b = _summary(1.0, passed=False), _summary(1.0, passed=False)
    for s, o in ((a, "refuted"), (b, "inconclusive")):
        s["records"][0].update(outcome=o, layer=None)
    assert main([str(_env(tmp_path, "tf-5", a)), str(_env(tmp_path, "tf-4", b))]) == 1
    out = capsys.readouterr().out
    assert "VERDICT FLIP: x_claim" in out and "refuted in tf-5 -> inconclusive in tf-4" in out
    assert "refuted" in out.splitlines()[1] and "inconclusive" in out.splitlines()[1]  # the table shows outcomes
