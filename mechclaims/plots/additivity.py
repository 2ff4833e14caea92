"""Figures for residual additivity: reconstruction vs next hidden state, and the error profile per layer."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mechclaims.plots import plt
from mechclaims.plots import save_figure


def reconstruction_scatter(h_next: np.ndarray, recon: np.ndarray, h_only: np.ndarray, title: str, path: Path,
                           max_points: int = 4000, seed: int = 0) -> Path:
    """Coordinates of h[l+1] against the full reconstruction and against h[l] alone."""
    rng = np.random.default_rng(seed)
    x, y, z = h_next.ravel(), recon.ravel(), h_only.ravel()
    idx = rng.choice(len(x), size=min(max_points, len(x)), replace=False)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharex=True, sharey=True)
    for ax, other, lab in ((axes[0], y, "h[l] + attn_out + mlp_out"), (axes[1], z, "h[l] alone")):
        ax.scatter(x[idx], other[idx], s=2, alpha=0.3, rasterized=True)
        lim = [float(np.min(x[idx])), float(np.max(x[idx]))]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel("h[l+1] coordinate")
        ax.set_ylabel(lab)
    fig.suptitle(title)
    return save_figure(fig, path)


def error_profile(layers: np.ndarray, curves: dict[str, np.ndarray], tol: float, title: str, path: Path) -> Path:
    """Max relative error per layer for each reconstruction (log scale), with the dtype tolerance."""
    fig, ax = plt.subplots(figsize=(7, 4))
    floor = 1e-12  # exact zeros (the add is bit-identical) would vanish on a log axis
    for name, v in curves.items():
        ax.semilogy(layers, np.maximum(v, floor), marker="o", ms=3, label=name)
    ax.axhline(tol, color="k", ls="--", lw=0.8, label=f"tolerance {tol:g}")
    ax.set_xlabel("layer l")
    ax.set_ylabel("max_t ||h[l+1] - recon|| / ||h[l+1]||")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
