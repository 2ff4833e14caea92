"""Repeatability: two CPU runs give identical statistics in summary.json, and an xdist run gives the same verdicts.

One seed option controls every random draw (permutations, bootstraps, random neuron sets), so nothing may differ
but durations and artifact paths.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A fast subset keeps CI time sane; the property (same seed -> same numbers; xdist == serial) is per claim.
ARGS = ["claims", "--model", "tiny-gpt2", "--model", "tiny-bert", "-q", "-p", "no:randomly",
        "-k", "additivity or rsa or pathlength or heldout_specific"]


def _run(art: Path, *extra: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "pytest", *ARGS, "--artifacts-dir", str(art), *extra],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800, env={**os.environ, "CI": "1"})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    return json.loads((art / "summary.json").read_text())


def _stats(summary: dict) -> dict:
    return {r["test_id"]: (r["outcome"], r["verdicts"]) for r in summary["records"]}


def test_two_runs_identical_and_xdist_agrees(tmp_path):
    a = _run(tmp_path / "a")
    b = _run(tmp_path / "b", "--activation-cache", "refresh")  # recompute every capture, not just the statistics
    assert json.dumps(_stats(a), sort_keys=True) == json.dumps(_stats(b), sort_keys=True)
    c = _run(tmp_path / "c", "-n", "2", "--dist", "loadgroup")
    sa, sc = _stats(a), _stats(c)
    assert sa.keys() == sc.keys()
    flips = {k: (sa[k][0], sc[k][0]) for k in sa if sa[k][0] != sc[k][0]}
    assert not flips, f"serial vs xdist outcomes differ: {flips}"
    verdicts = {k: [(v["passed"], v["outcome"]) for v in sa[k][1]] for k in sa}
    assert verdicts == {k: [(v["passed"], v["outcome"]) for v in sc[k][1]] for k in sc}
