"""Canonical sites: one declarative map per architecture family, and the resolver.

Site names follow TransformerLens spelling, always in full (no shorthands):

========================== ================================================================================
``blocks.{l}.hook_resid_pre``  input to block l (= ``hidden_states[l]``)
``blocks.{l}.hook_resid_mid``  residual after attention, before the MLP (sequential and post-LN blocks only;
                               a parallel block has no such tensor)
``blocks.{l}.hook_resid_post`` output of block l (= ``hidden_states[l+1]`` except after the last block, where
                               HF applies the final norm first: there it is ``ln_final.hook_in``)
``blocks.{l}.hook_attn_out``   the exact tensor the attention sublayer adds to the residual stream: after W_O,
                               any post-sublayer norm (Gemma 2/3, OLMo-2) and multiplier (Granite); never with
                               the residual inside (BLOOM). Dropout is the identity: models run in eval mode.
``blocks.{l}.hook_mlp_out``    the exact tensor the MLP sublayer adds to the residual stream (same rules)
``blocks.{l}.mlp.hook_pre``    MLP expansion before the nonlinearity (up/fc_in/c_fc, or the gate projection)
``blocks.{l}.mlp.hook_post``   input to the down projection (after nonlinearity, and gating)
``blocks.{l}.attn.hook_q``     queries per head ``[..., n_heads, d_head]``: after any q-norm, *before* rotary
``blocks.{l}.attn.hook_k``     keys per head ``[..., n_kv_heads, d_head]``: after any k-norm, before rotary
``blocks.{l}.attn.hook_qk_in`` the input the q and k projections read (normed, except OLMo-2: raw residual)
``ln_final.hook_in``           input to the final norm (the last residual, before the norm)
``ln_final.hook_normalized``   output of the final norm (= ``hidden_states[-1]`` in HF)
``hook_logits``                output of the unembedding (before Gemma 2's softcap / Granite's logits_scaling)
========================== ================================================================================

Each map states its block equation once (``SiteMap.block``). For every pre-LN family (sequential, parallel,
sandwich-normed, multiplied) ``resid_post = resid_pre + attn_out + mlp_out`` holds exactly. For post-LN families
(BERT, RoBERTa) no additive decomposition exists: ``residual = "post_ln"`` says that the identity that holds is
``resid_mid = LN1(resid_pre + attn_out)``, ``resid_post = LN2(resid_mid + mlp_out)``.

Adding a family: see docs/adding_a_family.md. The self-tests in tests/test_sites.py prove a map by the residual
identity, by hidden_states, by liveness and by a deliberately wrong twin that must fail.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mechclaims.errors import SiteError
from mechclaims.model.families import register, sitemap_for
from mechclaims.model.sitemap import (GLOBAL_KINDS, LAYER_KINDS, SITE_RE, Heads, Scaled, SiteMap, SiteSpec, derived,
                                      first, layer_of)

__all__ = ["site", "layer_of", "resolve", "base_of", "available_sites", "ResolvedSite", "sitemap_for", "LAYER_KINDS",
           "GLOBAL_KINDS", "SiteMap", "SiteSpec", "Heads", "Scaled", "derived", "first", "register"]


def site(kind: str, layer: int | None = None) -> str:
    """Build a canonical name: ``site('hook_resid_pre', 5) == 'blocks.5.hook_resid_pre'``."""
    if layer is None:
        if kind not in GLOBAL_KINDS:
            raise SiteError(f"{kind!r} is a per-layer site; pass a layer, or use one of {GLOBAL_KINDS}.")
        return kind
    if kind not in LAYER_KINDS:
        raise SiteError(f"unknown site kind {kind!r}; per-layer kinds are {LAYER_KINDS}.")
    return f"blocks.{layer}.{kind}"


@dataclass(frozen=True)
class ResolvedSite:
    name: str
    module: Any
    spec: SiteSpec


def _get(root: Any, path: str) -> Any:
    m = root
    for part in path.split("."):
        m = m[int(part)] if part.isdigit() else getattr(m, part)
    return m


def base_of(model: Any, sitemap: SiteMap | None = None) -> Any:
    """The module the map's paths are relative to: ``model.base_model``, or ``model.model`` where a head class
    declares a base_model_prefix it does not have (transformers 4.57's Gemma3ForCausalLM: base_model is then the
    model itself). Use it instead of ``model.base_model`` to fetch blocks and norms."""
    sm = sitemap or sitemap_for(model)
    head = sm.blocks.split(".")[0]
    for cand in (model.base_model, getattr(model, "model", None), model):
        if cand is not None and hasattr(cand, head):
            return cand
    raise SiteError(f"{type(model).__name__}: no submodule {sm.blocks!r} under base_model, model or the model "
                    f"itself; the {sm.family} map does not fit this version of the class.")


def available_sites(model: Any, sitemap: SiteMap | None = None) -> list[str]:
    """Every canonical name ``model`` has: per-layer kinds of its family at every layer, then the global ones."""
    sm = sitemap or sitemap_for(model)
    n = len(_get(base_of(model, sm), sm.blocks))
    names = [site(k, l) for l in range(n) for k in sm.kinds()]
    if sm.final_norm is not None:
        names += ["ln_final.hook_in", "ln_final.hook_normalized"]
    if model.get_output_embeddings() is not None:
        names.append("hook_logits")
    return names


def resolve(model: Any, name: str, sitemap: SiteMap | None = None) -> ResolvedSite:
    """Canonical name -> module and spec, with an error that lists valid names. ``sitemap`` overrides the
    family's map (to check a draft map, or a deliberately wrong one, against the identities)."""
    sm = sitemap or sitemap_for(model)
    base = base_of(model, sm)
    if name == "hook_logits":
        out = model.get_output_embeddings()
        if out is None:
            raise SiteError(f"{type(model).__name__} has no unembedding, so no hook_logits site; "
                            f"use a model with an LM head (e.g. BertForMaskedLM).")
        return ResolvedSite(name, out, SiteSpec("<output embeddings>", "output"))
    if name in ("ln_final.hook_in", "ln_final.hook_normalized"):
        if sm.final_norm is None:
            raise SiteError(f"{sm.family} has no final norm; use blocks.{{L-1}}.hook_resid_post.")
        return ResolvedSite(name, _get(base, sm.final_norm),
                            SiteSpec(sm.final_norm, "input" if name.endswith("hook_in") else "output"))
    m = SITE_RE.match(name)
    if not m:
        raise SiteError(f"{name!r} is not a canonical site name. Per-layer sites are 'blocks.<l>.<kind>' with "
                        f"kind in {LAYER_KINDS}; global sites are {GLOBAL_KINDS}.")
    layer, kind = int(m.group(1)), m.group(2)
    n = len(_get(base, sm.blocks))
    if layer >= n:
        raise SiteError(f"{name!r}: layer {layer} does not exist; {type(model).__name__} has {n} layers (0..{n - 1}).")
    spec = sm.layer.get(kind)
    if spec is None:
        raise SiteError(f"{name!r}: the {sm.family} family has no {kind} site ({sm.notes})")
    return ResolvedSite(name, _get(base, spec.module.format(l=layer)), spec)
