"""Model-keyed statistics (``ctx.stored`` without ``reads=``): keyed on the weights and the forward fingerprint
(mechclaims.forward.probe), not on the torch/transformers versions, and reused under verification
(mechclaims.store.verify).

Claims: (1) a changed forward (one MLP's output scaled by 1 + 1e-6, the weights and their fingerprint untouched)
changes the forward fingerprint, and the statistic recomputes; (2) a change the fingerprint cannot see (the
statistic's own input moved, its key the same) is caught by the verified sample: a warning names the entry and the
refresh flag, the recomputed value is returned and stored, and every later model-keyed statistic of the session is
recomputed; (3) a library version change with the same forward recomputes only the verified sample (the session's
first reuse and a seeded ~5%, the same entries on every run of one day, others the next day), and the stored key holds no torch/transformers version.
Falsified by a reuse after a changed forward, a silent reuse of a differing drawn entry, or a recompute of the whole
store after a version change that moved no bit.
"""
from __future__ import annotations

import json
import warnings
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
from mechclaims.store.verify import ReuseCheck, ReuseMismatchWarning

CALLS: Counter = Counter()
SHIFT = {"value": 0.0}  # an input of the statistic that no key holds (claim 2 moves it)
IDS = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]


def ablated(ctx, layer: int) -> dict:
    """A model-reading statistic: the logits' norm at every token with layer ``layer``'s MLP output zero-ablated."""
    from mechclaims.forward.capture import capture, intervene  # torch: only once the tiny model is there

    CALLS[layer] += 1
    with intervene(ctx.lm, f"blocks.{layer % ctx.n_layers}.hook_mlp_out", lambda x: x * 0):
        logits = capture(ctx.lm, IDS, ["hook_logits"], "all", show=False)["hook_logits"]
    return {"norm": np.linalg.norm(logits, axis=-1) + np.float32(SHIFT["value"]), "layer": layer}


def _session(tmp: Path, lm, layers, seed: int = 0) -> tuple[Context, list]:
    """A fresh session (empty memo, new pool) on the same stores."""
    s = Settings(models=["m"], device="cpu", dtype="float32", artifacts=tmp / "art", seed=seed, permutations=10,
                 layers="all", cache_dir=str(tmp / "cache"), stimuli={})
    ctx = Context(lm, s, ModelPool(s))
    return ctx, [ctx.stored(ablated, layer) for layer in layers]


def _line(ctx) -> list[str]:
    session = SimpleNamespace(mutated=[], settings=ctx.settings, config=SimpleNamespace(), records=[], result={},
                              pool=ctx.pool, store_lines=[])
    return [l for l, _ in summary_lines(session)]


def test_a_changed_forward_changes_the_fingerprint_and_recomputes(tmp_path, tiny, monkeypatch):
    CALLS.clear()
    lm = tiny("tiny-gpt2")
    ctx, (first,) = _session(tmp_path, lm, [0])
    fp = ctx.pool.forward_fingerprint(lm)
    _, (again,) = _session(tmp_path, lm, [0])
    assert CALLS[0] == 2  # reused, and recomputed once as the session's verified sample
    from mechclaims.model.sites import resolve

    mlp = resolve(lm.model, "blocks.1.hook_mlp_out").module  # not the ablated layer: the probe must see it
    orig, weights = mlp.forward, lm.fingerprint
    monkeypatch.setattr(mlp, "forward", lambda *a, **k: orig(*a, **k) * (1 + 1e-6))
    ctx, (changed,) = _session(tmp_path, lm, [0])
    assert lm.fingerprint == weights and ctx.pool.forward_fingerprint(lm) != fp
    st = ctx.pool.stat_store
    assert CALLS[0] == 3 and (st.hits, st.misses, st.check.verified) == (0, 1, 0)
    assert not np.array_equal(changed["norm"], first["norm"])  # the recomputed value is the changed forward's
    monkeypatch.undo()
    assert _session(tmp_path, lm, [0])[0].pool.forward_fingerprint(lm) == fp


def test_a_change_the_fingerprint_cannot_see_is_caught_by_verified_reuse(tmp_path, tiny, monkeypatch):
    CALLS.clear()
    lm = tiny("tiny-gpt2")
    _, before = _session(tmp_path, lm, [0, 1, 2])
    monkeypatch.setitem(SHIFT, "value", 1e-3)  # the key is the same; the value is not
    with pytest.warns(ReuseMismatchWarning, match="--mc-statistics-cache refresh") as w:
        ctx, after = _session(tmp_path, lm, [0, 1, 2])
    assert len([x for x in w if issubclass(x.category, ReuseMismatchWarning)]) == 1
    assert "ablated" in str(w[0].message)  # names the entry
    st = ctx.pool.stat_store
    # layer 0 (the first reuse) was checked and differed: its recomputation is used, and 1 and 2 are recomputed
    assert (st.hits, st.misses, st.check.verified, len(st.check.mismatched)) == (0, 3, 0, 1)
    assert CALLS == {0: 2, 1: 2, 2: 2}
    for b, a in zip(before, after):
        np.testing.assert_allclose(a["norm"], b["norm"] + 1e-3, rtol=1e-6)
    lines = _line(ctx)
    assert any("differed from their recomputation" in l for l in lines)
    # the recomputed values were stored: the next session reads them, and its verified sample agrees
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReuseMismatchWarning)
        ctx, third = _session(tmp_path, lm, [0, 1, 2])
    assert ctx.pool.stat_store.hits == 3 and ctx.pool.stat_store.check.verified >= 1
    for a, t in zip(after, third):
        np.testing.assert_array_equal(a["norm"], t["norm"])


def test_a_library_upgrade_with_the_same_forward_recomputes_only_the_verified_sample(tmp_path, tiny, monkeypatch):
    CALLS.clear()
    lm = tiny("tiny-gpt2")
    layers = list(range(40))
    _, first = _session(tmp_path, lm, layers)
    assert sum(CALLS.values()) == 40
    real = actcache.environment_key
    monkeypatch.setattr(actcache, "environment_key", lambda: {**real(), "torch": "99.0", "transformers": "99.0.0"})
    drawn = []
    for _ in range(2):  # the same entries are drawn on every run with the same seed
        CALLS.clear()
        ctx, second = _session(tmp_path, lm, layers)
        st = ctx.pool.stat_store
        assert (st.hits, st.misses) == (40, 0) and not st.check.mismatched
        assert sum(CALLS.values()) == st.check.verified >= 1 and st.check.verified <= 8  # ~5% of 40, plus the first
        drawn.append(sorted(CALLS))
        for a, b in zip(first, second):
            np.testing.assert_array_equal(a["norm"], b["norm"])
    assert drawn[0] == drawn[1] and 0 in drawn[0]
    line = next(l for l in _line(ctx) if "statistics reused for" in l)
    assert f"{st.check.verified} verified by recomputation" in line and "computed for 0" in line
    keys = [json.loads(p.read_text())["key"] for p in (tmp_path / "cache").rglob("*.json")]
    model_keys = [k for k in keys if "forward" in k]
    assert len(model_keys) == 40
    assert all("torch" not in k and "transformers" not in k and "stats" in k and "fingerprint" in k for k in model_keys)


def test_verified_sample_rotates_by_day():
    """The 5% sample is fixed within a day and moves between days, so no entry is left unchecked for ever (before:
    a function of the seed and key only, the same 5% on every run)."""
    keys = [{"entry": i} for i in range(2000)]
    drawn = {d: {i for i, k in enumerate(keys) if ReuseCheck(salt=d).score(k) < 0.05}
             for d in ("2026-12-07", "2026-12-08")}
    again = {i for i, k in enumerate(keys) if ReuseCheck(salt="2026-12-07").score(k) < 0.05}
    assert again == drawn["2026-12-07"]
    assert 60 < len(drawn["2026-12-08"]) < 140 and len(drawn["2026-12-07"] & drawn["2026-12-08"]) < 20
