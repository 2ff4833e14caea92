"""Caches that cannot rot: atomic builds under a file lock, checksummed manifests, rebuild on corruption."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mechclaims.model.cache import atomic_dir, cache_ok

BUILDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mechclaims.model.cache import atomic_dir
    def build(d):
        for i in range(5):
            (d / f"part{i}.bin").write_bytes(bytes([i]) * 200_000)
            time.sleep(float(sys.argv[2]))
        (d / "done.txt").write_text(sys.argv[3])
    out = atomic_dir(Path(sys.argv[1]), build)
    print("OK", out)
""")


def _spawn(target: Path, delay: float, tag: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUILDER, str(target), str(delay), tag],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_build_the_same_cache(tmp_path):
    target = tmp_path / "cache" / "model-x"
    a, b = _spawn(target, 0.2, "a"), _spawn(target, 0.2, "b")
    outs = [p.communicate(timeout=120) for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    assert all("OK" in o for o, _ in outs)
    assert cache_ok(target)
    # One built it, the other waited on the lock and then accepted it: exactly one build's content.
    assert (target / "done.txt").read_text() in ("a", "b")
    assert not list(target.parent.glob("*.tmp*"))


def test_killed_mid_write_leaves_no_accepted_cache(tmp_path):
    target = tmp_path / "cache" / "model-y"
    p = _spawn(target, 1.0, "killed")
    deadline = time.time() + 60
    while time.time() < deadline and not list(target.parent.glob("model-y.tmp*")):
        time.sleep(0.1)
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert not target.exists()  # only the temp dir was written; the final name appears only on rename
    q = _spawn(target, 0.0, "rebuilt")
    out, err = q.communicate(timeout=120)
    assert q.returncode == 0, err
    assert (target / "done.txt").read_text() == "rebuilt" and cache_ok(target)


def test_corrupted_cache_is_detected_and_rebuilt(tmp_path):
    target = tmp_path / "model-z"
    atomic_dir(target, lambda d: (d / "weights.bin").write_bytes(b"x" * 1000))
    assert cache_ok(target)
    with open(target / "weights.bin", "r+b") as f:  # truncate, as a full disk or a crash would
        f.truncate(10)
    assert not cache_ok(target)
    with pytest.warns(UserWarning, match="incomplete or corrupted; rebuilding"):
        atomic_dir(target, lambda d: (d / "weights.bin").write_bytes(b"y" * 1000))
    assert cache_ok(target) and (target / "weights.bin").read_bytes() == b"y" * 1000


def test_manifest_lists_checksums(tmp_path):
    target = tmp_path / "m"
    atomic_dir(target, lambda d: (d / "a.txt").write_text("hello"))
    manifest = json.loads((target / "MANIFEST.json").read_text())
    assert set(manifest) == {"a.txt"} and len(manifest["a.txt"]) == 64
