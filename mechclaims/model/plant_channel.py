"""Support plant: a gender channel, for models that do not carry a referent's gender where the claims read it.

A randomly initialised model (the tiny families) cannot tell "Mary ... lent" from "John ... lent" at the last token:
its name embeddings are random, and its near-uniform attention dilutes the name's token ~1/T through a random OV map
(measured on tiny-gpt2: held-out d' of the best linear read of her- vs him-contexts at the last position, split by
name, 0.16-0.21 at layers 1-3, before this plant). The lesion, patching and GED-context plants need that information
at the position they act on, so this plant supplies it, in three declared edits:

1. a reserved residual direction ``w``: projected out of every token (and position) embedding, so nothing but the
   plant writes to it at the embedding;
2. ``+gain * w`` on the female tokens' embeddings and ``-gain * w`` on the male ones (``gain`` in mean embedding
   row norms);
3. a mover at ``layer``: one attention head with zero queries (so it attends uniformly over the prefix) whose value
   reads ``w`` through the block's input norm and whose output writes ``w`` back, so every position carries the mean
   gender of the tokens before it. In a GQA model the head's KV head is shared; the other query heads of that group
   get zero output weights (they would otherwise write the edited value elsewhere).

A tied unembedding is untied first, so every logit readout stays as it was. On a trained model (smollm2-135m) the
information is already there and this plant is not needed; the mechanism plants fit their read directions to
whatever the model carries.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mechclaims.forward.capture import capture, encode
from mechclaims.model.plant_core import (PlantInfo, embeddings, finish, param_name, planted_copy, untie_unembedding,
                                         unit)
from mechclaims.model.registry import LoadedModel
from mechclaims.model.sites import base_of, site


def _block(lm: LoadedModel, layer: int):
    sm = lm.sitemap
    return base_of(lm.model).get_submodule(sm.blocks)[layer]


def _attn_parts(lm: LoadedModel, layer: int) -> dict:
    """Q, V, O weights of the attention at ``layer`` as views with one row per unit (V, Q: output units; O: input
    units), their biases, the head geometry and the input norm."""
    blk, cfg = _block(lm, layer), lm.model.config
    n_h = int(getattr(cfg, "num_attention_heads", None) or cfg.n_head)
    n_kv = int(getattr(cfg, "num_key_value_heads", None) or n_h)
    d = int(getattr(cfg, "hidden_size", None) or cfg.n_embd)
    dh = int(getattr(cfg, "head_dim", None) or d // n_h)
    norm = getattr(blk, "ln_1", None) or getattr(blk, "input_layernorm", None)
    attn = getattr(blk, "attn", None) or getattr(blk, "self_attn")
    if hasattr(attn, "c_attn"):  # GPT-2: fused [in, 3d] Conv1D, then c_proj [d, d] (Conv1D: rows are inputs)
        w, b = attn.c_attn.weight.T, attn.c_attn.bias
        return dict(q=w[:d], qb=b[:d], v=w[2 * d:], vb=b[2 * d:], o=attn.c_proj.weight, n_h=n_h, n_kv=n_kv, dh=dh,
                    norm=norm, params=[attn.c_attn.weight, attn.c_attn.bias, attn.c_proj.weight])
    if hasattr(attn, "q_proj") and hasattr(attn, "v_proj") and hasattr(attn, "o_proj"):
        q, v, o = attn.q_proj, attn.v_proj, attn.o_proj
        return dict(q=q.weight, qb=q.bias, v=v.weight, vb=v.bias, o=o.weight.T, n_h=n_h, n_kv=n_kv, dh=dh, norm=norm,
                    params=[p for p in (q.weight, q.bias, v.weight, v.bias, o.weight) if p is not None])
    raise NotImplementedError(f"{lm.name}: the gender channel knows GPT-2's c_attn and q/v/o_proj attention only")


def channel_direction(d: int, seed: int, centred: bool, avoid: Sequence[np.ndarray] = ()) -> np.ndarray:
    """A seeded random unit direction (zero-mean under a LayerNorm), orthogonal to every direction in ``avoid``."""
    w = np.random.default_rng([seed, 7177]).standard_normal(d)
    basis = [np.ones(d) / np.sqrt(d)] if centred else []
    for a in avoid:
        a = np.asarray(a, np.float64)
        for b in basis:
            a = a - (a @ b) * b
        basis.append(unit(a))
    for b in basis:
        w = w - (w @ b) * b
    return unit(w)


def plant_gender_channel(lm: LoadedModel, female: Sequence[int], male: Sequence[int], *, gain: float = 3.0,
                         layer: int = 0, head: int = 0, level: float = 1.0, texts: Sequence[str] = (),
                         avoid: Sequence[np.ndarray] = (), seed: int = 0) -> LoadedModel:
    """Plant the channel (see the module docstring). ``female``/``male``: token ids. ``level``: the channel's size at
    the last position of ``texts`` (median |w . resid|), in units of the median norm of the rest of the residual
    there, after the mover at ``layer``; without ``texts`` the mover's output gain is 1. ``avoid``: residual
    directions the channel must be orthogonal to (e.g. the logit directions the claims read, so the channel itself
    writes nothing on them at the last layer; ``pronoun_logit_directions``). Returns a new model; its
    ``extra["plant"].details["direction"]`` is ``w``."""
    new = planted_copy(lm)
    untied = untie_unembedding(new)
    norm = _attn_parts(new, layer)["norm"]
    centred = isinstance(norm, torch.nn.LayerNorm)
    d = embeddings(new).shape[1]
    w = channel_direction(d, seed, centred, avoid)
    wt = torch.as_tensor(w, dtype=embeddings(new).dtype)
    edited = []
    with torch.no_grad():
        E = embeddings(new)
        row = float(E.norm(dim=1).mean())
        E -= torch.outer(E @ wt, wt)
        E[list(female)] += gain * row * wt
        E[list(male)] -= gain * row * wt
        edited.append(param_name(new.model, E))
        wpe = getattr(base_of(new.model), "wpe", None)
        if wpe is not None:
            wpe.weight -= torch.outer(wpe.weight @ wt, wt)
            edited.append(param_name(new.model, wpe.weight))
        p = _attn_parts(new, layer)
        n_h, n_kv, dh = p["n_h"], p["n_kv"], p["dh"]
        group = n_h // n_kv
        j = head // group
        g = norm.weight.detach().double().cpu().numpy()
        read = w / np.where(np.abs(g) > 1e-8, g, np.inf)  # reads w . (x - mean) / scale through the norm
        beta = getattr(norm, "bias", None)
        p["q"][head * dh:(head + 1) * dh] = 0.0
        if p["qb"] is not None:
            p["qb"][head * dh:(head + 1) * dh] = 0.0
        p["v"][j * dh:(j + 1) * dh] = 0.0
        p["v"][j * dh] = torch.as_tensor(read, dtype=p["v"].dtype)
        if p["vb"] is not None:
            p["vb"][j * dh:(j + 1) * dh] = 0.0
            if beta is not None:
                p["vb"][j * dh] = -float(read @ beta.detach().double().cpu().numpy())
        for h in range(j * group, (j + 1) * group):
            p["o"][h * dh:(h + 1) * dh] = 0.0
        p["o"][head * dh] = wt
        edited += [param_name(new.model, x) for x in p["params"]]
    measured = {}
    if texts:
        ch, rest = channel_at_last(new, texts, layer, w)
        out_gain = level * float(np.median(rest)) / max(float(np.median(np.abs(ch))), 1e-30)
        with torch.no_grad():
            _attn_parts(new, layer)["o"][head * dh] = wt * out_gain
        ch, rest = channel_at_last(new, texts, layer, w)
        measured = {"out_gain": out_gain, "median_abs_channel": float(np.median(np.abs(ch))),
                    "median_rest_norm": float(np.median(rest))}
    info = PlantInfo("gender_channel", layer, float(gain), edited,
                     {"direction": w.tolist(), "head": head, "n_female": len(female), "n_male": len(male),
                      "untied_unembedding": untied, "level": level, **measured})
    return finish(new, lm, info, f"channel@L{layer}:g{gain:g}")


def channel_at_last(lm: LoadedModel, texts: Sequence[str], layer: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The channel ``w . resid`` after the attention of ``layer`` at each text's last token, and the norm of the rest
    of the residual there."""
    name = site("hook_resid_mid", layer) if "hook_resid_mid" in lm.sitemap.layer else site("hook_resid_post", layer)
    x = capture(lm, encode(lm, list(texts)), [name], "last", show=False)[name].astype(np.float64)
    ch = x @ w
    return ch, np.linalg.norm(x - np.outer(ch, w), axis=1)
