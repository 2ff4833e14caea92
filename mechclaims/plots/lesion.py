"""Figures for the MLP lesion claim. Every function takes arrays, draws one figure, saves it via save_figure."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from mechclaims.plots import save_figure

_RULE_COLORS = {"contrast": "tab:blue", "contribution": "tab:orange", "shuffled": "tab:gray"}


def plot_effect_by_layer(layers: Sequence[int], rules: Mapping[str, Mapping[str, np.ndarray]],
                         path: str | Path, title: str = "") -> Path:
    """Mean logit-difference change per layer for each rule, against its random-set null band.

    ``rules[name]`` holds arrays over ``layers``: ``effect`` (selected set, mean ablation: it decides), ``null_q05``,
    ``null_q50``, ``null_q95`` (random sets, mean-ablated), ``passed`` (bool: supported); optional ``zero_effect``.
    """
    layers = np.asarray(layers)
    fig, axes = plt.subplots(1, len(rules), figsize=(5.2 * len(rules), 3.6), sharey=True, squeeze=False)
    for ax, (name, r) in zip(axes[0], rules.items()):
        c = _RULE_COLORS.get(name, "tab:green")
        ax.fill_between(layers, r["null_q05"], r["null_q95"], color="0.85", label="random sets 5-95%")
        ax.plot(layers, r["null_q50"], color="0.55", lw=1, label="random sets median")
        ax.plot(layers, r["effect"], "-", color=c, lw=1.5, label="selected, mean ablation")
        if "zero_effect" in r:
            ax.plot(layers, r["zero_effect"], ":", color=c, lw=1.2, label="selected, zero ablation (reported)")
        passed = np.asarray(r["passed"], bool)
        eff = np.asarray(r["effect"], float)
        ax.plot(layers[passed], eff[passed], "o", color=c, ms=5, label="supported")
        ax.plot(layers[~passed], eff[~passed], "x", color=c, ms=5, label="not supported")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_yscale("symlog", linthresh=0.02)  # early layers move logits by ~0.01, late ones by whole units
        ax.set_title(f"rule: {name}")
        ax.set_xlabel("layer")
    axes[0][0].set_ylabel("mean change in target-minus-foil logit")
    axes[0][-1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_clean_vs_ablated(clean: Mapping[str, np.ndarray], ablated: Mapping[str, np.ndarray],
                          path: str | Path, title: str = "") -> Path:
    """The original's figure at one layer: bars of the mean her-minus-him logit difference (clean vs ablated)
    per side, and a per-prompt scatter of clean vs ablated with the identity line."""
    fig, (ax_b, ax_s) = plt.subplots(1, 2, figsize=(9, 3.8))
    sides = [s for s in clean if len(clean[s])]  # a side the model never gets right has nothing to show
    x = np.arange(len(sides))
    cm = [np.mean(clean[s]) for s in sides]
    am = [np.mean(ablated[s]) for s in sides]
    ax_b.bar(x - 0.18, cm, 0.36, label="clean", color="0.6")
    ax_b.bar(x + 0.18, am, 0.36, label="ablated", color="tab:red")
    ax_b.set_xticks(x, [f"{s} prompts\n({s} neurons zeroed)" for s in sides])
    ax_b.set_ylabel("target-minus-foil logit (mean)")
    ax_b.axhline(0, color="k", lw=0.6)
    ax_b.legend(fontsize=8)
    for s, m in zip(sides, ("o", "s")):
        ax_s.scatter(clean[s], ablated[s], s=14, marker=m, alpha=0.75, label=f"{s} prompts")
    if sides:
        lo = min(min(np.min(clean[s]), np.min(ablated[s])) for s in sides)
        hi = max(max(np.max(clean[s]), np.max(ablated[s])) for s in sides)
        ax_s.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="no change")
    ax_s.set_xlabel("clean target-minus-foil logit")
    ax_s.set_ylabel("ablated")
    ax_s.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_neuron_scores(t_values: np.ndarray, contributions: Mapping[str, np.ndarray] | None,
                       selected: Mapping[str, Mapping[str, np.ndarray]], path: str | Path,
                       title: str = "") -> Path:
    """Per-neuron scores at one layer with the selected neurons marked.

    ``t_values``: ``[d_mlp]`` rule (a) t (her minus him; NaN = untestable); ``contributions[side]``: ``[d_mlp]``
    rule (b) mean direct contribution toward that side (None: rule (b) undefined, e.g. masked LMs, one panel);
    ``selected[rule][side]``: indices chosen.
    """
    fig, axes = plt.subplots(1, 1 if contributions is None else 2, figsize=(5 if contributions is None else 10, 3.6),
                             squeeze=False)
    ax_t = axes[0][0]
    d = np.arange(len(t_values))
    ax_t.plot(d, t_values, ".", ms=2, color="0.6")
    for s, c in (("her", "tab:red"), ("him", "tab:blue")):
        idx = np.asarray(selected.get("contrast", {}).get(s, []), int)
        ax_t.plot(idx, np.asarray(t_values)[idx], "o", mfc="none", color=c, ms=6, label=f"selected {s}")
    ax_t.set_title("rule (a): paired t, her minus him")
    ax_t.set_xlabel("neuron")
    ax_t.set_ylabel("t")
    ax_t.legend(fontsize=8)
    if contributions is None:
        if title:
            fig.suptitle(title, fontsize=10)
        return save_figure(fig, path)
    ax_c = axes[0][1]
    for s, c, m in (("her", "tab:red", "."), ("him", "tab:blue", ".")):
        v = np.asarray(contributions[s], float)
        ax_c.plot(d, v, m, ms=2, color=c, alpha=0.4)
        idx = np.asarray(selected.get("contribution", {}).get(s, []), int)
        ax_c.plot(idx, v[idx], "o", mfc="none", color=c, ms=6, label=f"selected {s}")
    ax_c.axhline(0, color="k", lw=0.6)
    ax_c.set_title("rule (b): mean direct contribution toward target")
    ax_c.set_xlabel("neuron")
    ax_c.set_ylabel("logit contribution")
    ax_c.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
