"""The patching primitive and the gradient path, on a tiny seeded model of every family in the support matrix.

Identities (every family): patching a run with its own activations at every site and position leaves the logits
unchanged; patching everything (or only the embeddings, ``hook_resid_pre`` of block 0) from a corrupted run of the
same length reproduces the corrupted logits. Both hold with and without the shortcuts (block skip, last token), and
the shortcuts agree with the plain pass on random multi-site tables. Hypothesis: one batch equals one row at a time.
The gradient path: its derivative matches a finite difference (q/k included, through the head split's inverse) and
is the *total* derivative (the same with other sites hooked as alone); capture() stays gradient-free.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mechclaims.forward.attribution import capture_grad
from mechclaims.forward.capture import capture, count_hooks
from mechclaims.forward import fastpath
from mechclaims.forward.patching import PatchTable, run_patched
from mechclaims.model.sites import available_sites, base_of

sys.path.insert(0, str(Path(__file__).parent))
import tiny_families as tf  # noqa: E402

FAMS = list(tf.FAMILY_IDS)
_MODELS: dict = {}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: two threads only spin (see tests/test_sites.py)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _tiny(fam: str):
    if fam not in _MODELS:
        _MODELS[fam] = tf.build(fam)
    return _MODELS[fam]


def _logits(lm, ids) -> np.ndarray:
    """hook_logits (before any softcap/scaling) of equal-length rows, ``[n, T, vocab]``."""
    return capture(lm, ids, ["hook_logits"], "all")["hook_logits"].reshape(len(ids), len(ids[0]), -1)


def _rel(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def _everything(lm, ids, src_acts) -> PatchTable:
    t = PatchTable(len(ids))
    for s in src_acts.sites:
        t.add(s, src_acts.seq, src_acts.pos, src_acts[s])
    return t


@pytest.mark.parametrize("fam", FAMS)
def test_patching_own_activations_is_identity(fam):
    lm = _tiny(fam)
    ids = tf.ids(n_seq=3, seed=1)
    sites = [s for s in available_sites(lm.model) if s != "hook_logits"]
    table = _everything(lm, ids, capture(lm, ids, sites, "all"))
    for shortcuts in (True, False):
        got = np.stack(run_patched(lm, ids, table, shortcuts=shortcuts))
        assert _rel(got, _logits(lm, ids)) < 1e-5, (fam, shortcuts)
    assert count_hooks(lm.model) == 0


@pytest.mark.parametrize("fam", FAMS)
def test_patching_from_corrupt_reproduces_corrupt(fam):
    lm = _tiny(fam)
    ids, bad = tf.ids(n_seq=3, seed=1), tf.ids(n_seq=3, seed=2)
    sites = [s for s in available_sites(lm.model) if s != "hook_logits"]
    want = _logits(lm, bad)
    assert _rel(_logits(lm, ids), want) > 1e-2  # the two runs differ, so the identity has something to show
    src = capture(lm, bad, sites, "all")
    emb = PatchTable(3).add("blocks.0.hook_resid_pre", src.seq, src.pos, src["blocks.0.hook_resid_pre"])
    for table in (_everything(lm, ids, src), emb):
        for shortcuts in (True, False):
            assert _rel(np.stack(run_patched(lm, ids, table, shortcuts=shortcuts)), want) < 1e-5, fam


def _random_table(lm, ids, src, rng, n_rows: int, last_only: bool = False):
    """Rows that each patch 1-3 random (site, position) pairs from ``src`` (one capture of other prompts)."""
    sites = [s for s in src.sites]
    rows, T = [], len(ids[0])
    table = PatchTable(n_rows)
    for r in range(n_rows):
        base = int(rng.integers(len(ids)))
        rows.append(ids[base])
        for _ in range(int(rng.integers(1, 4))):
            s = sites[int(rng.integers(len(sites)))]
            p = T - 1 if last_only else int(rng.integers(T))
            k = int(rng.integers(len(src.meta["ids"])))
            table.add(s, r, p, src[s][(src.seq == k) & (src.pos == p)])
    return rows, table


@pytest.mark.parametrize("fam", FAMS)
def test_patching_shortcuts_match_plain_pass(fam):
    lm = _tiny(fam)
    ids, other = tf.ids(n_seq=2, seed=3), tf.ids(n_seq=2, seed=4)
    L = lm.n_layers
    names = [f"blocks.{l}.{k}" for l in range(L) for k in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out",
                                                           "attn.hook_q", "attn.hook_k")]
    src = capture(lm, other, names, "all")
    src.meta["ids"] = other
    rng = np.random.default_rng(0)
    for last_only in (False, True):
        rows, table = _random_table(lm, ids, src, rng, 12, last_only)
        tok = rng.integers(3, tf.V, size=(12, 2))
        fast = run_patched(lm, rows, table, read_tokens=tok, batch_size=5)
        plain = run_patched(lm, rows, table, read_tokens=tok, batch_size=5, shortcuts=False)
        assert np.max(np.abs(fast - plain)) <= 1e-4 * max(1.0, np.max(np.abs(plain))), (fam, last_only)
    if fam in ("gpt2", "llama"):  # the default models' families must get the shortcuts, not the fallback
        chk = fastpath.check(lm)
        assert chk.last_token and chk.skip and chk.full_skip, chk.note


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-bert"])
@given(seed=st.integers(0, 10_000), n_rows=st.integers(1, 9), last_only=st.booleans())
def test_patching_batched_equals_one_row_at_a_time(tiny, name, seed, n_rows, last_only):
    lm = tiny(name)
    rng = np.random.default_rng(seed)
    T = int(rng.integers(3, 8))
    ids, other = (rng.integers(5, 2000, size=(3, T)).tolist() for _ in range(2))
    src = capture(lm, other, ["blocks.1.hook_resid_pre", "blocks.2.hook_mlp_out", "blocks.0.attn.hook_k"], "all")
    src.meta["ids"] = other
    rows, table = _random_table(lm, ids, src, rng, n_rows, last_only)
    tok = rng.integers(5, 2000, size=(n_rows, 2))
    batched = run_patched(lm, rows, table, read_tokens=tok, batch_size=4)
    for r in range(n_rows):
        one = PatchTable(1)
        for s, (rr, p, v) in table.grouped().items():
            if (rr == r).any():
                one.add(s, np.zeros((rr == r).sum(), int), p[rr == r], v[rr == r])
        single = run_patched(lm, [rows[r]], one, read_tokens=tok[r:r + 1])
        np.testing.assert_allclose(batched[r], single[0], rtol=1e-4, atol=1e-4)
    assert count_hooks(lm.model) == 0


def test_patching_bad_values_leave_no_hook_and_restore_the_blocks(tiny):
    lm = tiny("tiny-llama")
    ids = [[5, 6, 7, 8], [9, 10, 11, 12]]
    blocks = base_of(lm.model).layers
    bad = PatchTable(2).add("blocks.2.hook_resid_pre", [0], [1], np.zeros((1, 7)))  # width 7, not 64
    with pytest.raises(ValueError, match="shape"):
        run_patched(lm, ids, bad, read_tokens=[[1, 2], [1, 2]])
    assert count_hooks(lm.model) == 0 and base_of(lm.model).layers is blocks and len(blocks) == lm.n_layers
    with pytest.raises(ValueError, match="outside row"):
        run_patched(lm, ids, PatchTable(2).add("blocks.0.hook_resid_pre", [1], [9], np.zeros((1, 64))))


@pytest.mark.parametrize("fam", ["gpt2", "llama", "gemma2", "phi3", "granite", "bert"])
def test_capture_grad_is_the_total_derivative(fam):
    lm = _tiny(fam)
    ids = tf.ids(n_seq=2, seed=5)
    tgt, foil = np.array([5, 7]), np.array([9, 11])
    sites = ["blocks.0.hook_attn_out", "blocks.1.hook_mlp_out", "blocks.1.attn.hook_q", "blocks.0.hook_resid_pre"]
    a, g, m = capture_grad(lm, ids, sites, tgt, foil)
    base = run_patched(lm, ids, None, read_tokens=np.stack([tgt, foil], 1))
    np.testing.assert_allclose(m, base[:, 0] - base[:, 1], rtol=1e-4, atol=1e-4)
    for s in sites[:3]:
        # Directional finite difference along the gradient: (m(x + eps u) - m(x)) / eps = |grad| for unit u.
        eps, u = 1e-3, g[s] / np.linalg.norm(g[s])
        lg = run_patched(lm, ids, PatchTable(2).add(s, a.seq, a.pos, a[s] + eps * u),
                         read_tokens=np.stack([tgt, foil], 1), shortcuts=False)
        fd = float(((lg[:, 0] - lg[:, 1]) - m).sum() / eps)
        assert abs(fd - np.linalg.norm(g[s])) < 0.02 * np.linalg.norm(g[s]) + 1e-3, (fam, s, fd)
        alone = capture_grad(lm, ids, [s], tgt, foil)[1]
        np.testing.assert_allclose(alone[s], g[s], rtol=1e-4, atol=1e-6)  # hooking other sites cut nothing
    assert count_hooks(lm.model) == 0
    assert not any(p.requires_grad for p in lm.model.parameters())


def test_capture_stays_gradient_free(tiny):
    lm = tiny("tiny-gpt2")
    acts = capture(lm, [[5, 6, 7]], ["blocks.0.hook_attn_out"], "all")
    assert isinstance(acts["blocks.0.hook_attn_out"], np.ndarray)
    capture_grad(lm, [[5, 6, 7]], ["blocks.0.hook_attn_out"], [5], [6])
    assert not any(p.requires_grad for p in lm.model.parameters())
    assert all(p.grad is None for p in lm.model.parameters())
