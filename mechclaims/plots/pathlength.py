"""Path-length figures: the original analysis's panels per model, and the cross-model comparison."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from mechclaims.stats.pathlength import LayerProfile, cumulative_path
from mechclaims.verdict.verdict import Verdict
from mechclaims.plots import save_figure

MAX_LINES = 400  # a few hundred token paths show the fan; thousands only slow the plot down


def _position_colors(positions: np.ndarray):
    norm = plt.Normalize(vmin=float(np.min(positions)), vmax=float(np.max(positions)))
    return plt.cm.viridis, norm


def plot_pathlength_panels(steps: np.ndarray, target_logit: np.ndarray, target_logprob: np.ndarray,
                           positions: np.ndarray, profile: LayerProfile, path: str | Path, *, title: str = "",
                           verdict: Verdict | None = None, min_position: int = 1, seed: int = 0) -> Path:
    """Four panels for one model: cumulative path per token by layer (coloured by position), raw logit and
    log-probability of the correct next token against total path length, and the per-layer profile (share of
    the path travelled per layer, and the partial rho of each step with log p). Position < ``min_position`` is
    left out of every panel, as it is out of the statistics."""
    keep = np.asarray(positions) >= min_position
    s, pos = np.asarray(steps, float)[keep], np.asarray(positions)[keep]
    logit, logp = np.asarray(target_logit, float)[keep], np.asarray(target_logprob, float)[keep]
    cum, total = cumulative_path(s), s.sum(axis=1)
    cmap, norm = _position_colors(pos)
    fig, ax = plt.subplots(2, 2, figsize=(11, 8.5))
    rng = np.random.default_rng(seed)
    shown = rng.choice(len(s), size=min(MAX_LINES, len(s)), replace=False)
    layers = np.arange(1, s.shape[1] + 1)
    for i in shown[np.argsort(pos[shown])]:
        ax[0, 0].plot(layers, cum[i], color=cmap(norm(pos[i])), lw=0.6, alpha=0.5)
    ax[0, 0].set(xlabel="layer (end of step)", ylabel="cumulative path length",
                 title=f"cumulative path, {len(shown)} of {len(s)} tokens")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax[0, 0], label="position")
    for a, yv, name, key in ((ax[0, 1], logit, "raw logit of correct next token", "partial_rho_logit"),
                             (ax[1, 0], logp, "log p(correct next token)", None)):
        a.scatter(total, yv, c=pos, cmap=cmap, norm=norm, s=5, alpha=0.6, linewidths=0)
        a.set(xlabel="total path length (last step before the final norm)", ylabel=name)
        if verdict is not None:
            if key:
                a.set_title(f"within-document partial Spearman | position: {verdict.details.get(key, np.nan):+.3f}",
                            fontsize=9)
            else:
                lo, hi = verdict.effect_ci or (np.nan, np.nan)
                a.set_title(f"within-document partial Spearman | position: {verdict.effect:+.3f} "
                            f"[{lo:+.3f}, {hi:+.3f}] ({verdict.outcome})", fontsize=9)
    a = ax[1, 1]
    a.plot(layers, profile.fraction, color="C0", marker=".", label="share of path per layer")
    a.fill_between(layers, profile.fraction_ci[0], profile.fraction_ci[1], color="C0", alpha=0.2)
    a.set(xlabel="layer (end of step)", ylabel="mean share of total path", title="per-layer profile")
    b = a.twinx()
    b.errorbar(layers, profile.rho, yerr=[profile.rho - profile.rho_ci[0], profile.rho_ci[1] - profile.rho],
               color="C3", fmt="o", ms=3, lw=0.8, label="partial rho(step, log p | pos)")
    b.axhline(0, color="C3", lw=0.5, ls=":")
    b.set_ylabel("partial rho of step norm with log p", color="C3")
    a.legend(loc="upper left", fontsize=8)
    b.legend(loc="upper right", fontsize=8)
    head = title or "path length vs next-token confidence"
    if verdict is not None:
        head += f"  ({'HOLDS' if verdict.passed else 'DOES NOT HOLD'}, p={verdict.p:.3g})"
    fig.suptitle(head)
    for a in (ax[0, 0], ax[1, 1]):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return save_figure(fig, path)


def plot_cross_model(profiles: Mapping[str, LayerProfile], verdicts: Mapping[str, Verdict], path: str | Path, *,
                     title: str = "path length across models") -> Path:
    """Left: share of the path travelled per layer against normalised depth, one line per model (CI band).
    Right: each model's partial rho(total path, log p | position) with its document-clustered CI; open markers
    for the raw logit. A report, not a claim."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.3, 1]})
    names = list(profiles)
    for i, name in enumerate(names):
        pr = profiles[name]
        # share * n_layers: 1.0 is an even split, whatever the depth, so models of different size line up.
        scale = len(pr.depth)
        a.plot(pr.depth, pr.fraction * scale, marker=".", color=f"C{i}", label=f"{name} ({scale} layers)")
        a.fill_between(pr.depth, pr.fraction_ci[0] * scale, pr.fraction_ci[1] * scale, color=f"C{i}", alpha=0.15)
    a.axhline(1.0, color="k", lw=0.5, ls=":")
    a.set(xlabel="normalised depth (layer / n_layers)", ylabel="share of path per layer x n_layers",
          title="normalised path-length profile", yscale="log")
    a.legend(fontsize=8)
    for i, name in enumerate(names):
        v = verdicts.get(name)
        if v is None:
            continue
        lo, hi = v.effect_ci if v.effect_ci is not None else (np.nan, np.nan)
        b.errorbar([v.effect], [i], xerr=[[v.effect - lo], [hi - v.effect]], fmt="o", color=f"C{i}", capsize=3)
        r, rl, rh = (v.details.get(k, np.nan) for k in ("partial_rho_logit", "partial_rho_logit_ci_low",
                                                         "partial_rho_logit_ci_high"))
        b.errorbar([r], [i + 0.25], xerr=[[r - rl], [rh - r]], fmt="o", mfc="white", color=f"C{i}", capsize=2)
        b.annotate("holds" if v.passed else "does not hold", (max(hi, rh), i), xytext=(4, 0),
                   textcoords="offset points", va="center", fontsize=8)
    b.axvline(0, color="k", lw=0.5)
    b.set_yticks(range(len(names)), names)
    b.invert_yaxis()
    b.set(xlabel="partial Spearman rho | position (95% CI, documents resampled)",
          title="filled: log p(correct next); open: raw logit")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
