"""GED plants: a context feature in the MLP pre-activations at the pronoun, and its token-identity confound.

Data are claim C's: the natural windows of ``fixtures/ged_heldout.jsonl``, each rendered with the pronoun replaced by
"him" and, separately, by "her" (token held fixed: only the context differs), read at the pronoun's token. A seeded
half of the windows of each label fits the directions (``details["fit"]``); the other half is left for measurement.

Both plants overwrite ``k`` neurons at ``layer``: their pre-activation (``mlp.hook_pre``) reads ``s * r`` with no
bias, and their output rows are zeroed, so they change no later computation (a representation, not a mechanism).
``size``: the planted units' within-class SD, in units of the median within-class SD of the layer's original
pre-activations, which decides how much of the layer's variance the feature takes (and so whether a PCA-capped, shrunk
GED keeps it). The separation itself (Cohen's d of the feature between her- and him-contexts) is a property of the
signal the model carries at the pronoun; it is measured on the other half and recorded (``details["heldout_d"]``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mechclaims.datasets.pronouns import HeldoutWindows, load_heldout, load_pairs
from mechclaims.datasets.io import bundled_fixtures
from mechclaims.forward.capture import capture, encode, locate_word
from mechclaims.model.plant_core import PlantInfo, finish, mlp_parts, param_name, pick_units, planted_copy, unit
from mechclaims.model.plant_reads import mlp_input, separation
from mechclaims.model.registry import LoadedModel
from mechclaims.model.sites import site


def ged_windows(n_per_label: int | None = None, seed: int = 0) -> HeldoutWindows:
    """The bundled natural windows (all, or a seeded sample of ``n_per_label`` per label), with the pairs' classes."""
    pairs = load_pairs(bundled_fixtures() / "ged_pairs.jsonl")
    return load_heldout(bundled_fixtures() / "ged_heldout.jsonl", n_per_label=n_per_label, seed=seed,
                        contrast=pairs.contrast)


def rendered(lm: LoadedModel, held: HeldoutWindows, token_class: str) -> tuple[list[list[int]], list[int]]:
    """Every window with its pronoun replaced by ``token_class``'s token: ids cut after the pronoun (causal) and the
    pronoun's position."""
    tok = held.contrast.token(token_class)
    texts = held.rendered(lambda lab: token_class)
    pos = [locate_word(lm, t, tok) for t in texts]
    ids = encode(lm, texts)
    if lm.kind == "causal":
        ids = [x[:p + 1] for x, p in zip(ids, pos)]
    return ids, pos


def fit_split(held: HeldoutWindows, seed: int) -> np.ndarray:
    """Boolean mask of the fitting half (half of each label, seeded)."""
    rng = np.random.default_rng([seed, 4111])
    lab, fit = np.asarray(held.labels), np.zeros(len(held), bool)
    for c in held.contrast.names:
        idx = rng.permutation(np.flatnonzero(lab == c))
        fit[idx[: len(idx) // 2]] = True
    return fit


def pronoun_inputs(lm: LoadedModel, layer: int, held: HeldoutWindows) -> dict[str, np.ndarray]:
    """MLP inputs at the pronoun, per rendering class: ``{class: [n_windows, d]}``."""
    out = {}
    for c in held.contrast.names:
        ids, pos = rendered(lm, held, c)
        out[c] = mlp_input(lm, ids, layer, pos)
    return out


def pronoun_pre(lm: LoadedModel, layer: int, held: HeldoutWindows, units: Sequence[int] | None = None
                ) -> dict[str, np.ndarray]:
    """``mlp.hook_pre`` at the pronoun (captured by the engine), per rendering class, at ``units`` (default all)."""
    name, out = site("mlp.hook_pre", layer), {}
    for c in held.contrast.names:
        ids, pos = rendered(lm, held, c)
        a = capture(lm, ids, [name], pos, show=False)[name].astype(np.float64)
        out[c] = a if units is None else a[:, np.asarray(units, int)]
    return out


def _directions(X: dict[str, np.ndarray], labels: np.ndarray, names: tuple[str, str], rows: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(context direction with the token direction projected out, token direction with the context one out), on
    ``rows``. Context: her-context minus him-context means, pooled over both renderings; token: rendering "her" minus
    rendering "him" over the same windows."""
    a, b = names  # ("him", "her") in the bundled contrast
    ctx = np.mean([X[c][rows & (labels == b)].mean(0) - X[c][rows & (labels == a)].mean(0) for c in names], axis=0)
    tok = X[b][rows].mean(0) - X[a][rows].mean(0)
    tu, cu = unit(tok), unit(ctx)
    return ctx - (ctx @ tu) * tu, tok - (tok @ cu) * cu


def _plant(lm: LoadedModel, layer: int, size: float, which: str, k: int, seed: int,
           windows: HeldoutWindows | None) -> LoadedModel:
    held = windows or ged_windows()
    labels, names = np.asarray(held.labels), held.contrast.names
    fit = fit_split(held, seed)
    X = pronoun_inputs(lm, layer, held)
    ctx, tok = _directions(X, labels, names, fit)
    r = unit(ctx if which == "context" else tok)
    pre = pronoun_pre(lm, layer, held)
    # Within-class SDs on the fitting half, pooled over renderings and labels.
    within = np.concatenate([pre[c][fit & (labels == y)] - pre[c][fit & (labels == y)].mean(0)
                             for c in names for y in names])
    zin = np.concatenate([X[c][fit & (labels == y)] @ r - (X[c][fit & (labels == y)] @ r).mean()
                          for c in names for y in names])
    s = size * float(np.median(within.std(0))) / float(zin.std())
    new = planted_copy(lm)
    p = mlp_parts(new, layer)
    idx = pick_units(p.d_mlp, k, seed)
    it = torch.as_tensor(idx)
    with torch.no_grad():
        rows = p.fc.weight.T if type(p.fc).__name__ == "Conv1D" else p.fc.weight
        rows[it] = torch.as_tensor(np.tile(s * r, (k, 1)), dtype=rows.dtype)
        if getattr(p.fc, "bias", None) is not None:
            p.fc.bias[it] = 0.0
        p.w_out()[it] = 0.0
    edited = [param_name(new.model, t) for t in (p.fc.weight, getattr(p.fc, "bias", None), p.out.weight)
              if t is not None]
    got = pronoun_pre(new, layer, held, idx[:1])
    hold = ~fit
    d_ctx = {c: separation(got[c][hold & (labels == names[1]), 0], got[c][hold & (labels == names[0]), 0])
             for c in names}
    d_tok = separation(got[names[1]][hold, 0], got[names[0]][hold, 0])
    info = PlantInfo(f"ged_{which}", layer, float(size), edited, {
        "neurons": idx.tolist(), "gain": s, "fit": np.flatnonzero(fit).tolist(),
        "heldout_d": {f"as_{c}": v for c, v in d_ctx.items()}, "heldout_token_d": d_tok, "k": k, "seed": seed})
    return finish(new, lm, info, f"ged_{which}@L{layer}:s{size:g}")


def plant_ged_context(lm: LoadedModel, layer: int, size: float = 3.0, *, k: int = 4, seed: int = 0,
                  windows: HeldoutWindows | None = None) -> LoadedModel:
    """Plant a context feature: ``k`` units of ``mlp.hook_pre`` at ``layer`` read, at the pronoun, the direction
    that separates her-contexts from him-contexts with the pronoun token held fixed (fitted on half the windows, the
    token's own direction projected out). A claim must then find: with the token held fixed, GED separates the
    contexts at ``layer`` (claim C); the separation comes from the context, so it survives either rendering.
    ``windows``: the windows to fit on (default: all bundled ones; a sample keeps tests fast)."""
    return _plant(lm, layer, size, "context", k, seed, windows)


def plant_ged_token(lm: LoadedModel, layer: int, size: float = 3.0, *, k: int = 4, seed: int = 0,
                  windows: HeldoutWindows | None = None) -> LoadedModel:
    """The confound of claim C: ``k`` units read the pronoun token's identity ("her" rendering minus "him"
    rendering of the same windows, the context direction projected out). They separate the natural windows, which
    carry their own token (claim A), but not the contexts once the token is held fixed. A claim must then find:
    claim A's pass matched by token identity (its random-weights control), and no claim C effect at ``layer``."""
    return _plant(lm, layer, size, "token", k, seed, windows)
