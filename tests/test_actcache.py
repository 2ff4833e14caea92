"""The on-disk activation cache cannot rot: checksums, atomic writes, a file lock, and environment-keyed entries."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mechclaims.store import actcache
from mechclaims.store.actcache import ActivationCacheWarning, ActivationStore
from mechclaims.forward.activations import Activations

KEY = {"model": "m", "fingerprint": "abc", "tag": "t", "parts": ("h1", (0, 1))}


def _value():
    rng = np.random.default_rng(0)
    return {"blocks.0.hook_resid_pre": {"him": rng.normal(size=(4, 3)).astype(np.float32), "her": np.arange(6)},
            "acts": Activations({"s": np.ones((2, 2))}, np.array([0, 1]), None, {"n": 2}), "names": ("a", "b")}


def _counting(store, value):
    calls = []

    def fn():
        calls.append(1)
        return value

    return calls, fn


def test_round_trip_and_hit(tmp_path):
    store = ActivationStore(tmp_path)
    calls, fn = _counting(store, _value())
    a = store.get(KEY, fn)
    b = ActivationStore(tmp_path).get(KEY, fn)  # a fresh store: read from disk
    assert len(calls) == 1
    np.testing.assert_array_equal(a["blocks.0.hook_resid_pre"]["him"], b["blocks.0.hook_resid_pre"]["him"])
    assert b["blocks.0.hook_resid_pre"]["him"].dtype == np.float32
    assert isinstance(b["acts"], Activations) and b["acts"].pos is None and b["acts"].meta == {"n": 2}
    assert b["names"] == ("a", "b")


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_npz", "garbage_manifest"])
def test_corrupted_entry_is_rebuilt_with_a_warning(tmp_path, damage):
    store = ActivationStore(tmp_path)
    calls, fn = _counting(store, _value())
    store.get(KEY, fn)
    npz, man, _ = store.paths(KEY)
    if damage == "truncate":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    elif damage == "flip":
        raw = bytearray(npz.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        npz.write_bytes(bytes(raw))
    elif damage == "delete_npz":
        npz.unlink()
    else:
        man.write_text("{not json")
    with pytest.warns(ActivationCacheWarning, match="rebuilding"):
        v = ActivationStore(tmp_path).get(KEY, fn)
    assert len(calls) == 2
    np.testing.assert_array_equal(v["blocks.0.hook_resid_pre"]["her"], np.arange(6))
    assert ActivationStore(tmp_path).get(KEY, fn) is not None and len(calls) == 2  # healthy again


def test_environment_change_never_reuses(tmp_path, monkeypatch):
    store = ActivationStore(tmp_path)
    calls, fn = _counting(store, _value())
    store.get(KEY, fn)
    monkeypatch.setattr(actcache, "environment_key", lambda: {"torch": "9", "transformers": "9", "numpy": "9"})
    store.get(KEY, fn)
    store.get({**KEY, "fingerprint": "other"}, fn)
    assert len(calls) == 3


def test_modes(tmp_path):
    calls, fn = _counting(None, _value())
    ActivationStore(tmp_path, "off").get(KEY, fn)
    assert not list(tmp_path.iterdir())
    ActivationStore(tmp_path).get(KEY, fn)
    ActivationStore(tmp_path, "refresh").get(KEY, fn)
    assert len(calls) == 3
    with pytest.raises(ValueError, match="activation cache mode"):
        ActivationStore(tmp_path, "sometimes")


def test_unstorable_value_is_memo_only(tmp_path):
    store = ActivationStore(tmp_path)
    assert store.get(KEY, lambda: {"obj": object}) == {"obj": object}
    assert not list(tmp_path.glob("*.npz")) and not list(tmp_path.glob("*.json"))


_WORKER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from mechclaims.store.actcache import ActivationStore
    key = {"model": "m", "fingerprint": "abc", "tag": "race", "parts": ()}
    def fn():
        print("computed", flush=True)
        time.sleep(float(sys.argv[2]))
        return {"x": np.arange(2_000_000, dtype=np.float64)}
    v = ActivationStore(sys.argv[1]).get(key, fn)
    assert v["x"][-1] == 1_999_999
    print("ok", flush=True)
""")


def _worker(root: Path, sleep: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WORKER, str(root), str(sleep)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_processes_build_one_entry(tmp_path):
    procs = [_worker(tmp_path, 1.0), _worker(tmp_path, 1.0)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum(o.count("computed") for o, _ in outs) == 1  # the second waited on the lock and read the entry
    assert all("ok" in o for o, _ in outs)


def test_killed_mid_write_leaves_a_cache_the_next_run_accepts_or_rebuilds(tmp_path):
    p = _worker(tmp_path, 30.0)  # holds the lock inside fn(): kill it there
    assert p.stdout.readline().strip() == "computed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    # Simulate the worst moment too: an npz renamed into place but no manifest yet, plus a stray temp file.
    store = ActivationStore(tmp_path)
    key = {"model": "m", "fingerprint": "abc", "tag": "race", "parts": ()}
    npz, man, _ = store.paths(key)
    npz.write_bytes(b"PK\x03\x04 half")
    (tmp_path / f".{npz.name}.x.tmp").write_bytes(b"partial")
    t = time.time()
    q = _worker(tmp_path, 0.0)
    out, err = q.communicate(timeout=120)
    assert q.returncode == 0 and "computed" in out and "ok" in out, err
    assert time.time() - t < 100  # the dead process's lock did not block the next run
    assert json.loads(man.read_text())["sha256"]
