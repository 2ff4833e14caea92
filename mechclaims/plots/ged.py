"""GED figures: the original analysis' four panels per model, and the permutation nulls with the observed values."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

from . import plt, save_figure
from ..stats.ged import DIRECTIONS, GEDLayer

_COLORS = {"him>her": "tab:blue", "her>him": "tab:red"}


def _col(results: Sequence[GEDLayer], direction: str, key: str) -> np.ndarray:
    return np.array([r.numbers.get(direction, {}).get(key, np.nan) for r in results], float)


def plot_ged_layers(layers: Sequence[int], results: Sequence[GEDLayer], path: str | Path, *, title: str,
                    test_set: str = "natural", baseline: GEDLayer | None = None) -> Path:
    """Four panels across layers: |t| train (in-sample, circular) and test (held-out) for both directions, with
    the embedding-only baseline; pattern correlation of the two directions; top eigenvalues against the null's
    95th percentile; components kept at 99% variance."""
    x = np.asarray(layers)
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    a = ax[0, 0]
    for d in DIRECTIONS:
        a.plot(x, np.abs(_col(results, d, "t_in_sample")), "--", color=_COLORS[d], alpha=.6,
               label=f"{d} train (in-sample, circular)")
        a.plot(x, np.abs(_col(results, d, f"t_{test_set}")), "o-", color=_COLORS[d], label=f"{d} held-out {test_set}")
        if baseline is not None and not baseline.degenerate:
            a.axhline(abs(baseline.numbers[d].get(f"t_{test_set}", np.nan)), color=_COLORS[d], ls=":", lw=1,
                      label=f"{d} embedding-only baseline")
    if baseline is not None and baseline.degenerate:
        a.text(0.01, 0.98, "embedding-only baseline: perfect separation\n(token identity alone, |t| = inf)",
               transform=a.transAxes, va="top", fontsize=7)
    a.set(xlabel="layer", ylabel="|t|", title="|t| him vs her on the top component", yscale="symlog")
    a.set_ylim(bottom=0)
    a.legend(fontsize=6)
    a = ax[0, 1]
    a.plot(x, [r.pattern_corr for r in results], "o-", color="k")
    a.axhline(0, color="grey", lw=.5)
    a.set(xlabel="layer", ylabel="r", ylim=(-1.05, 1.05), title="correlation of the two directions' patterns")
    a = ax[1, 0]
    for d in DIRECTIONS:
        a.plot(x, _col(results, d, "top_eigenvalue"), "o-", color=_COLORS[d], label=f"{d} top eigenvalue")
    q95 = [np.quantile(r.eig_null, .95) if len(r.eig_null) else np.nan for r in results]
    a.plot(x, q95, "k:", label="max-eigenvalue null, 95th pct")
    a.set(xlabel="layer", ylabel="eigenvalue", yscale="log", title="top generalized eigenvalue")
    a.legend(fontsize=7)
    a = ax[1, 1]
    a.bar(x, [r.n_components for r in results], color="grey")
    a.set(xlabel="layer", ylabel="components", title="PCA components to 99% variance")
    for a in ax.flat:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_ged_null(layers: Sequence[int], results: Sequence[GEDLayer], path: str | Path, *, title: str,
                  test_set: str = "natural") -> Path:
    """Per layer: the max-eigenvalue null (histogram) with both observed top eigenvalues, and the refit null of
    held-out |d| with both observed |d|."""
    n = len(layers)
    cols = min(n, 6)
    rows = math.ceil(n / cols)
    fig, ax = plt.subplots(2 * rows, cols, figsize=(2.4 * cols, 3.8 * rows), squeeze=False)
    for i, (layer, r) in enumerate(zip(layers, results)):
        for j, (null, key, lab) in enumerate(((r.eig_null, "top_eigenvalue", "top eig"),
                                              (r.d_null.get(test_set, np.array([])), f"d_{test_set}", "|d|"))):
            a = ax[2 * (i // cols) + j, i % cols]
            if len(null):
                a.hist(null, bins=30, color="lightgrey")
            for d in DIRECTIONS:
                v = r.numbers.get(d, {}).get(key, np.nan)
                if np.isfinite(v):
                    a.axvline(abs(v), color=_COLORS[d], lw=1.5)
            a.set_title(f"L{layer} {lab}", fontsize=8)
            a.tick_params(labelsize=6)
    for k in range(n, rows * cols):
        for j in range(2):
            ax[2 * (k // cols) + j, k % cols].axis("off")
    fig.suptitle(f"{title}\nnull (grey) vs observed: blue him>her, red her>him", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (3.8 * rows)))
    return save_figure(fig, path)
