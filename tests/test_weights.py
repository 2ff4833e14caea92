"""Weight accessors and the rotated-weights null, on every family's tiny model and on synthetic arrays.

Claims under test: ``qk_path`` maps captured ``attn.hook_qk_in`` rows to exactly the ``attn.hook_q``/``hook_k`` the
model computes (every family, fused projections, per-head and full-width q/k norms included); the rotation statistics
equal their scipy/sklearn definitions; Haar frames are orthonormal and the rotated inputs keep the inputs' Gram
spectrum. Falsified by any mismatch beyond float32 round-off.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

from mechclaims.forward.capture import capture
from mechclaims.model.sites import site
from mechclaims.stats.rsa import within_across
from mechclaims.stats.rsa_rotation import (auc_batch, delta_batch, haar_frames, input_factor, rho_batch,
                                           rotated_inputs, surface_groupings)
from mechclaims.model.weights import qk_path, w_out

sys.path.insert(0, str(Path(__file__).parent))
import tiny_families as tf  # noqa: E402


@pytest.mark.parametrize("fam", list(tf.FAMILY_IDS))
def test_qk_path_reproduces_the_captured_queries_and_keys(fam):
    lm = tf.build(fam)
    kinds = ("attn.hook_qk_in", "attn.hook_q", "attn.hook_k")
    if not all(k in lm.sitemap.layer for k in kinds):
        pytest.skip(f"{fam} maps no q/k sites (no attention q/k projections to read)")
    a = capture(lm, tf.ids(2), [site(k, 1) for k in kinds], "all")
    q, k = qk_path(lm, 1)(a[site(kinds[0], 1)])
    for got, want in ((q, a[site(kinds[1], 1)]), (k, a[site(kinds[2], 1)])):
        np.testing.assert_allclose(got.float().numpy(), want, rtol=1e-4, atol=1e-5)


def test_w_out_is_rows_per_neuron():
    lm = tf.build("gpt2")
    w = w_out(lm, 0)
    assert w.shape == (tf.FF, tf.D)
    lm2 = tf.build("llama")
    assert w_out(lm2, 0).shape == (tf.FF, tf.D)


def test_rotation_statistics_match_their_definitions():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 12, 8))
    Y = rng.normal(size=(3, 12, 5))
    labels = np.repeat(np.arange(3), 4)
    iu = np.triu_indices(12, 1)

    def cos(v):
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        return (v @ v.T)[iu]
    for b in range(3):
        assert rho_batch(X, Y)[b] == pytest.approx(stats.spearmanr(cos(X[b]), cos(Y[b]))[0])
        w, a = within_across(np.stack([np.corrcoef(X[b])]) * 0 + (X[b] / np.linalg.norm(X[b], axis=1, keepdims=True))
                             @ (X[b] / np.linalg.norm(X[b], axis=1, keepdims=True)).T, labels)
        assert delta_batch(X, labels)[b] == pytest.approx(float(w[0, 0] - a[0, 0]))
        same = labels[iu[0]] == labels[iu[1]]
        assert auc_batch(X, labels)[b] == pytest.approx(roc_auc_score(same, cos(X[b])))


def test_haar_frames_and_rotated_inputs():
    rng = np.random.default_rng(1)
    F = haar_frames(10, 4, 5, rng)
    for f in F:
        np.testing.assert_allclose(f.T @ f, np.eye(4), atol=1e-5)
    X = rng.normal(size=(4, 10))
    R = rotated_inputs(input_factor(X), F)
    for r in R:  # a rotation of the input space keeps every inner product between the rows
        np.testing.assert_allclose(r @ r.T, X @ X.T, rtol=1e-4, atol=1e-4)


def test_surface_groupings_are_equal_size_and_deterministic():
    words = ["sun", "moon", "star", "comet", "rug", "desk", "lamp", "couch"]
    g = surface_groupings(words, 2, np.arange(8.0))
    assert set(g) == {"first_letter", "char_length", "frequency"}
    assert np.bincount(g["char_length"]).tolist() == [4, 4] and np.bincount(g["frequency"]).tolist() == [4, 4]
    assert "frequency" not in surface_groupings(words, 2, None)  # no token-id stand-in (issue 27)
    torch.manual_seed(0)
