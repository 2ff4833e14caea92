"""Faults: nothing complete is ever replaced by something partial, and every run leaves its own summary.

Claim under test: each run writes under ``<artifacts>/runs/<id>/``; only a complete run moves ``latest`` (and with
it ``summary.json``/``report.html`` at the artifacts root); an interrupted run (SIGINT, SIGTERM, an internal error,
a collection error, ``-x``) writes its own summary marked ``"interrupted": true`` with the reason; two runs sharing
one artifacts dir keep both their records. Falsified by: a root summary with fewer records than the complete run,
a missing or unmarked summary for an interrupted run, or a run whose records are gone.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from claimrun import ROOT, popen, run, runs, synthetic, temp_files

N = 8


def _reached(progress: Path, i: int, timeout: float = 120) -> None:
    """Wait until the child's synthetic test ``i`` has recorded its verdict."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if int(progress.read_text()) >= i:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)


def _complete_run(tmp_path: Path, art: Path) -> tuple[str, dict]:
    claims = synthetic(tmp_path)
    r = run(str(claims), "--model", "tiny-gpt2", "--artifacts-dir", str(art), cwd=tmp_path,
            extra_env={"MC_N": str(N)})
    assert r.returncode == 0, r.stdout + r.stderr
    (rid, summary), = runs(art).items()
    assert not summary["interrupted"] and len(summary["records"]) == N
    return rid, summary


def test_sigint_mid_run_keeps_the_complete_run(tmp_path):
    """Ctrl-C during a rerun: the complete summary and report stay where they were; the rerun's own summary says
    it was interrupted, with the records it got."""
    art = tmp_path / "art"
    rid, full = _complete_run(tmp_path, art)
    report = (art / "report.html").read_bytes()
    progress = tmp_path / "progress"
    p = popen(str(tmp_path / "claims_syn"), "--model", "tiny-gpt2", "--artifacts-dir", str(art), cwd=tmp_path,
              extra_env={"MC_N": str(N), "MC_SLEEP": "0.4", "MC_PROGRESS": str(progress)})
    _reached(progress, 3)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 2, out
    assert "Traceback" not in out and "run interrupted (KeyboardInterrupt" in out, out
    assert json.loads((art / "summary.json").read_text()) == full  # the complete run, untouched
    assert (art / "report.html").read_bytes() == report
    assert (art / "latest").resolve().name == rid
    (new_id, partial), = [(k, v) for k, v in runs(art).items() if k != rid]
    assert partial["interrupted"] is True and not partial["complete"]
    assert "KeyboardInterrupt" in partial["reason"]
    assert 3 <= len(partial["records"]) < N and partial["run"]["claim_tests_collected"] == N
    assert not temp_files(art) and not (art / "runs" / new_id / ".running").exists()


def test_sigterm_is_an_interruption_too(tmp_path):
    art = tmp_path / "art"
    progress = tmp_path / "progress"
    p = popen(str(synthetic(tmp_path)), "--model", "tiny-gpt2", "--artifacts-dir", str(art), cwd=tmp_path,
              extra_env={"MC_N": str(N), "MC_SLEEP": "0.4", "MC_PROGRESS": str(progress)})
    _reached(progress, 0)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    (_, s), = runs(art).items()
    assert s["interrupted"] and "SIGTERM" in s["reason"], out
    assert not (art / "latest").exists() and not (art / "summary.json").exists()


def test_two_concurrent_runs_keep_both_records(tmp_path):
    """Two runs of real claims at once into one artifacts dir (tiny models): each keeps its own complete summary,
    and the root summary is one whole run, never a mix or a partial one."""
    art, base = tmp_path / "art", tmp_path / "baselines"
    for m in ("tiny-gpt2", "tiny-llama"):
        src = ROOT / "baselines" / m
        if src.exists():
            import shutil

            shutil.copytree(src, base / m)
    args = ["claims/test_additivity.py", "--artifacts-dir", str(art), "--baselines-dir", str(base), "-p",
            "no:randomly", "-k", "additivity"]
    procs = [popen(*args, "--model", m, cwd=ROOT) for m in ("tiny-gpt2", "tiny-llama")]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode in (0, 1) for p in procs), outs  # 1: a baseline may have moved; records still count
    summaries = runs(art)
    assert len(summaries) == 2, outs
    models = sorted({r["model"] for s in summaries.values() for r in s["records"]})
    assert models == ["tiny-gpt2", "tiny-llama"]
    for s in summaries.values():
        assert not s["interrupted"] and s["run"]["claim_tests_recorded"] == len(s["records"]) > 0
        assert len({r["model"] for r in s["records"]}) == 1
    top = json.loads((art / "summary.json").read_text())
    assert top == summaries[(art / "latest").resolve().name]
    assert not temp_files(art)


def test_collection_error_still_writes_a_summary(tmp_path):
    claims = synthetic(tmp_path)
    (claims / "test_broken.py").write_text("import no_such_module_xyz\n")
    art = tmp_path / "art"
    r = run(str(claims), "--model", "tiny-gpt2", "--artifacts-dir", str(art), cwd=tmp_path)
    assert r.returncode == 2, r.stdout
    (_, s), = runs(art).items()
    assert s["interrupted"] and "collection error" in s["reason"] and "test_broken.py" in s["reason"]
    assert "no_such_module_xyz" in s["collection_errors"][0]
    assert not (art / "latest").exists()


def test_internal_error_still_writes_a_summary(tmp_path):
    claims = synthetic(tmp_path)
    (claims / "conftest.py").write_text(
        "def pytest_runtest_logfinish(nodeid, location):\n"
        "    if nodeid.endswith('-2]'):\n"
        "        raise RuntimeError('plugin bug')\n")
    art = tmp_path / "art"
    r = run(str(claims), "--model", "tiny-gpt2", "--artifacts-dir", str(art), cwd=tmp_path)
    assert r.returncode == 3, r.stdout
    (_, s), = runs(art).items()
    assert s["interrupted"] and "internal error: RuntimeError: plugin bug" in s["reason"]
    assert len(s["records"]) == 3  # the tests that ran before it


def test_exitfirst_is_not_complete(tmp_path):
    claims = synthetic(tmp_path)
    (claims / "test_fails.py").write_text(
        "import pytest\n@pytest.mark.claim('fails')\ndef test_fails(mc_model):\n    assert False\n")
    art = tmp_path / "art"
    r = run(str(claims), "--model", "tiny-gpt2", "--artifacts-dir", str(art), "-x", cwd=tmp_path)
    assert r.returncode == 1
    (_, s), = runs(art).items()
    assert s["interrupted"] and "stopped early" in s["reason"] and not (art / "latest").exists()


def test_library_tests_leave_no_run_folder(tmp_path):
    d = tmp_path / "plain"
    d.mkdir()
    (d / "test_plain.py").write_text("def test_ok():\n    assert True\n")
    art = tmp_path / "art"
    r = run(str(d), "--model", "tiny-gpt2", "--artifacts-dir", str(art), cwd=tmp_path)
    assert r.returncode == 0, r.stdout
    assert not (art / "runs").exists()


def test_summary_survives_odd_values(tmp_path):
    """`--layers 99` once ended in `TypeError: NotSetType is not JSON serializable` with no summary: whatever a
    record holds, the summary is written."""
    from _pytest.compat import NOTSET

    from mechclaims.store.runs import dumps

    assert json.loads(dumps({"layer": NOTSET, "p": float("nan"), "path": tmp_path}))["layer"]
