"""Content-keyed statistics (``ctx.stored(fn, ..., reads=arrays)``; mechclaims.store.statcache): a statistic that
reads only captured arrays is keyed on their bytes, not on the weights or the library versions.

Claims: (1) one flipped bit (the lowest mantissa bit of one float32) in the array a statistic reads recomputes it,
and the same bytes reuse it; (2) a changed transformers version recomputes the capture (its key holds the versions)
but not a statistic keyed on the capture's content when the new capture is bit-identical, and a statistic without
``reads`` is reused on its forward fingerprint (the session's first such reuse verified by recomputation,
mechclaims.store.verify); the terminal line says which was which; (3) a changed code hash recomputes both kinds.
Falsified by a reuse after a changed bit or code, or a recompute of a content-keyed statistic whose arrays did not
move.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mechclaims.claim.context import Context
from mechclaims.harness.pool import ModelPool
from mechclaims.harness.settings import Settings
from mechclaims.harness.terminal import summary_lines
from mechclaims.store import actcache
from mechclaims.store.actcache import content_digest
from mechclaims.store.statcache import code_version
from mechclaims.store.verify import ReuseCheck

CALLS: Counter = Counter()
SITES = ["blocks.0.hook_resid_post", "blocks.1.mlp.hook_pre"]
FAKE = SimpleNamespace(name="m", fingerprint="w0", dtype="float32", device="cpu")


def _settings(tmp: Path) -> Settings:
    return Settings(models=["m"], device="cpu", dtype="float32", artifacts=tmp / "art", seed=0, permutations=10,
                    layers="all", cache_dir=str(tmp / "cache"), stimuli={})


def _pool(tmp: Path) -> ModelPool:
    """A fresh session (empty memo) on the same stores."""
    return ModelPool(_settings(tmp))


def test_one_flipped_bit_recomputes_and_the_same_bytes_reuse(tmp_path):
    arr = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
    n = Counter()

    def run(a: np.ndarray) -> ModelPool:
        def stat():
            n["calls"] += 1
            return {"mean": a.mean(0)}
        pool = _pool(tmp_path)
        pool.statistic(FAKE, "t", ("p",), stat, __file__, reads={"x": a, "labels": np.arange(4)})
        return pool

    run(arr)
    p = run(arr.copy())  # another object, the same bytes
    assert n["calls"] == 1 and p.stat_store.content_hits == p.stat_store.hits == 1
    flipped = arr.copy()
    flipped.view(np.uint32)[3, 5] ^= 1  # the lowest mantissa bit: a relative change of ~1e-7
    assert flipped[3, 5] != arr[3, 5] and np.allclose(flipped, arr, rtol=1e-6, atol=0)
    p = run(flipped)
    assert n["calls"] == 2 and p.stat_store.misses == 1 and p.stat_store.hits == 0
    run(flipped)
    assert n["calls"] == 2
    # the digest follows dtype, shape and layout, not only the values
    d = content_digest(arr)
    assert content_digest(arr.astype(np.float64)) != d and content_digest(arr.reshape(16, 64)) != d
    assert content_digest(np.asfortranarray(arr)) == d != content_digest(arr.T.copy())
    with pytest.raises(TypeError, match="reads="):
        content_digest({"x": object()})


def tiny_capture(ctx):
    from mechclaims.forward.capture import capture  # torch: only once the tiny model is there

    CALLS["capture"] += 1
    return capture(ctx.lm, [[5, 6, 7, 8, 9, 10], [11, 12, 13]], SITES, "all")


def by_content(ctx):
    CALLS["by_content"] += 1
    return {"norm": np.linalg.norm(ctx.captured(tiny_capture)[SITES[1]], axis=1)}


def by_key(ctx):
    CALLS["by_key"] += 1
    return {"norm": np.linalg.norm(ctx.captured(tiny_capture)[SITES[1]], axis=1)}


def _session(tmp: Path, lm) -> tuple[Context, dict]:
    s = _settings(tmp)
    ctx = Context(lm, s, ModelPool(s))
    acts = ctx.captured(tiny_capture)
    out = {"content": ctx.stored(by_content, reads=acts), "key": ctx.stored(by_key), "acts": acts}
    return ctx, out


def test_a_library_upgrade_recomputes_the_capture_not_the_statistic_that_reads_it(tmp_path, tiny, monkeypatch):
    CALLS.clear()
    lm = tiny("tiny-gpt2")
    _, first = _session(tmp_path, lm)
    assert CALLS == {"capture": 1, "by_content": 1, "by_key": 1}
    real = actcache.environment_key
    monkeypatch.setattr(actcache, "environment_key", lambda: {**real(), "transformers": "99.0.0"})
    ctx, second = _session(tmp_path, lm)
    for s in SITES:  # the recomputed capture is bit-identical (same weights, same CPU kernels)
        assert np.array_equal(first["acts"][s], second["acts"][s])
    # by_key runs twice: reused on the forward fingerprint, and recomputed once as the session's verified sample
    assert CALLS == {"capture": 2, "by_content": 1, "by_key": 2}, CALLS
    np.testing.assert_array_equal(first["content"]["norm"], second["content"]["norm"])
    st = ctx.pool.stat_store
    assert (st.hits, st.content_hits, st.misses, st.check.verified) == (2, 1, 0, 1)
    session = SimpleNamespace(mutated=[], settings=ctx.settings, config=SimpleNamespace(), records=[], result={},
                              pool=ctx.pool, store_lines=[])
    line = next(l for l, _ in summary_lines(session) if "statistics reused for" in l)
    assert "reused for 2 result(s) (1 by content" in line and "1 by the full key" in line and "computed for 0" in line
    assert "1 verified by recomputation" in line
    assert "--mc-statistics-cache off" in line


def test_a_changed_code_hash_recomputes(tmp_path, monkeypatch):
    monkeypatch.setattr(ModelPool, "forward_fingerprint", lambda self, lm: "f0")  # FAKE has no forward to probe
    monkeypatch.setattr(ReuseCheck, "wants", lambda self, key: False)  # counts below: no verification
    src = tmp_path / "test_claim.py"
    src.write_text("X = 1\n")
    arr = np.arange(12.0).reshape(3, 4)
    n = Counter()

    def run() -> None:
        pool = _pool(tmp_path)
        for reads in (arr, None):  # a content key and the full key
            pool.statistic(FAKE, f"t{reads is None}", ("p",), lambda: n.update(["calls"]) or {"s": arr.sum()},
                           str(src), reads=reads)

    run()
    run()
    assert n["calls"] == 2
    src.write_text("X = 2\n")  # an edited claim file: another code hash
    code_version.cache_clear()
    try:
        run()
    finally:
        code_version.cache_clear()
    assert n["calls"] == 4
