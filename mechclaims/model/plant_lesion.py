"""Lesion and patching plants: pronoun neurons at one layer, and the lesion controls' confounds.

Fitting data are the claims' training sides: the lesion pairs' training split by name (``split_by_name(pairs, 0.4,
split_seed)``, as claims/test_lesion.py splits them) and the patching pairs' training groups (``split_by_group(pairs,
0.5, split_seed)``). Sizes are set on the training prompts, first through the direct path (activation x W_out row .
logit direction x the final norm's 1/scale), then ``calibrate`` times by the forward engine itself (the lesion
``Runner`` for ablations; the final norm's output for patching): the planted size is what a real forward pass shows on
the training prompts; the held-out prompts are left for the tests to measure.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mechclaims.datasets.lesion import load_causal_pairs, split_by_name
from mechclaims.datasets.patching import load_pairs as load_patching_pairs, split_by_group
from mechclaims.forward.ablate import Runner
from mechclaims.forward.capture import encode, single_token_id
from mechclaims.model.plant_core import PlantInfo, finish, mlp_parts, pick_units, planted_copy, unit
from mechclaims.model.plant_neurons import activations, install, pronoun_directions
from mechclaims.model.plant_reads import centred_contrast, last_logit_diff, mlp_input, norm_scale, separation
from mechclaims.model.registry import LoadedModel

TEST_FRACTION = 0.4  # claims/test_lesion.py's split


def lesion_training(lm: LoadedModel, split_seed: int = 0) -> dict:
    """The lesion claim's training prompts (her side, him side) as token ids."""
    train, _ = split_by_name(load_causal_pairs(), TEST_FRACTION, split_seed)
    return {"her": encode(lm, [p.her for p in train]), "him": encode(lm, [p.him for p in train])}


def _write(lm: LoadedModel, layer: int, neurons: np.ndarray, rows: np.ndarray) -> None:
    with torch.no_grad():
        w = mlp_parts(lm, layer).w_out()
        w[torch.as_tensor(neurons)] = torch.as_tensor(rows, dtype=w.dtype)


def lesion_runner(lm: LoadedModel, ids: dict) -> tuple[Runner, dict]:
    allids = ids["her"] + ids["him"]
    n = len(ids["her"])
    sign = np.r_[np.ones(n), -np.ones(len(ids["him"]))]
    r = Runner(lm, allids, [len(x) - 1 for x in allids], np.c_[sign, np.ones(len(allids))],
               pairs=(("her", "him"), ("the", "a")))
    return r, {"her": np.arange(n), "him": np.arange(n, len(allids))}


def ablation_effect(runner: Runner, layer: int, prompts: np.ndarray, neurons: np.ndarray,
                    fill: np.ndarray | None) -> np.ndarray:
    """``[n, pairs]``: change of each logit difference when ``neurons`` at ``layer`` are set to ``fill`` (their
    training means: mean ablation; None: zero ablation) at the prediction position of ``prompts``."""
    d = mlp_parts(runner.lm, layer).d_mlp
    keep, f = np.ones((len(prompts), d), np.float32), np.zeros((len(prompts), d), np.float32)
    keep[:, neurons] = 0.0
    if fill is not None:
        f[:, neurons] = fill
    y = runner.run(layer, prompts, keep, f)
    return y - runner.clean[prompts]


def plant_lesion(lm: LoadedModel, layer: int, size: float, *, k: int = 8, unrelated: float = 0.0, seed: int = 0,
                 split_seed: int = 0, calibrate: int = 3, neurons: Sequence[int] | None = None) -> LoadedModel:
    """Plant "her" and "him" neurons at ``layer`` (k each).

    Plants: her neurons read the centred her-minus-him contrast of the MLP input at the prediction position (fitted on
    the lesion claim's training prompts) and write along the " her" - " him" logit direction; him neurons read its
    negative and write the opposite. ``size``: the mean-ablation effect (set to the training mean at the prediction
    position, the claim's ablation) on each side's own logit difference, in logits, on the training prompts: the
    target-minus-foil logit falls by ``size`` on her prompts when the her neurons are ablated, and on him prompts when
    the him neurons are. Their writes have no component on the " the" - " a" direction.
    ``unrelated`` (the ``unrelated_pair`` control's confound): the same neurons also write along " the" - " a"
    (projected off the pronoun direction), so their mean ablation moves that logit difference by ``-unrelated`` on each
    side, whatever the label.
    A claim must then find: at ``layer``, both sides' selected sets (if they hold the planted neurons) lower the target
    by about ``size``, more than random sets; not on the unedited twin; with ``unrelated`` > 0 the unrelated-pair
    control passes. Selection rules see only activations, so which neurons they take is theirs to find."""
    ids = lesion_training(lm, split_seed)
    X = {s: mlp_input(lm, ids[s], layer) for s in ("her", "him")}
    inv = {s: norm_scale(lm, ids[s]) for s in ("her", "him")}
    r = centred_contrast(X["her"], X["him"])
    fire = float(np.mean(X["her"] @ unit(r)))
    new = planted_copy(lm)
    d_mlp = mlp_parts(new, layer).d_mlp
    idx = np.asarray(neurons, int) if neurons is not None else pick_units(d_mlp, 2 * k, seed)
    sel = {"her": idx[:k], "him": idx[k:2 * k]}
    dirs = pronoun_directions(new)
    allx = np.r_[X["her"], X["him"]]
    edited = install(new, layer, sel["her"], r, fire, None) + install(new, layer, sel["him"], -r, fire, None)
    mean = {s: activations(new, layer, allx, sel[s]).mean(0) for s in sel}
    sgn = {"her": 1.0, "him": -1.0}
    # Direct path per unit of output gain: mean over the side's prompts of 1/scale * sum_i (a_i - mean_i).
    gap = {s: float(np.mean(inv[s] * (activations(new, layer, X[s], sel[s]) - mean[s]).sum(1))) for s in sel}
    alpha = {s: size / (gap[s] * float(dirs["u"] @ dirs["v"])) for s in sel}
    beta = {s: unrelated / (gap[s] * float(dirs["u_n"] @ dirs["n"])) for s in sel}

    def rows(s: str) -> np.ndarray:
        return np.tile(sgn[s] * alpha[s] * dirs["u"] + beta[s] * dirs["u_n"], (k, 1))

    measured = {}
    for it in range(calibrate + 1):
        for s in sel:
            _write(new, layer, sel[s], rows(s))
        runner, prompts = lesion_runner(new, ids)
        for s in sel:
            eff = ablation_effect(runner, layer, prompts[s], sel[s], mean[s]).mean(0)
            measured[s] = {"target": float(eff[0]), "unrelated": float(eff[1])}
            if it < calibrate:
                alpha[s] *= size / max(-eff[0], 1e-6)
                if unrelated:
                    beta[s] *= unrelated / max(-eff[1], 1e-6)
    info = PlantInfo("lesion", layer, float(size), edited, {
        "neurons": {s: v.tolist() for s, v in sel.items()}, "read_direction_train_d": separation(
            X["her"] @ unit(r), X["him"] @ unit(r)), "alpha": alpha, "beta": beta, "unrelated": unrelated,
        "train_mean_ablation_effect": measured, "split_seed": split_seed, "k": k})
    tag = f"lesion@L{layer}:s{size:g}" + (f":unrelated{unrelated:g}" if unrelated else "")
    return finish(new, lm, info, tag)


def plant_lesion_prior(lm: LoadedModel, layer: int, size: float, *, side: str = "her", k: int = 8, seed: int = 0,
                       split_seed: int = 0, calibrate: int = 3) -> LoadedModel:
    """Plant a target prior (the shuffled-labels confound): k neurons at ``layer`` that fire on every prompt, whatever
    its label (they read the inputs' mean direction with the her-minus-him mean difference projected out), and write ``side``'s
    target along the pronoun logit direction. ``size``: their zero-ablation effect on ``side``'s target-minus-foil
    logit difference, averaged over all training prompts (both labels). Mean ablation removes only their variation,
    which carries no label: its effect is ~0 (measured and recorded). A claim must then find: no label-specific effect
    (mean ablation); a rule that selects on contributions picks these neurons with or without the labels."""
    ids = lesion_training(lm, split_seed)
    X = {s: mlp_input(lm, ids[s], layer) for s in ("her", "him")}
    allx, allids = np.r_[X["her"], X["him"]], ids["her"] + ids["him"]
    inv = norm_scale(lm, allids)
    dlab = unit(X["her"].mean(0) - X["him"].mean(0))  # the label's mean difference: read nothing of it
    m = allx.mean(0)
    read = m - (m @ dlab) * dlab
    fire = float(np.mean(allx @ unit(read)))
    new = planted_copy(lm)
    idx = pick_units(mlp_parts(new, layer).d_mlp, k, seed)
    dirs = pronoun_directions(new)
    edited = install(new, layer, idx, read, fire, None)
    a = activations(new, layer, allx, idx)
    sgn = 1.0 if side == "her" else -1.0
    alpha = size / (float(np.mean(inv * a.sum(1))) * float(dirs["u"] @ dirs["v"]))
    measured = {}
    for it in range(calibrate + 1):
        _write(new, layer, idx, np.tile(sgn * alpha * dirs["u"], (k, 1)))
        runner, prompts = lesion_runner(new, ids)
        rows = np.r_[prompts["her"], prompts["him"]]
        side_sign = np.r_[np.ones(len(prompts["her"])), -np.ones(len(prompts["him"]))] * sgn
        zero = (ablation_effect(runner, layer, rows, idx, None)[:, 0] * side_sign).mean()
        mean_abl = (ablation_effect(runner, layer, rows, idx, a.mean(0))[:, 0] * side_sign).mean()
        measured = {"zero_ablation_effect": float(zero), "mean_ablation_effect": float(mean_abl)}
        if it == calibrate:
            break
        alpha *= size / max(-zero, 1e-6)
    info = PlantInfo("lesion_prior", layer, float(size), edited, {
        "neurons": idx.tolist(), "side": side, "alpha": alpha, "train": measured, "k": k,
        "read_vs_label_d": separation(X["her"] @ unit(read), X["him"] @ unit(read))})
    return finish(new, lm, info, f"lesion_prior@L{layer}:s{size:g}:{side}")


def patching_training(lm: LoadedModel, split_seed: int = 0) -> dict:
    """The patching claim's training pairs as her-context and him-context prompts (clean or corrupt, whichever has
    that answer), in pair order."""
    pairs = load_patching_pairs()
    train, _ = split_by_group(pairs, 0.5, split_seed)
    her = [pairs[i].clean if pairs[i].target == " her" else pairs[i].corrupt for i in train]
    him = [pairs[i].corrupt if pairs[i].target == " her" else pairs[i].clean for i in train]
    return {"her": encode(lm, her), "him": encode(lm, him)}


def plant_patching(lm: LoadedModel, layer: int, size: float, *, k: int = 8, seed: int = 0, split_seed: int = 0,
                   calibrate: int = 3) -> LoadedModel:
    """Plant a component that carries the answer: the MLP at ``layer`` gets her and him neurons (k each) that read,
    at the last token, the referent's gender (the centred contrast of the patching pairs' her- and him-answer prompts,
    fitted on the claim's training groups) and write the answer along the " her" - " him" logit direction.
    ``size``: the increase of the clean-minus-corrupt logit difference F - C (target minus foil at the last token)
    that the planted neurons add, mean over the training pairs, measured by forward passes of the planted and the
    unedited model. A claim must then find: patching ``blocks.{layer}.hook_mlp_out`` from clean into corrupt restores
    the planted share of F - C; the final residual carries the answer from ``layer`` + 1 on."""
    ids = patching_training(lm, split_seed)
    X = {s: mlp_input(lm, ids[s], layer) for s in ("her", "him")}
    inv = {s: norm_scale(lm, ids[s]) for s in ("her", "him")}
    r = centred_contrast(X["her"], X["him"])
    fire = float(np.mean(X["her"] @ unit(r)))
    new = planted_copy(lm)
    idx = pick_units(mlp_parts(new, layer).d_mlp, 2 * k, seed)
    sel = {"her": idx[:k], "him": idx[k:]}
    dirs = pronoun_directions(new)
    allx = np.r_[X["her"], X["him"]]
    edited = install(new, layer, sel["her"], r, fire, None) + install(new, layer, sel["him"], -r, fire, None)

    def push(s: str) -> np.ndarray:  # her-minus-him direct push per unit gain on prompts of side s
        return inv[s] * (activations(new, layer, X[s], sel["her"]).sum(1) - activations(new, layer, X[s], sel["him"]).sum(1))
    alpha = size / (float(np.mean(push("her") - push("him"))) * float(dirs["u"] @ dirs["v"]))
    t, f = single_token_id(lm, " her"), single_token_id(lm, " him")
    base = {s: last_logit_diff(lm, ids[s], t, f) for s in ids}
    measured = float("nan")
    for it in range(calibrate + 1):
        _write(new, layer, sel["her"], np.tile(alpha * dirs["u"], (k, 1)))
        _write(new, layer, sel["him"], np.tile(-alpha * dirs["u"], (k, 1)))
        got = {s: last_logit_diff(new, ids[s], t, f) for s in ids}
        measured = float(np.mean((got["her"] - got["him"]) - (base["her"] - base["him"])))
        if it == calibrate:
            break
        alpha *= size / max(measured, 1e-6)
    info = PlantInfo("patching", layer, float(size), edited, {
        "neurons": {s: v.tolist() for s, v in sel.items()}, "alpha": alpha, "train_delta_F_minus_C": measured,
        "read_direction_train_d": separation(X["her"] @ unit(r), X["him"] @ unit(r)), "k": k,
        "split_seed": split_seed})
    return finish(new, lm, info, f"patching@L{layer}:s{size:g}")
