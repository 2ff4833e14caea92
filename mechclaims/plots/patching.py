"""Figures for the activation-patching claims: the layer x position recovery heatmap, per-component bars of direct
and total effect, and attribution patching against patching. Arrays in, one PNG out, through save_figure."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mechclaims.plots import plt
from mechclaims.plots import save_figure


def recovery_heatmap(heat: np.ndarray, tokens: Sequence[str], profiles: Mapping[str, np.ndarray],
                     l_star: int | None, title: str, path: str | Path) -> Path:
    """Left: denoising recovery ``[n_layers, n_tokens]`` of one pair, tokens on the x axis (0 = corrupt, 1 = clean).
    Right: held-out shares per layer (``profiles``), with 1/2 and the training L*."""
    L, T = heat.shape
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(6.5 + 0.42 * T, 5.2), gridspec_kw={"width_ratios": [T, 11]},
                                  layout="constrained")
    im = ax.imshow(heat, aspect="auto", origin="lower", cmap="RdBu_r", vmin=-1, vmax=1,
                   extent=(-0.5, T - 0.5, -0.5, L - 0.5))
    ax.set_xticks(range(T), [repr(t)[1:-1] for t in tokens], rotation=70, fontsize=8)
    ax.set_ylabel("layer (hook_resid_pre)")
    ax.set_title("one held-out pair: recovery", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02, label="(patched - corrupt) / (clean - corrupt)")
    layers = np.arange(L)
    for name, y in profiles.items():
        ax2.plot(layers, y, marker="o", ms=2.5, lw=1.2, ls="--" if "control" in name else "-", label=name)
    ax2.axhline(0.5, color="k", lw=0.6, ls=":")
    ax2.axhline(0, color="k", lw=0.5)
    if l_star is not None:
        ax2.axvline(l_star, color="0.4", lw=0.8, ls="-.", label=f"L* (training) = {l_star}")
    ax2.set_xlabel("layer")
    ax2.set_ylabel("held-out share of the logit difference")
    ax2.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def component_bars(comps: Sequence[str], total: np.ndarray, direct: np.ndarray, named: Sequence[int], title: str,
                   path: str | Path) -> Path:
    """Per component: total effect (patched, all tokens) beside direct effect (last token, through the unembedding
    only); the named components are starred. Total below direct is self-repair (later layers compensate)."""
    n = len(comps)
    x = np.arange(n)
    fig, ax = plt.subplots(figsize=(max(8, 0.22 * n), 4))
    ax.bar(x - 0.2, total, 0.4, label="total (patched)", color="tab:blue")
    ax.bar(x + 0.2, direct, 0.4, label="direct (unembedding only)", color="tab:orange")
    for j in named:
        ax.annotate("*", (x[j], max(total[j], direct[j])), ha="center", va="bottom", fontsize=12)
    short = [c.replace("blocks.", "").replace(".hook_", " ").replace("_out", "") for c in comps]
    ax.set_xticks(x, short, rotation=90, fontsize=6)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("share of (clean - corrupt) logit difference")
    ax.legend(fontsize=8, title="* named on training pairs", title_fontsize=8)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def attribution_scatter(comps: Sequence[str], attribution: np.ndarray, patching: np.ndarray, verdict: Any,
                        title: str, path: str | Path, label_top: int = 6) -> Path:
    """Attribution patching (x) against patching (y) per component, identity line, the largest gaps labelled."""
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    is_attn = np.array(["attn" in c for c in comps])
    ax.scatter(attribution[is_attn], patching[is_attn], s=18, label="attn_out", color="tab:blue")
    ax.scatter(attribution[~is_attn], patching[~is_attn], s=18, label="mlp_out", color="tab:green", marker="s")
    lo = float(min(attribution.min(), patching.min(), 0))
    hi = float(max(attribution.max(), patching.max(), 0))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.7)
    for j in np.argsort(-np.abs(attribution - patching))[:label_top]:
        ax.annotate(comps[j].replace("blocks.", "L").replace(".hook_", " "), (attribution[j], patching[j]),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    ci = verdict.effect_ci or (np.nan, np.nan)
    ax.set_title(f"{title}\nSpearman rho = {verdict.statistic:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]", fontsize=9)
    ax.set_xlabel("attribution patching (share, gradient estimate)")
    ax.set_ylabel("activation patching (share, total effect)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
