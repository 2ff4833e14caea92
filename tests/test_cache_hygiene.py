"""Store hygiene (issue 29, item 6): least-recently-used eviction to a size budget, and ``mechclaims cache``.

Claim: ``prune`` removes whole entries (manifest, arrays, lock), the least recently used first (a hit touches the
manifest), until the store fits the budget; an entry whose lock is held is kept. Falsified by a store above its
budget after pruning, a more recently used entry removed before an older one, or half an entry left behind.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from filelock import FileLock

from mechclaims.store import hygiene
from mechclaims.store.actcache import ActivationStore


def _fill(root, n):
    st = ActivationStore(root, "on")
    for i in range(n):
        st.get({"model": "m", "tag": f"t{i}", "i": i}, lambda i=i: np.full(25_000, i, np.float32))  # ~100 kB each
    return st


def test_prune_removes_least_recently_used_whole_entries(tmp_path):
    st = _fill(tmp_path, 6)
    es = hygiene.entries(tmp_path)
    for k, e in enumerate(es):  # deterministic use times: entry i used at t = i
        os.utime(e.manifest, (1000 + k, 1000 + k))
    st.get({"model": "m", "tag": "t0", "i": 0}, lambda: pytest.fail("a hit must not recompute"))  # t0: now newest
    size = hygiene.entries(tmp_path)[0].size
    n, _ = hygiene.prune(tmp_path, 3 * size + 10)
    left = {e.manifest.name.split("-")[1] for e in hygiene.entries(tmp_path)}
    assert n == 3 and left == {"t0", "t4", "t5"}, left
    assert len(list(tmp_path.glob("*.npz"))) == 3 and len(list(tmp_path.glob("*.json"))) == 3


def test_an_entry_in_use_is_kept(tmp_path):
    _fill(tmp_path, 2)
    oldest = hygiene.entries(tmp_path)[0]
    with FileLock(str(oldest.files()[-1])):
        n, _ = hygiene.prune(tmp_path, 1)
    assert oldest.manifest.exists() and n == 1


def test_sizes_parse_and_the_command_runs(tmp_path):
    assert hygiene.parse_size("4G") == 4 * 2**30 and hygiene.parse_size("500M") == 500 * 2**20
    with pytest.raises(ValueError, match="suffix"):
        hygiene.parse_size("four gigs")
    _fill(tmp_path / "activations", 3)
    run = lambda *a: subprocess.run([sys.executable, "-m", "mechclaims.cli", "cache", *a, "--cache-dir",  # noqa: E731
                                     str(tmp_path)], capture_output=True, text=True)
    assert "activations: 3 entries" in run("info").stdout
    assert "removed 3 entries" in run("prune", "--max-size", "1", "--store", "activations").stdout
    assert "activations: 0 entries" in run("info").stdout
