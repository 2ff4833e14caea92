"""The statistics store shipped with the repository (mechclaims.store.shipped; issue 29, item 2).

Claims: an entry shipped from one store is read by a fresh store on a local miss, without recomputing, checksummed
and copied into the local store; a damaged shipped entry is recomputed, never trusted; the committed store (when
there is one) is intact, and whether it matches this checkout's code is reported.
Falsified by: a fresh store recomputing a shipped entry, or reusing a damaged one.
"""
from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest

from mechclaims.store.actcache import ActivationStore
from mechclaims.store.diskio import file_sha256
from mechclaims.store.shipped import MANIFEST, entries_since, manifest, ship, shipped_dir, stale

KEY = {"model": "smollm2-135m", "tag": "test_x._fit", "reads": "abc", "code": "c0"}


def _computed(calls: list[int]):
    def fn():
        calls.append(1)
        return {"null": np.arange(5.0), "p": np.float64(0.01)}
    return fn


def test_a_shipped_entry_is_read_on_a_local_miss_and_a_damaged_one_is_recomputed(tmp_path):
    calls: list[int] = []
    t0 = time.time() - 1
    ActivationStore(tmp_path / "made", what="statistic").get(KEY, _computed(calls))
    ActivationStore(tmp_path / "made", what="statistic").get({**KEY, "model": "other"}, _computed(calls))
    (tmp_path / "statistics").mkdir()
    (tmp_path / "statistics" / "README.md").write_text("kept")
    meta = ship(tmp_path / "made", tmp_path / "statistics", t0, ["smollm2-135m"], [])
    assert meta["entries"] == 1 and (tmp_path / "statistics" / MANIFEST).is_file()  # the other model is not shipped
    assert (tmp_path / "statistics" / "README.md").read_text() == "kept"  # only entries are replaced
    fresh = ActivationStore(tmp_path / "user", what="statistic", shipped=tmp_path / "statistics")
    got = fresh.get(KEY, _computed(calls))
    assert calls == [1, 1] and fresh.shipped_hits == 1 and fresh.hits == 1 and fresh.misses == 0
    np.testing.assert_array_equal(got["null"], np.arange(5.0))
    assert len(list((tmp_path / "user").glob("*.npz"))) == 1  # copied: the next run reads it locally
    npz = next((tmp_path / "statistics").glob("*.npz"))
    npz.write_bytes(npz.read_bytes()[:-8] + b"\0" * 8)  # damaged in the shipped store
    other = ActivationStore(tmp_path / "user2", what="statistic", shipped=tmp_path / "statistics")
    other.get(KEY, _computed(calls))
    assert calls == [1, 1, 1] and other.shipped_hits == 0 and other.misses == 1


def test_entries_since_selects_the_run_and_the_model(tmp_path):
    for name in ("smollm2-135m-a-1.json", "smollm2-135m+random-b-2.json", "gemma3-270m-c-3.json"):
        (tmp_path / name).write_text("{}")
    got = [p.name for p in entries_since(tmp_path, time.time() - 60, ["smollm2-135m"])]
    assert got == ["smollm2-135m+random-b-2.json", "smollm2-135m-a-1.json"]
    assert entries_since(tmp_path, time.time() + 60, ["smollm2-135m"]) == []


def test_the_committed_store_is_intact_and_says_whether_it_is_current():
    d = shipped_dir(honour_env=False)
    if d is None:
        pytest.skip("no shipped statistics store in this checkout (statistics/MANIFEST.json): `make ship-statistics` "
                    "makes one")
    meta = manifest(d)
    mans = sorted(d.glob("*.json"))
    mans = [m for m in mans if m.name != MANIFEST]
    assert len(mans) == meta["entries"] > 0
    for m in mans:  # strict JSON (no NaN tokens: the manifests are committed and in the wheel)
        meta_m = json.loads(m.read_text(), parse_constant=lambda c: pytest.fail(f"{m.name} holds {c}: not JSON"))
        assert file_sha256(m.with_suffix(".npz")) == meta_m["sha256"], m
    old = stale(sorted((d.parent / "claims").glob("test_*.py")) if (d.parent / "claims").is_dir() else [], d)
    if old:  # not a failure: a stale store is never read (its keys differ); the first run recomputes, and says so
        warnings.warn(f"the shipped statistics were made by other code for {old}: `make ship-statistics` remakes them")
