"""GED figures: the per-layer profile against shuffled-label refits and the random-weight copy, and the nulls."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from mechclaims.plots import plt
from mechclaims.plots import save_figure
from mechclaims.stats.ged import GEDLayer

_COLORS = ("tab:blue", "tab:red")  # A>B, B>A
OUTCOME_COLORS = {"supported": "#2e7d32", "confounded": "#8e24aa", "refuted": "#ef6c00", "inconclusive": "#90a4ae"}


def _col(results: Sequence[GEDLayer], direction: str, key: str) -> np.ndarray:
    return np.array([r.numbers.get(direction, {}).get(key, np.nan) for r in results], float)


def _q(results: Sequence[GEDLayer], key: str, q: float) -> np.ndarray:
    return np.array([np.quantile(r.nulls[key], q) if r.nulls.get(key) is not None and r.nulls[key].size else np.nan
                     for r in results])


def plot_ged_layers(layers: Sequence[int], real: Sequence[GEDLayer], rand: Sequence[GEDLayer],
                    outcomes: Mapping[int, str], path: str | Path, *, title: str, alpha: float,
                    sets: Sequence[str] = ("natural", "pairs")) -> Path:
    """Four panels across layers: held-out |d| of each direction against the refits' band and the random-weight copy;
    the refit p of held-out |d| (log scale, the alpha / n_layers line); top eigenvalues against the refits' 95th
    percentile; each layer's outcome."""
    x = np.asarray(layers)
    s = sets[0]
    DIRECTIONS = real[0].directions
    col = dict(zip(DIRECTIONS, _COLORS))
    fig, ax = plt.subplots(2, 2, figsize=(11.5, 7.5))
    a = ax[0, 0]
    a.fill_between(x, _q(real, f"{DIRECTIONS[0]}.d_{s}", .05), _q(real, f"{DIRECTIONS[0]}.d_{s}", .95),
                   color="lightgrey",
                   label="shuffled-label refits, 5-95%")
    for d in DIRECTIONS:
        a.plot(x, np.abs(_col(real, d, f"d_{s}")), "o-", color=col[d], label=f"{d}")
        a.plot(x, np.abs(_col(rand, d, f"d_{s}")), ":", color=col[d], label=f"{d}, random-weight copy")
    a.set(xlabel="layer", ylabel="|Cohen's d|", title=f"held-out separation ({s})")
    a.legend(fontsize=6)
    a = ax[0, 1]
    for d in DIRECTIONS:
        for t in sets:
            ls = "o-" if t == s else "s--"
            a.plot(x, _col(real, d, f"p_refit_{t}"), ls, color=col[d], ms=4, label=f"{d} {t}")
        a.plot(x, _col(rand, d, f"p_refit_{s}"), ":", color=col[d], label=f"{d} {s}, random weights")
    a.axhline(alpha, color="k", lw=1, label=f"alpha / n_layers = {alpha:.2g}")
    a.set(xlabel="layer", ylabel="refit p of held-out |d|", yscale="log", title="specificity: did the labels matter?")
    a.legend(fontsize=6)
    a = ax[1, 0]
    for d in DIRECTIONS:
        a.plot(x, _col(real, d, "top_eigenvalue"), "o-", color=col[d], label=f"{d} top eigenvalue")
    a.plot(x, _q(real, f"{DIRECTIONS[0]}.eig", .95), "k:", label="refits' top eigenvalue, 95th pct")
    a.set(xlabel="layer", ylabel="eigenvalue", yscale="log", title="top generalized eigenvalue")
    a.legend(fontsize=7)
    a = ax[1, 1]
    a.bar(x, [r.n_components for r in real], color=[OUTCOME_COLORS.get(outcomes.get(l), "k") for l in layers])
    a.legend(handles=[Patch(color=c, label=o) for o, c in OUTCOME_COLORS.items()], fontsize=7, loc="upper right")
    a.set(xlabel="layer", ylabel="PCA components kept", title="outcome per layer (bar colour)")
    for a in ax.flat:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_ged_null(layers: Sequence[int], results: Sequence[GEDLayer], path: str | Path, *, title: str,
                  test_set: str = "natural") -> Path:
    """Per layer: the refits' top eigenvalues (histogram) with both observed ones, and the refits' held-out |d|
    with both observed |d|. Fewer draws where the sequential null stopped early."""
    n = len(layers)
    cols = min(n, 6)
    rows = math.ceil(n / cols)
    fig, ax = plt.subplots(2 * rows, cols, figsize=(2.4 * cols, 3.8 * rows), squeeze=False)
    DIRECTIONS = results[0].directions
    col = dict(zip(DIRECTIONS, _COLORS))
    for i, (layer, r) in enumerate(zip(layers, results)):
        for j, (key, obs, lab) in enumerate(((f"{DIRECTIONS[0]}.eig", "top_eigenvalue", "top eig"),
                                             (f"{DIRECTIONS[0]}.d_{test_set}", f"d_{test_set}", "|d|"))):
            a = ax[2 * (i // cols) + j, i % cols]
            null = r.nulls.get(key, np.zeros(0))
            if null.size:
                a.hist(null, bins=30, color="lightgrey")
            for d in DIRECTIONS:
                v = r.numbers.get(d, {}).get(obs, np.nan)
                if np.isfinite(v):
                    a.axvline(abs(v), color=col[d], lw=1.5)
            a.set_title(f"L{layer} {lab} (n={null.size})", fontsize=8)
            a.tick_params(labelsize=6)
    for k in range(n, rows * cols):
        for j in range(2):
            ax[2 * (k // cols) + j, k % cols].axis("off")
    fig.suptitle(f"{title}\nshuffled-label refits (grey) vs observed: blue {DIRECTIONS[0]}, red {DIRECTIONS[1]}",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (3.8 * rows)))
    return save_figure(fig, path)
