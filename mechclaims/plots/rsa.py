"""Figures for the Q/K category-selectivity and Q-K RSA claims. Each function draws one figure kind and
saves it through :func:`save_figure`; inputs are plain arrays, so they plot synthetic data as well."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mechclaims.plots import plt
from mechclaims.plots import save_figure


def _upper_pairs(labels: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    iu = np.triu_indices(len(labels), 1)
    return iu, labels[iu[0]] == labels[iu[1]]


def _matrix(ax, S: np.ndarray, labels: np.ndarray, names: Sequence[str], words: Sequence[str] | None,
            title: str) -> None:
    """Heatmap with category borders; word tick labels if ``words`` is given (slow: ~100 text layouts)."""
    im = ax.imshow(S, cmap="viridis", interpolation="nearest")
    ax.set_title(title)
    edges = np.flatnonzero(np.diff(labels)) + 0.5
    for e in edges:  # category block borders
        ax.axhline(e, color="w", lw=0.8)
        ax.axvline(e, color="w", lw=0.8)
    if words is not None and len(words) <= 60:
        ax.set_xticks(range(len(words)), words, rotation=90, fontsize=5)
        ax.set_yticks(range(len(words)), words, fontsize=5)
    else:
        mids = [np.mean(np.flatnonzero(labels == c)) for c in range(len(names))]
        ax.set_xticks(mids, names, rotation=45, fontsize=7)
        ax.set_yticks(mids, names, fontsize=7)
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def original_panels(S_q: np.ndarray, S_k: np.ndarray, labels: np.ndarray, names: Sequence[str],
                    words: Sequence[str] | None, path: str | Path, title: str = "") -> Path:
    """The original analysis' panels for one layer: Q and K similarity matrices, within/across histograms of
    each, and the Q-vs-K scatter of all pairs (within-category pairs coloured by category). Pass ``words`` to
    label every row (costs seconds); ``None`` labels the category blocks."""
    labels = np.asarray(labels)
    iu, same = _upper_pairs(labels)
    uq, uk = S_q[iu], S_k[iu]
    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    _matrix(axes[0, 0], S_q, labels, names, words, "Q cosine similarity")
    _matrix(axes[0, 1], S_k, labels, names, words, "K cosine similarity")
    for ax, u, nm in ((axes[1, 0], uq, "Q"), (axes[1, 1], uk, "K")):
        bins = np.linspace(np.nanmin(u), np.nanmax(u), 30)
        ax.hist(u[~same], bins=bins, alpha=0.6, density=True, label=f"across (n={int((~same).sum())})")
        ax.hist(u[same], bins=bins, alpha=0.6, density=True, label=f"within (n={int(same.sum())})")
        ax.set_xlabel(f"{nm} cosine similarity")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    ax = axes[0, 2]
    ax.scatter(uq[~same], uk[~same], s=4, c="0.7", label="across")
    for c, nm in enumerate(names):
        m = same & (labels[iu[0]] == c)
        ax.scatter(uq[m], uk[m], s=8, label=nm)
    ax.set_xlabel("Q similarity")
    ax.set_ylabel("K similarity")
    ax.set_title("Q vs K, all pairs")
    ax.legend(fontsize=7, markerscale=2)
    axes[1, 2].axis("off")
    fig.suptitle(title)
    fig.subplots_adjust(wspace=0.5, hspace=0.3)  # tight_layout costs a full extra text layout pass
    return save_figure(fig, path)


def qk_scatter_by_category(S_q: np.ndarray, S_k: np.ndarray, labels: np.ndarray, names: Sequence[str],
                           path: str | Path, rho: Sequence[float] | None = None, title: str = "") -> Path:
    """Q-vs-K similarity scatter of within-category pairs, one panel per category (rho in the title if given)."""
    labels = np.asarray(labels)
    iu, _ = _upper_pairs(labels)
    n = len(names)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    for c, (ax, nm) in enumerate(zip(axes[0], names)):
        m = (labels[iu[0]] == c) & (labels[iu[1]] == c)
        ax.scatter(S_q[iu][m], S_k[iu][m], s=10, color=f"C{c}")
        ax.set_title(nm + ("" if rho is None else f"  rho={rho[c]:.2f}"), fontsize=9)
        ax.set_xlabel("Q similarity")
    axes[0, 0].set_ylabel("K similarity")
    fig.suptitle(title)
    fig.subplots_adjust(wspace=0.3, top=0.82, bottom=0.18)
    return save_figure(fig, path)


def null_distribution(observed: float, null: np.ndarray, path: str | Path, xlabel: str, title: str = "",
                      others: Mapping[str, float] | None = None) -> Path:
    """Histogram of a null distribution with the observed value (and optional other marked values, e.g. a
    control) as vertical lines; z and p in the legend."""
    null = np.asarray(null, float)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.hist(null, bins=40, color="0.6", label=f"null (n={len(null)})")
    sd = null.std(ddof=1)
    z = (observed - null.mean()) / sd if sd > 0 else float("nan")
    p = (np.sum(null >= observed) + 1) / (len(null) + 1)
    ax.axvline(observed, color="C3", lw=2, label=f"observed {observed:.4g} (z={z:.1f}, p={p:.3g})")
    for i, (nm, v) in enumerate((others or {}).items()):
        ax.axvline(v, color=f"C{i}", ls="--", lw=1.5, label=f"{nm} {v:.4g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def z_by_layer(series: Mapping[str, np.ndarray], path: str | Path, layers: Sequence[int] | None = None,
               threshold: float | None = None, ylabel: str = "selectivity z (within - across vs permutation null)",
               title: str = "") -> Path:
    """One line per series (Q, K, centred, controls) of a z-score per layer; optional threshold line."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (nm, z) in enumerate(series.items()):
        z = np.asarray(z, float)
        ax.plot(np.arange(len(z)) if layers is None else layers, z, marker="o", ms=3, label=nm, color=f"C{i}",
                ls="--" if "control" in nm or "random" in nm else "-")
    ax.axhline(0, color="0.5", lw=0.8)
    if threshold is not None:
        ax.axhline(threshold, color="k", ls=":", lw=1, label=f"z = {threshold:g}")
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def rsa_by_layer(rho: np.ndarray, rand, path: str | Path, ci: tuple[np.ndarray, np.ndarray] | None = None,
                 extra: Mapping[str, np.ndarray] | None = None, title: str = "",
                 layers: Sequence[int] | None = None, ylabel: str = "Spearman rho(Q sim, K sim)",
                 null_label: str = "rotated-weights null") -> Path:
    """A learned statistic per layer against its null's band (5-95% and median). ``rand``: ``[L, draws]`` or one
    array of draws per layer (sequential nulls stop at different counts)."""
    rho = np.asarray(rho, float)
    x = np.arange(len(rho)) if layers is None else np.asarray(layers)
    lo, med, hi = np.array([np.quantile(np.asarray(r, float), [0.05, 0.5, 0.95]) for r in rand]).T
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(x, lo, hi, color="0.8", label=f"{null_label} (5-95%)")
    ax.plot(x, med, color="0.4", lw=1, label=f"{null_label}, median")
    ax.plot(x, rho, marker="o", ms=3, color="C3", label="learned")
    if ci is not None:
        ax.fill_between(x, ci[0], ci[1], color="C3", alpha=0.2, label="learned, 95% CI over words")
    for i, (nm, v) in enumerate((extra or {}).items()):
        ax.plot(x, v, marker=".", ls="--", color=f"C{i}", label=nm)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)

