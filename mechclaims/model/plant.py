"""Planted mechanisms: edits of a real model's weights that put a known mechanism of known size at a known place.

Ground truth for the claims (issue 28, item 2): each claim must come out ``supported`` where its mechanism is planted
and not on the unedited twin; each control must pass where its confound is planted. Every function here returns a
NEW :class:`~mechclaims.model.registry.LoadedModel` (deep copy, its own name ``"<base>+plant:<tag>"`` and weight
fingerprint, ``extra["plant"]``: a :class:`PlantInfo` naming every state-dict entry written); the model it is given
is never touched.

==========================  ================================================================================
plant                       what it plants (size unit)
==========================  ================================================================================
plant_lesion                her/him neurons at layer l (mean-ablation effect on each side's target logit diff)
  unrelated=x               ... that also write " the" - " a" (the unrelated_pair control's confound)
plant_lesion_prior          label-independent neurons writing one target (shuffled-labels confound; zero-ablation)
plant_qk                    category component in W_Q and W_K (increase of the queries' within-minus-across cosine)
plant_qk_mean_projection    W_Q, W_K project out the inputs' mean (the "beyond input" confound; fraction removed)
plant_ged_context           context feature in mlp.hook_pre at the pronoun (feature SD / median unit SD)
plant_ged_token             token-identity feature at the pronoun (claim C's confound; same unit)
plant_patching              an MLP that carries the answer (increase of F - C, clean minus corrupt logit diff)
answer_partners             (stimuli, not weights) unrelated patch sources that carry the clean answer
plant_silent_mlp            an MLP whose output is scaled to ~0 (the drop_mlp wrong decomposition's confound)
plant_gender_channel        support for random models: names/words carry gender, one head moves it forward
  referent_channel          ... for the pronoun plants (names); lexicon_channel: for the GED context plant
==========================  ================================================================================

:func:`dose_response` runs a plant over sizes and measures each planted model.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from mechclaims.datasets.patching import TokenizedPairs
from mechclaims.model.plant_channel import plant_gender_channel
from mechclaims.model.plant_core import PlantInfo, finish, mlp_parts, param_name, planted_copy
from mechclaims.model.plant_ged import plant_ged_context, plant_ged_token
from mechclaims.datasets.lesion import load_causal_pairs, split_by_name
from mechclaims.model.plant_ged import ged_windows
from mechclaims.model.plant_lesion import TEST_FRACTION, plant_lesion, plant_lesion_prior, plant_patching
from mechclaims.model.plant_neurons import pronoun_directions
from mechclaims.model.plant_qk import plant_qk, plant_qk_mean_projection
from mechclaims.model.plant_reads import lexicon_tokens, referent_tokens
from mechclaims.model.registry import LoadedModel

__all__ = ["PlantInfo", "plant_lesion", "plant_lesion_prior", "plant_qk", "plant_qk_mean_projection",
           "plant_ged_context", "plant_ged_token", "plant_patching", "answer_partners", "plant_silent_mlp",
           "plant_gender_channel", "referent_channel", "lexicon_channel", "referent_tokens", "lexicon_tokens",
           "dose_response", "edited_names"]


def referent_channel(lm: LoadedModel, layer: int = 0, gain: float = 3.0, level: float = 0.3,
                     seed: int = 0) -> LoadedModel:
    """The gender channel for the pronoun plants on a random model: the referents' names (lesion and patching stimuli)
    carry gender, the mover at ``layer`` brings it to every later position, sized on the lesion training prompts and
    orthogonal to the " her" - " him" and " the" - " a" logit directions (it moves neither by itself). ``level`` 0.3:
    at 1.0 the channel's passage through the later random layers moved tiny-llama's clean-minus-corrupt logit
    difference by -0.21 on its own (0.001 at 0.3, where the lesion read still separates the training contexts with
    d = 18)."""
    train, _ = split_by_name(load_causal_pairs(), TEST_FRACTION, 0)
    d = pronoun_directions(lm)
    return plant_gender_channel(lm, *referent_tokens(lm), gain=gain, layer=layer, seed=seed, avoid=[d["v"], d["n"]],
                                level=level, texts=[p.her for p in train] + [p.him for p in train])


def lexicon_channel(lm: LoadedModel, layer: int = 1, gain: float = 3.0, windows: Any = None,
                    seed: int = 0) -> LoadedModel:
    """The gender channel for the GED context plant on a random model: gendered context words (never the pronouns)
    carry gender, the mover at ``layer`` spreads it, so from ``layer`` on the pronoun's position holds its context's
    gender and before it nothing does."""
    held = windows or ged_windows()
    d = pronoun_directions(lm)
    return plant_gender_channel(lm, *lexicon_tokens(lm), gain=gain, layer=layer, seed=seed, avoid=[d["v"], d["n"]],
                                texts=held.texts[:100])


def plant_silent_mlp(lm: LoadedModel, layer: int, size: float = 0.0) -> LoadedModel:
    """Scale the MLP's output projection at ``layer`` (weight and bias) by ``size``: the block's MLP then writes
    ``size`` times what it wrote (``size`` = 0: exactly nothing). This is the confound of the additivity claim's
    ``drop_mlp`` control: with a silent MLP, leaving ``mlp_out`` out of the identity is no longer wrong, so the
    control passes at ``layer`` and the layer must come out ``confounded``; other layers are unchanged."""
    new = planted_copy(lm)
    out = mlp_parts(new, layer).out
    with torch.no_grad():
        out.weight.mul_(size)
        if getattr(out, "bias", None) is not None:
            out.bias.mul_(size)
    edited = [param_name(new.model, t) for t in (out.weight, getattr(out, "bias", None)) if t is not None]
    return finish(new, lm, PlantInfo("silent_mlp", layer, float(size), edited), f"silent_mlp@L{layer}:s{size:g}")


def answer_partners(tp: TokenizedPairs, rows: Sequence[int], seed: int = 0) -> np.ndarray:
    """The confound of the patching claim's unrelated-source control, on the stimuli side: for each pair in ``rows``,
    another pair of the same token length whose *clean* prompt has the same target, from another frame and name
    (-1 where none). Patching that clean prompt's final residual into the corrupt prompt copies a source that
    carries the clean answer, so on a model whose final residual carries the answer (:func:`plant_patching`) the
    control's rule passes. The claim's own partners carry the base prompt's answer, which is why its control fails."""
    rng, out = np.random.default_rng(seed), []
    for i in rows:
        p = tp.pairs[i]
        cand = [j for j in range(len(tp.pairs)) if j != i and tp.length[j] == tp.length[i]
                and tp.target[j] == tp.target[i] and tp.pairs[j].group != p.group]
        out.append(int(rng.choice(cand)) if cand else -1)
    return np.array(out, int)


def edited_names(lm: LoadedModel) -> set[str]:
    """Every state-dict entry a chain of plants wrote (this plant's and its parents')."""
    info = lm.extra.get("plant")
    if info is None:
        return set()
    out, parent = set(info.edited), info.parent
    while parent:
        out |= set(parent["edited"])
        parent = parent.get("parent")
    return out


def dose_response(plant_fn: Callable[[float], LoadedModel], sizes: Sequence[float],
                  measure_fn: Callable[[LoadedModel], float | dict[str, float]]) -> list[dict[str, Any]]:
    """``measure_fn(plant_fn(size))`` for each size, one row per size: ``{"size", "model", "fingerprint", measures}``
    (a float measure is named ``"measured"``). Each planted model is dropped after its measurement, so a sweep holds
    one copy at a time. With ``sizes`` including 0 the first row is the plant's own baseline (its overwritten units
    still removed), which the unedited twin need not equal."""
    rows = []
    for s in sizes:
        lm = plant_fn(float(s))
        m = measure_fn(lm)
        rows.append({"size": float(s), "model": lm.name, "fingerprint": lm.fingerprint,
                     **(m if isinstance(m, dict) else {"measured": float(m)})})
        del lm
    return rows
