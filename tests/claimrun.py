"""Helpers for tests that run a real pytest child process with the mechclaims plugin (fault and bad-input tests).

``SYNTHETIC`` is a claim module that needs no model: each test records a Verdict (so summary.json has records),
can report its progress to a file and sleep, so that a signal lands mid-run deterministically.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SYNTHETIC = '''
"""Synthetic claims for the fault tests: no model, deterministic, each records one verdict."""
import os
import time
from pathlib import Path

import pytest

from mechclaims.verdict.verdict import Verdict

N = int(os.environ.get("MC_N", "8"))


@pytest.mark.claim("synthetic")
@pytest.mark.parametrize("i", range(N))
def test_synthetic(mc_model, i, record, expect):
    v = Verdict(claim="synthetic", statistic_name="x", statistic=float(i), rule="x >= 0", passed=True, p=0.01)
    record(v)
    if os.environ.get("MC_PROGRESS"):
        Path(os.environ["MC_PROGRESS"]).write_text(str(i))
    time.sleep(float(os.environ.get("MC_SLEEP", "0")))
    expect(v)
'''


def env(**extra: str) -> dict[str, str]:
    """The child's environment: this checkout's mechclaims first on the path, offline, no CI progress bars."""
    pp = os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    return {**os.environ, "PYTHONPATH": pp, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


def cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "mechclaims.plugin", "-p", "mechclaims.harness.aliases", "-p",
            "no:cacheprovider", "-p", "no:randomly",
            "-q", *args]


def run(*args: str, cwd: Path, timeout: int = 600, extra_env: dict[str, str] | None = None,
        **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd(*args), cwd=cwd, env=env(**(extra_env or {})), capture_output=True, text=True,
                          timeout=timeout, **kw)


def _default_signals() -> None:
    # A job started in the background by a non-interactive shell inherits SIGINT ignored, and Python then installs
    # no KeyboardInterrupt handler: restore the default so that the child sees Ctrl-C as a terminal user's would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen(*args: str, cwd: Path, extra_env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen:
    return subprocess.Popen(cmd(*args), cwd=cwd, env=env(**(extra_env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=_default_signals, **kw)


def synthetic(tmp: Path) -> Path:
    """A claims folder holding the synthetic claim module; returns the folder."""
    d = tmp / "claims_syn"
    d.mkdir(exist_ok=True)
    (d / "test_synthetic.py").write_text(SYNTHETIC)
    return d


def runs(art: Path) -> dict[str, dict]:
    """Every run folder's summary.json under ``art/runs``, by run id."""
    out = {}
    for d in sorted((art / "runs").iterdir()) if (art / "runs").is_dir() else []:
        if (d / "summary.json").exists():
            out[d.name] = json.loads((d / "summary.json").read_text())
    return out


def temp_files(root: Path) -> list[Path]:
    """Temp files an atomic writer would leave if it failed to clean up."""
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name and p.is_dir()]
