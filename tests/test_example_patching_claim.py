"""The README's write-your-own-patching-claim example runs green as a real claim file, and the README shows it
verbatim (as tests/test_example_claim.py does for docs/example_claim.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "example_patching_claim.py"


def test_readme_shows_the_patching_example_verbatim():
    assert EXAMPLE.read_text().strip() in (ROOT / "README.md").read_text()


def test_example_patching_claim_runs_green(tmp_path):
    claim = ROOT / "claims" / "test_zz_readme_patching_example.py"
    shutil.copy(EXAMPLE, claim)
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", str(claim), "--model", "tiny-gpt2", "-q",
                            "--artifacts-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})
    finally:
        claim.unlink()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 passed" in r.stdout
    assert '"swap_embedding_carries_answer"' in (tmp_path / "summary.json").read_text()
