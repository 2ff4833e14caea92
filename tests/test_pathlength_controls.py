"""Each path-length control passes on a planted confound built with the control's own code, and the claim is then
``confounded`` (mechclaims/stats/pathlength_controls.py, stats/pathlength_decision.py).

- Shuffled targets: a "model" whose logsumexp rises with the path length lowers the log p of *every* token on long
  paths. ``shuffled_targets`` + ``score_targets`` (the claim's construction) score the document's other tokens, and
  the control passes; with the logsumexp independent of the path and only the correct token's logit tied to it, the
  control fails and the claim is supported.
- Word-shuffled text: a "model" whose path and confidence both follow the current word's length (a surface property
  that survives shuffling). ``word_shuffled`` (the claim's construction) on the bundled passages: the control passes.
Falsified by a control that does not pass on its planted confound, or passes without it.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits
import pytest

from mechclaims.calibrate.pathlength_null import ar1
from mechclaims.datasets.passages import load_passages
from mechclaims.stats.pathlength_controls import score_targets, shuffled_targets, word_shuffled
from mechclaims.stats.pathlength_decision import path_length_decision


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Small matrices: multi-threaded BLAS only spins on the shared machine (a decision 1.79 s -> 0.11 s)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield

PASSAGES = Path(__file__).parents[1] / "fixtures" / "passages.jsonl"
KW = dict(n_perm=199, seed=0)


def _scored_model(lse_link: float, logit_link: float, seed: int = 0):
    """Per-token arrays of a toy LM: 12 documents, AR(1) path lengths, a final-norm state per token whose dot with
    the unembedding row gives logits; the correct token's logit rises with the path by ``logit_link``, the
    logsumexp by ``lse_link``."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(150, 300, 12)
    doc = np.repeat(np.arange(12), lens)
    pos = np.concatenate([np.arange(n) for n in lens]).astype(float)
    x = np.concatenate([ar1(rng, n, 0.5) for n in lens])
    V, D = 400, 16
    w_u = rng.normal(size=(V, D))
    tgt = rng.integers(0, V, len(x))
    normed = rng.normal(size=(len(x), D)) * 0.3
    normed += (logit_link * x)[:, None] * w_u[tgt] / np.sum(w_u[tgt] ** 2, axis=1, keepdims=True)
    lse = lse_link * x + rng.normal(size=len(x))
    logit, logp = score_targets(normed, w_u, tgt, lse)
    return dict(steps=x[:, None], logit=logit, logp=logp, pos=pos, doc=doc, tgt=tgt, normed=normed, w_u=w_u, lse=lse)


def _with_shuffled_control(m: dict):
    v = path_length_decision(m["steps"], m["logp"], m["logit"], m["pos"], m["doc"], m["tgt"], **KW)
    sh = shuffled_targets(m["tgt"], m["doc"], 0)
    sl, sp = score_targets(m["normed"], m["w_u"], sh, m["lse"])
    c = path_length_decision(m["steps"], sp, sl, m["pos"], m["doc"], sh, role="control", **KW)
    return v.gate({"pathlength_shuffled_targets": c}), c


def test_shuffled_target_control_passes_on_a_planted_logsumexp_confound():
    v, c = _with_shuffled_control(_scored_model(lse_link=1.0, logit_link=0.0))
    assert c.outcome == "passed", c.explain()
    assert c.effect < -0.2  # every token's log p falls with the path
    assert v.outcome == "confounded", v.explain()


def test_shuffled_target_control_fails_when_only_the_correct_token_is_tied_to_the_path():
    v, c = _with_shuffled_control(_scored_model(lse_link=0.0, logit_link=1.0))
    assert c.outcome == "failed", c.explain()
    assert v.outcome == "supported", v.explain()


def _surface_model(texts: list[str], seed: int = 0):
    """A toy LM on whitespace words: path and next-token log p both follow the current word's length (plus noise),
    whatever the order of the words; target id = a stable hash of the next word."""
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("x", "y", "pos", "doc", "tgt")}
    for g, t in enumerate(texts):
        w = t.split()
        n = np.array([len(s) for s in w[:-1]], float)
        cols["x"].append(n + rng.normal(size=len(n)))
        cols["y"].append(-0.5 * n + rng.normal(size=len(n)))
        cols["pos"].append(np.arange(len(n), dtype=float))
        cols["doc"].append(np.full(len(n), g))
        cols["tgt"].append(np.array([zlib.crc32(s.encode()) % 50_000 for s in w[1:]]))
    return {k: np.concatenate(v) for k, v in cols.items()}


def test_word_shuffled_control_passes_on_a_planted_surface_confound():
    texts = [p.text for p in load_passages(PASSAGES, min_docs=5)]
    shuffled = [word_shuffled(t, 0, i) for i, t in enumerate(texts)]
    assert shuffled[0] != texts[0] and sorted(shuffled[0].split()) == sorted(texts[0].split())
    res = []
    for ts, role in ((texts, "claim"), (shuffled, "control")):
        m = _surface_model(ts)
        res.append(path_length_decision(m["x"][:, None], m["y"], m["y"], m["pos"], m["doc"], m["tgt"], role=role,
                                        **KW))
    v, c = res
    assert c.outcome == "passed", c.explain()
    assert v.gate({"pathlength_word_shuffled_text": c}).outcome == "confounded"
