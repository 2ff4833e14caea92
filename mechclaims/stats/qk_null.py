"""Draws of the spectrum-matched Q/K null: a q/k path fed with randomly rotated inputs.

The statistics are in :mod:`mechclaims.stats.rsa_rotation`; this module only runs the projections it is given (on a
model: :func:`mechclaims.model.weights.model_path`) on rotated copies of the captured ``attn.hook_qk_in`` rows, in chunks, and stops
sequentially (:func:`mechclaims.stats.common.sequential_null`). Torch is touched only through ``path``.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from mechclaims.stats.common import sequential_null
from mechclaims.stats.rsa_rotation import (auc_cos, complement_frames, cos_upper, delta_batch, delta_cos, haar_frames,
                                           input_factor, rho_batch, rho_cos, rotated_inputs)


def rotation_null(path: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], X: np.ndarray, Q: np.ndarray,
                  K: np.ndarray, groupings: Mapping[str, np.ndarray], *, n_max: int, seed: int, h: int = 10,
                  fixed: np.ndarray | None = None) -> tuple[dict[str, float], dict[str, np.ndarray], dict[str, float], int]:
    """Observed statistics, their rotated-weight nulls and sequential p-values at one layer.

    ``path(X [m, d]) -> (Q [m, ...], K [m, ...])``: the q/k path (:func:`mechclaims.model.weights.model_path` on a model; any numpy function
    in the calibration tests). ``X [n, d]``: the captured q/k input at each word; ``Q [n, ...]``, ``K [n, ...]``: the captured queries and keys;
    ``groupings``: name -> labels per word (the first is the categories). Keys: ``rho`` (Q-K RSA) and
    ``delta_q.<g>`` / ``delta_k.<g>`` per grouping, each with an upper tail (``<key>``) and a lower tail
    (``<key>.less``, the opposite direction); the nulls also hold ``auc_q``/``auc_k`` of the first grouping.
    ``fixed [d, k]`` (orthonormal columns, e.g. :func:`mechclaims.stats.rsa_rotation.fixed_basis`): directions of the
    input space kept in place; only the inputs' component in their complement is rotated, inside the complement.
    Returns (observed, nulls, p, draws made)."""
    X = np.asarray(X)
    keep = None if fixed is None else (X @ fixed) @ fixed.T  # [n, d]: the inputs' part along the fixed directions
    US = input_factor(X if keep is None else X - keep)
    n, r, d = len(X), US.shape[1], X.shape[1]

    def rotated(b: int, rng: np.random.Generator) -> np.ndarray:
        if keep is None:
            return rotated_inputs(US, haar_frames(d, r, b, rng)).astype(np.float32)
        return (rotated_inputs(US, complement_frames(fixed, r, b, rng)) + keep).astype(np.float32)

    obs = {"rho": float(rho_batch(Q[None], K[None])[0])}
    for g, lab in groupings.items():
        obs[f"delta_q.{g}"] = float(delta_batch(Q[None], lab)[0])
        obs[f"delta_k.{g}"] = float(delta_batch(K[None], lab)[0])
    observed = {**{k: (v, "greater") for k, v in obs.items()}, **{f"{k}.less": (v, "less") for k, v in obs.items()}}

    def draw(b: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        Xq, Xk = rotated(b, rng), rotated(b, rng)
        q = path(Xq.reshape(b * n, d))[0].reshape(b, n, -1)
        k = path(Xk.reshape(b * n, d))[1].reshape(b, n, -1)
        sq, sk = cos_upper(q), cos_upper(k)  # once per draw; every statistic below reads them
        out = {"rho": rho_cos(sq, sk)}
        for g, lab in groupings.items():
            out[f"delta_q.{g}"], out[f"delta_k.{g}"] = delta_cos(sq, lab), delta_cos(sk, lab)
        out = {**out, **{f"{key}.less": v for key, v in out.items()}}
        lab = next(iter(groupings.values()))  # reported: the null's AUC for the first grouping (the categories)
        out["auc_q"], out["auc_k"] = auc_cos(sq, lab), auc_cos(sk, lab)
        return out

    nulls, ps, made = sequential_null(observed, draw, n_max, seed, h, stop="all")
    return obs, nulls, ps, made
