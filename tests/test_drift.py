"""Version drift, simulated: a baseline made under another environment, with one number moved, fails with a
message naming the number, the tolerance and the environment change, and lands in summary.json and the report."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_simulated_environment_drift_is_reported(tmp_path):
    src = ROOT / "baselines" / "tiny-gpt2" / "test_residual_additivity" / "tiny-gpt2-L0.yml"
    dst_root = tmp_path / "baselines"
    shutil.copytree(ROOT / "baselines", dst_root)
    doc = yaml.safe_load(src.read_text())
    doc["environment"]["transformers"] = "4.57.6"  # the simulated other environment
    doc["numbers"]["hl_only_median_rel_err"] *= 1.5  # and a number that moved past its tolerance
    (dst_root / src.relative_to(ROOT / "baselines")).write_text(yaml.safe_dump(doc))
    art = tmp_path / "art"
    r = subprocess.run([sys.executable, "-m", "pytest", "claims/test_additivity.py", "--model", "tiny-gpt2", "-k", "L0",
                        "--baselines-dir", str(dst_root), "--artifacts-dir", str(art), "-q"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "CI": "1"})
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    assert "hl_only_median_rel_err" in out and "rtol=" in out
    assert "transformers 4.57.6 -> " in out
    summary = json.loads((art / "summary.json").read_text())
    assert any(d.get("key") == "hl_only_median_rel_err" for d in summary["drift"])
    assert "4.57.6" in (art / "report.html").read_text()
    # The committed baseline is untouched.
    assert yaml.safe_load(src.read_text())["environment"]["transformers"] != "4.57.6"
