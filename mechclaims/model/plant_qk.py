"""Q/K plants: a category-aligned component added to W_Q and W_K, and the mean-projecting confound.

Inputs are what the Q/K claims read: ``attn.hook_qk_in`` at each category word's token in the main template of
``fixtures/rsa_categories.json`` (claims/test_rsa.py's capture). Effect unit: ``delta`` = within- minus
across-category mean cosine similarity of the queries (all heads flattened), as the claims compute it
(``mechclaims.stats.rsa_rotation.delta_batch``).
"""
from __future__ import annotations

import numpy as np
import torch

from mechclaims.datasets.categories import CategorySet, load_categories, word_positions
from mechclaims.forward.capture import capture
from mechclaims.model.plant_core import PlantInfo, derived_units, finish, param_name, planted_copy, unit, unit_rows
from mechclaims.model.registry import LoadedModel
from mechclaims.model.sites import site
from mechclaims.model.weights import model_path
from mechclaims.stats.rsa_rotation import delta_batch, surface_groupings


def qk_word_inputs(lm: LoadedModel, layer: int, cs: CategorySet | None = None) -> tuple[np.ndarray, CategorySet]:
    """``[n_words, d]`` float64: ``attn.hook_qk_in`` at each word's token (main template), and the category set."""
    cs = cs or load_categories()
    ids, pos = word_positions(cs, lm.tokenizer, lm.name)
    name = site("attn.hook_qk_in", layer)
    return capture(lm, ids, [name], pos, show=False)[name].astype(np.float64), cs


def qk_deltas(lm: LoadedModel, layer: int, X: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(delta of the queries, delta of the keys) for inputs ``X`` through the model's own q/k path."""
    q, k = model_path(lm, layer)(X)
    return float(delta_batch(q[None], labels)[0]), float(delta_batch(k[None], labels)[0])


def groupings(cs: CategorySet, lm: LoadedModel) -> dict[str, np.ndarray]:
    return {"category": cs.labels, **surface_groupings(cs.words, len(cs.names), cs.frequencies())}


def _projections(lm: LoadedModel, layer: int) -> dict[str, tuple]:
    return {kind: derived_units(lm, f"attn.hook_{kind}", layer) for kind in ("q", "k")}


def category_basis(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[C, d]`` orthonormal rows spanning the category means minus the grand mean."""
    M = np.stack([X[labels == c].mean(0) - X.mean(0) for c in np.unique(labels)])
    q, _ = np.linalg.qr(M.T)
    return q.T


def plant_qk(lm: LoadedModel, layer: int, size: float, *, seed: int = 0, g_max: float = 1e4) -> LoadedModel:
    """Add ``g * A B`` to W_Q and to W_K at ``layer``: B (C x d) spans the category means of the words' qk inputs
    (minus their grand mean), A (one per projection) has orthonormal columns drawn at random (seeded) in the query
    (key) space. Queries and keys then gain a component set by the word's category, so within-category similarity
    rises. ``size``: the increase of the queries' delta (within- minus across-category mean cosine) at ``layer``
    on the category words; ``g`` is found by bisection on the model's own q path, then checked by a capture.
    A claim must then find: Q/K category structure at ``layer`` beyond label permutations and beyond rotated weights;
    not on the unedited twin, nor for the surface groupings (unless they line up with the categories)."""
    X, cs = qk_word_inputs(lm, layer)
    labels = cs.labels
    B = category_basis(X, labels)
    q0, k0 = model_path(lm, layer)(X)
    q0, k0 = q0.reshape(len(X), -1).astype(np.float64), k0.reshape(len(X), -1).astype(np.float64)
    rng = np.random.default_rng([seed, layer, 31])
    A = {kind: np.linalg.qr(rng.standard_normal((dim, B.shape[0])))[0] for kind, dim in
         (("q", q0.shape[1]), ("k", k0.shape[1]))}
    base = float(delta_batch(q0[None], labels)[0])

    def gain_delta(g: float) -> float:
        return float(delta_batch((q0 + g * (X @ B.T) @ A["q"].T)[None], labels)[0]) - base

    lo, hi = 0.0, 1.0
    while gain_delta(hi) < size:
        if hi >= g_max:
            raise ValueError(f"{lm.name} layer {layer}: a category component can raise the queries' delta by at most "
                             f"{gain_delta(hi):.3f}; asked for {size}")
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gain_delta(mid) < size else (lo, mid)
    g = (lo + hi) / 2
    new = planted_copy(lm)
    edited = []
    with torch.no_grad():
        for kind, (mod, units) in _projections(new, layer).items():
            rows = unit_rows(mod)
            add = torch.as_tensor(g * A[kind] @ B, dtype=rows.dtype)
            rows[units] = rows[units] + add
            edited.append(param_name(new.model, mod.weight))
    after = qk_deltas(new, layer, *qk_word_inputs(new, layer)[:1], labels)
    info = PlantInfo("qk_category", layer, float(size), edited, {
        "gain": g, "delta_before": qk_deltas(lm, layer, X, labels), "delta_after": after,
        "measured_q_delta_increase": after[0] - base, "seed": seed})
    return finish(new, lm, info, f"qk@L{layer}:s{size:g}")


def plant_qk_mean_projection(lm: LoadedModel, layer: int, size: float = 1.0) -> LoadedModel:
    """The confound of the Q/K claims' "beyond input" reading: W_Q and W_K at ``layer`` project out the inputs' shared
    mean direction (``W <- W (I - size m m^T)``, m = the unit grand mean of the category words' qk inputs). It uses no
    category label (the same edit for any grouping of the words), yet it removes the common component that compresses
    every cosine, so within-minus-across differences grow for any grouping the inputs carry; rotated copies of the
    weights do not share the null direction. ``size`` in [0, 1]: the fraction of the mean direction removed.
    A claim must then find: its surface-grouping controls pass alongside the category reading (``confounded``)."""
    X, cs = qk_word_inputs(lm, layer)
    m = torch.as_tensor(unit(X.mean(0)))
    new = planted_copy(lm)
    edited = []
    with torch.no_grad():
        for kind, (mod, units) in _projections(new, layer).items():
            rows = unit_rows(mod)
            r = rows[units]
            rows[units] = r - size * torch.outer(r @ m.to(r.dtype), m.to(r.dtype))
            edited.append(param_name(new.model, mod.weight))
    groups = groupings(cs, lm)
    X2 = qk_word_inputs(new, layer)[0]
    before = {g: qk_deltas(lm, layer, X, lab) for g, lab in groups.items()}
    after = {g: qk_deltas(new, layer, X2, lab) for g, lab in groups.items()}
    info = PlantInfo("qk_mean_projection", layer, float(size), edited, {"delta_before": before, "delta_after": after})
    return finish(new, lm, info, f"qk_meanproj@L{layer}:s{size:g}")
