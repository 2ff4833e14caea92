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
from mechclaims.forward.capture import at_words, capture
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
    return at_words(lm, texts, [tok] * len(texts))


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


def input_contrast(lm: LoadedModel, layer: int, first: tuple[Sequence[str], Sequence[str]],
                   second: tuple[Sequence[str], Sequence[str]]) -> np.ndarray:
    """Mean MLP input at ``layer`` at the read words of ``first`` minus that of ``second`` ((texts, words) each)."""
    out = []
    for texts, words in (first, second):
        ids, pos = at_words(lm, texts, words)
        out.append(mlp_input(lm, ids, layer, pos).mean(0))
    return out[0] - out[1]


def _units_planted(lm: LoadedModel, layer: int) -> list[int]:
    """Neurons that earlier plants in ``lm``'s chain wrote at ``layer`` (a new plant must not reuse them)."""
    out, info = [], lm.extra.get("plant")
    node = vars(info) if info is not None else None
    while node:
        if node.get("layer") == layer:
            out += list(node.get("details", {}).get("neurons", []))
        node = node.get("parent")
    return out


def plant_ged_word(lm: LoadedModel, layer: int, first: tuple[Sequence[str], Sequence[str]],
                   second: tuple[Sequence[str], Sequence[str]], size: float = 0.3, *, k: int = 4, gain: float = 3.0,
                   ratio: float = 2.0, noise: float = 0.5, n_noise: int = 24, seed: int = 0, tag: str = "word",
                   avoid: Sequence[np.ndarray] = ()) -> LoadedModel:
    """Plant what claim A's GED rule detects, for any two classes of sentences read at a stated word: from
    ``layer + 1`` on, the read position carries extra variance and a mean shift along one direction (q1) in the first
    class only, and along another (q2, orthogonal) in the second class only (the structure of the rule's own planted
    test, tests/test_stats_ged.py: mean / SD of the planted coordinate = ``ratio``).

    ``first``/``second``: (texts, read words) of the two classes (fit on the caller's training rows). ``k`` neurons
    of the MLP at ``layer`` gate on the class: they read, at the read word, the Fisher direction separating the
    classes' MLP inputs (ridge-regularised, threshold at the midpoint, ``gain`` per pooled SD), plus a context
    direction (a top principal component of the inputs, the class direction projected out) whose weight sets the
    activation's spread, so through the nonlinearity they fire on the first class only, by an amount that varies with
    the context; they write along q1. ``k`` more do the same for the second class (another context direction) along
    q2. ``size``: the written vector's norm at a class's mean activation, in units of the median norm of the residual
    at the read position after ``layer``. On the same-word pairs (Monday/Friday, both read at "him") it is the
    confound of claim A's ``ged_same_word`` control; on him/her pairs it is a category feature that claim A's rule
    finds (tests/test_ged_same_word.py). Gated MLPs are not supported.

    ``noise`` > 0 adds ``n_noise`` dimensions of within-pair variation that carries no class: in each, two units
    write the same direction, one reading ``+class + context_j``, the other ``-class + context_j'`` (two other
    context directions), so both classes have the same distribution there while the two sentences of a pair differ by
    a context-dependent amount of either sign (SD ``noise`` times the planted coordinate's). A model's own pairs carry
    such variation; without it every shuffled-label refit falls into the planted plane and the rule's specificity
    test cannot tell the fit from its refits (measured on tiny-gpt2: the unedited twin's Monday/Friday pairs differ
    so little at the pronoun that the refits' median |d| reached half the fit's).

    ``avoid``: MLP-input directions every read of the plant is made orthogonal to (e.g. :func:`input_contrast` of
    him/her pairs, so a same-word plant fires alike on a pair's him and her sentences and leaves claim A's data
    alone)."""
    new = planted_copy(lm)
    p = mlp_parts(new, layer)
    if p.gated:
        raise NotImplementedError(f"{lm.name}: plant_ged_word needs an ungated MLP (GPT-2 style)")
    X, norms = [], []
    for texts, words in (first, second):
        ids, pos = at_words(lm, texts, words)
        X.append(mlp_input(lm, ids, layer, pos))
        name = site("hook_resid_post", layer)
        norms.append(np.linalg.norm(capture(lm, ids, [name], pos, show=False)[name].astype(np.float64), axis=1))
    if len(avoid):
        B = np.linalg.qr(np.column_stack([np.asarray(a, np.float64) for a in avoid]))[0]
        X = [x - (x @ B) @ B.T for x in X]
    within = np.vstack([X[0] - X[0].mean(0), X[1] - X[1].mean(0)])
    cw = np.cov(within, rowvar=False)
    u = unit(np.linalg.solve(cw + 0.1 * np.trace(cw) / len(cw) * np.eye(len(cw)), X[0].mean(0) - X[1].mean(0)))
    pa, pb = X[0] @ u, X[1] @ u
    mid, sd = (pa.mean() + pb.mean()) / 2, float(np.sqrt((pa.var(ddof=1) + pb.var(ddof=1)) / 2))
    half = float((pa.mean() - pb.mean()) / (2 * sd))  # each class's distance from the threshold, in SDs
    rest = within - np.outer(within @ u, u)
    ctx_dirs = np.linalg.svd(rest, full_matrices=False)[2]  # context directions (PCs, u projected out), top first
    # Mean / SD of a unit's pre-activation on its own class is ``half`` with gain alone: a context term (h) lowers
    # it, a threshold moved towards the other class (shift, in SDs) raises it.
    h = float(np.sqrt(max((gain * half / ratio) ** 2 - gain ** 2, 0.0)))
    shift = max(ratio - half, 0.0)
    d_model = X[0].shape[1]
    q = np.linalg.qr(np.random.default_rng([seed, 4177]).normal(size=(d_model, 2)))[0]
    idx = pick_units(p.d_mlp, 2 * k, seed, exclude=_units_planted(lm, layer))
    act = getattr(p.parent, "act_fn", None) or getattr(p.parent, "act")
    scale = size * float(np.median(np.concatenate(norms)))
    rows_in = p.fc.weight.T if type(p.fc).__name__ == "Conv1D" else p.fc.weight
    means, spreads = [], []
    allx = np.vstack(X)
    with torch.no_grad():
        for j, sign in enumerate((1.0, -1.0)):
            v = ctx_dirs[j]
            vm, vs = float((allx @ v).mean()), float((allx @ v).std())
            w = sign * gain * u / sd + h * v / vs
            b = -sign * gain * mid / sd - h * vm / vs + gain * shift
            own = X[j] @ w + b  # the units' pre-activation on their own class's rows
            a = act(torch.as_tensor(own)).numpy()
            means.append(float(a.mean()))
            spreads.append(float(a.std()))
            units = torch.as_tensor(idx[j * k:(j + 1) * k])
            rows_in[units] = torch.as_tensor(np.tile(w, (k, 1)), dtype=rows_in.dtype)
            p.fc.bias[units] = float(b)
            p.w_out()[units] = torch.as_tensor(np.tile(q[:, j] * scale / (k * means[-1]), (k, 1)), dtype=rows_in.dtype)
        if noise > 0:
            _noise_units(p, rows_in, act, allx, u, mid, sd, gain, within, q, idx, noise * spreads[0] * scale / means[0],
                         n_noise, k, seed, lm, layer)
    edited = [param_name(new.model, t) for t in (p.fc.weight, p.fc.bias, p.out.weight)]
    info = PlantInfo(f"ged_word_{tag}", layer, float(size), edited, {
        "neurons": idx.tolist(), "gain": gain, "context_gain": h, "shift": shift, "separation_d": 2 * half,
        "mean_activation": means, "sd_activation": spreads, "residual_norm": scale / size if size else 0.0, "k": k,
        "seed": seed})
    return finish(new, lm, info, f"ged_word_{tag}@L{layer}:s{size:g}")


def _noise_units(p, rows_in, act, allx, u, mid, sd, gain, within, q, idx, size, n, k, seed, lm, layer) -> None:
    """``n`` class-free dimensions of within-pair variation (see :func:`plant_ged_word`): SD ``size`` each."""
    d = allx.shape[1]
    dirs = np.linalg.svd(within - np.outer(within @ u, u), full_matrices=False)[2][2:2 + 2 * n]
    basis = np.linalg.qr(np.hstack([q, np.random.default_rng([seed, 4178]).normal(size=(d, n))]))[0][:, 2:]
    units = pick_units(p.d_mlp, 2 * n, seed + 1, exclude=list(idx) + _units_planted(lm, layer))
    z = (allx @ u - mid) / sd
    for j in range(n):
        got = []
        for m, sign in enumerate((1.0, -1.0)):
            v = dirs[(2 * j + m) % len(dirs)]
            vm, vs = float((allx @ v).mean()), float((allx @ v).std())
            w, b = sign * gain * u / sd + gain * v / vs, -sign * gain * mid / sd - gain * vm / vs
            got.append(act(torch.as_tensor(sign * gain * z + gain * ((allx @ v) - vm) / vs)).numpy())
            rows_in[int(units[2 * j + m])] = torch.as_tensor(w, dtype=rows_in.dtype)
            p.fc.bias[int(units[2 * j + m])] = float(b)
        spread = float(np.std(got[0] + got[1])) or 1.0
        for m in range(2):
            p.w_out()[int(units[2 * j + m])] = torch.as_tensor(basis[:, j] * size / spread, dtype=rows_in.dtype)
