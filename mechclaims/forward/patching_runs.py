"""The patching experiments the claims run, on clean/corrupt pairs: torch in, logit differences out.

Every function returns raw logit differences ``LD = logit(target) - logit(foil)`` at the last token (arrays over
pairs, and over layers or components); shares and tests are ``mechclaims.stats.patching``'s job. Sources are
captured once per call (``capture``), patched runs go through :func:`mechclaims.forward.patching.run_patched`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mechclaims.forward.attribution import capture_grad
from mechclaims.forward.capture import capture, single_token_id
from mechclaims.datasets.patching import TokenizedPairs
from mechclaims.forward.nonfinite import nonfinite_error
from mechclaims.forward.patching import PatchTable, run_patched
from mechclaims.model.sites import site
from mechclaims.stats.patching import attribution

Ids = Sequence[Sequence[int]]


def _ld(lm: Any, ids: Ids, table: PatchTable | None, target: np.ndarray, foil: np.ndarray) -> np.ndarray:
    lg = run_patched(lm, ids, table, read_tokens=np.stack([target, foil], 1))
    bad = np.flatnonzero(~np.isfinite(lg).all(1))
    if bad.size:  # a NaN logit difference is no evidence either way: stop with the diagnosis
        raise nonfinite_error(lm, ids, "hook_logits", int(bad[0]), len(ids[bad[0]]) - 1)
    return lg[:, 0] - lg[:, 1]


def logit_diffs(lm: Any, tp: TokenizedPairs) -> tuple[np.ndarray, np.ndarray]:
    """(F, C): the clean and corrupt runs' LD per pair."""
    n = len(tp.pairs)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    ld = _ld(lm, tp.clean + tp.corrupt, None, np.tile(tp.target, 2), np.tile(tp.foil, 2))
    return ld[:n], ld[n:]


def screen(lm: Any, tp: TokenizedPairs, order: Sequence[int], n_max: int, chunk: int = 24) -> list[int]:
    """The first ``n_max`` pairs of ``order`` the model gets right (F > 0 > C), checked ``chunk`` pairs at a time so
    that a large file costs only what the claims use."""
    right: list[int] = []
    for s in range(0, len(order), chunk):
        part = list(order[s:s + chunk])
        f, c = logit_diffs(lm, tp.subset(part))
        right += [i for i, a, b in zip(part, f, c) if a > 0 > b]
        if len(right) >= n_max:
            break
    return right[:n_max]


def _values(acts: Any, name: str, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Values of ``name`` at (sequence, position) pairs from an ``"all"`` capture."""
    lookup = {(int(s), int(p)): j for j, (s, p) in enumerate(zip(acts.seq, acts.pos))}
    return acts[name][[lookup[(int(r), int(p))] for r, p in zip(rows, positions)]]


def residual_sweep(lm: Any, base: Ids, source: Ids, positions: Sequence[np.ndarray], target: np.ndarray,
                   foil: np.ndarray, layers: Sequence[int]) -> np.ndarray:
    """``[n, n_layers]``: LD of ``base[i]`` with ``hook_resid_pre[l]`` at ``positions[i]`` copied from ``source[i]``
    (every listed position at once), one row per (pair, layer)."""
    n, sites = len(base), [site("hook_resid_pre", l) for l in layers]
    if n == 0:
        return np.zeros((0, len(layers)))
    src = capture(lm, source, sites, "all")
    rows = np.arange(n * len(layers)).reshape(n, len(layers))
    table = PatchTable(rows.size)
    for j, s in enumerate(sites):
        r = np.concatenate([np.full(len(positions[i]), rows[i, j]) for i in range(n)])
        seq = np.concatenate([np.full(len(positions[i]), i) for i in range(n)])
        p = np.concatenate([np.asarray(positions[i]) for i in range(n)])
        table.add(s, r, p, _values(src, s, seq, p))
    rep = [base[i] for i in range(n) for _ in layers]
    return _ld(lm, rep, table, np.repeat(target, len(layers)), np.repeat(foil, len(layers))).reshape(n, len(layers))


def heatmap(lm: Any, base: Sequence[int], source: Sequence[int], target: int, foil: int,
            layers: Sequence[int]) -> np.ndarray:
    """``[n_layers, n_tokens]``: LD of one base prompt with ``hook_resid_pre[l]`` at one position from ``source``."""
    T = len(base)
    src = capture(lm, [source], [site("hook_resid_pre", l) for l in layers], "all")
    table = PatchTable(len(layers) * T)
    for j, l in enumerate(layers):
        table.add(site("hook_resid_pre", l), j * T + np.arange(T), np.arange(T), src[site("hook_resid_pre", l)])
    ld = _ld(lm, [base] * (len(layers) * T), table, np.full(len(layers) * T, target), np.full(len(layers) * T, foil))
    return ld.reshape(len(layers), T)


def component_sites(n_layers: int) -> list[str]:
    """The components: ``hook_attn_out`` and ``hook_mlp_out`` of each layer, in layer order."""
    return [site(k, l) for l in range(n_layers) for k in ("hook_attn_out", "hook_mlp_out")]


def component_sweep(lm: Any, base: Ids, source: Ids, target: np.ndarray, foil: np.ndarray,
                    sets: Sequence[Sequence[str]]) -> np.ndarray:
    """``[n, n_sets]``: LD of ``base[i]`` with every component of ``sets[k]`` copied from ``source[i]`` at every
    token (one row per pair and set; a set of one component is that component's total effect)."""
    n, names = len(base), sorted({c for s in sets for c in s})
    if n == 0 or not sets:
        return np.zeros((n, len(sets)))
    src = capture(lm, source, names, "all")
    table = PatchTable(n * len(sets))
    for k, comps in enumerate(sets):
        rows = np.arange(n) * len(sets) + k
        r = rows[src.seq]
        for c in comps:
            table.add(c, r, src.pos, src[c])
    rep = [base[i] for i in range(n) for _ in sets]
    return _ld(lm, rep, table, np.repeat(target, len(sets)), np.repeat(foil, len(sets))).reshape(n, len(sets))


def attribution_runs(lm: Any, tp: TokenizedPairs, comps: Sequence[str],
                     control_tokens: tuple[str, str] = (" the", " a")) -> dict[str, np.ndarray]:
    """Gradient-based estimates at the corrupt runs, ``[n, n_comps]`` each, in LD units:

    - ``attribution``: sum over tokens of (clean - corrupt) . dLD/da (attribution patching);
    - ``direct``: the last token's (clean - corrupt) . dLD/d(final residual) (the direct path only);
    - ``attribution_control``: as ``attribution`` with the gradient of an unrelated logit difference
      (``control_tokens``), the control of the agreement claim.
    """
    n = len(tp.pairs)
    if n == 0:
        return {k: np.zeros((0, len(comps))) for k in ("attribution", "direct", "attribution_control")}
    clean = capture(lm, tp.clean, list(comps), "all")
    a, g, _ = capture_grad(lm, tp.corrupt, list(comps) + ["ln_final.hook_in"], tp.target, tp.foil)
    u = [single_token_id(lm, t) for t in control_tokens]
    _, gc, _ = capture_grad(lm, tp.corrupt, list(comps), np.full(n, u[0]), np.full(n, u[1]))
    last = np.flatnonzero(a.pos == np.asarray([len(x) - 1 for x in tp.corrupt])[a.seq])
    out = {k: np.zeros((n, len(comps))) for k in ("attribution", "direct", "attribution_control")}
    gf = g["ln_final.hook_in"][last]
    for j, c in enumerate(comps):
        diff = clean[c] - a[c]  # same (seq, pos) order: both captures are sorted by sequence, then position
        out["attribution"][:, j] = attribution(clean[c], a[c], g[c], a.seq, n)
        out["attribution_control"][:, j] = attribution(clean[c], a[c], gc[c], a.seq, n)
        out["direct"][:, j] = (diff[last] * gf).sum(-1)
    return out
