"""Claim D's null (issue 27, round three): the rotated-weights null with the inputs' mean direction held in place.

Claims: weights that carry no category information but project out the inputs' shared mean (a category-agnostic
property of learned weights) pass the plain rotation null (claim C's) far above alpha, and the mean-fixed null
(claim D's) near alpha; the mean-fixed frames stay orthonormal and orthogonal to the fixed direction.
Falsified by: the mean-fixed null rejecting such weights well above alpha (before: only the plain null existed,
37/40 rejections at 0.05).
"""
from __future__ import annotations

import numpy as np

from mechclaims.stats.qk_null import rotation_null
from mechclaims.stats.rsa_rotation import complement_frames, fixed_basis

LAB = np.repeat(np.arange(4), 12)


def _mean_projecting(i: int, d: int = 64):
    rng = np.random.default_rng(i)
    mu = rng.normal(size=d)
    X = 8 * mu / np.linalg.norm(mu) + (0.5 * rng.normal(size=(4, d)))[LAB] + rng.normal(size=(48, d))
    m = fixed_basis(X)[:, 0]
    P = np.eye(d) - np.outer(m, m)
    Wq, Wk = rng.normal(size=(32, d)) @ P, rng.normal(size=(32, d)) @ P
    return X, (lambda Z: (Z @ Wq.T, Z @ Wk.T))


def test_complement_frames_are_orthonormal_and_orthogonal_to_the_fixed_direction():
    M = fixed_basis(np.random.default_rng(0).normal(size=(10, 16)) + 3)
    F = complement_frames(M, 5, 4, np.random.default_rng(1)).astype(np.float64)
    np.testing.assert_allclose(np.swapaxes(F, 1, 2) @ F, np.broadcast_to(np.eye(5), (4, 5, 5)), atol=1e-5)
    assert np.abs(np.swapaxes(F, 1, 2) @ M).max() < 1e-5


def test_mean_projecting_weights_pass_the_plain_null_not_the_mean_fixed_one():
    n, hits = 40, {"plain": 0, "fixed": 0}
    for i in range(n):
        X, path = _mean_projecting(i)
        Q, K = path(X)
        for name, fx in (("plain", None), ("fixed", fixed_basis(X))):
            ps = rotation_null(path, X, Q, K, {"category": LAB}, n_max=99, seed=i, fixed=fx)[2]
            hits[name] += ps["delta_q.category"] <= 0.05
    assert hits["plain"] >= 0.6 * n, hits  # measured 37/40 at 199 draws
    assert hits["fixed"] <= 0.2 * n, hits  # measured 3/40 at 199 draws (nominal 0.05)
