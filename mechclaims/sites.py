"""Canonical sites: one declarative map per architecture family, and the resolver.

Site names follow TransformerLens spelling, always in full (no shorthands):

========================== ================================================================================
``blocks.{l}.hook_resid_pre``  input to block l (= ``hidden_states[l]``)
``blocks.{l}.hook_resid_mid``  residual after attention, before the MLP (sequential pre-LN and post-LN only)
``blocks.{l}.hook_resid_post`` output of block l (= ``hidden_states[l+1]`` except after the last block, where
                               HF applies the final norm first)
``blocks.{l}.hook_attn_out``   the exact tensor the attention sublayer adds to the residual stream
``blocks.{l}.hook_mlp_out``    the exact tensor the MLP sublayer adds to the residual stream
``blocks.{l}.mlp.hook_pre``    MLP expansion before the nonlinearity (GPT-2 c_fc, BERT intermediate.dense,
                               Llama gate_proj)
``blocks.{l}.mlp.hook_post``   input to the down projection (after nonlinearity, and gating for Llama)
``blocks.{l}.attn.hook_q``     queries per head, ``[..., n_heads, d_head]``, *before* rotary embeddings
``blocks.{l}.attn.hook_k``     keys per head, ``[..., n_kv_heads, d_head]``, before rotary embeddings
``blocks.{l}.attn.hook_qk_in`` the (normed) input the q and k projections read
``ln_final.hook_in``           input to the final norm (the last residual, before the norm)
``ln_final.hook_normalized``   output of the final norm (= ``hidden_states[-1]`` in HF)
``hook_logits``                output of the unembedding
========================== ================================================================================

For post-LN families (BERT) ``attn_out``/``mlp_out`` are the sublayer outputs before their Add & LayerNorm, and
``residual = "post_ln"`` says that ``resid_post = LN2(LN1(resid_pre + attn_out) + mlp_out)`` is the identity
that holds, not the plain sum.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from .errors import SiteError

Hook = Literal["output", "input"]
LAYER_KINDS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
               "mlp.hook_pre", "mlp.hook_post", "attn.hook_q", "attn.hook_k", "attn.hook_qk_in")
GLOBAL_KINDS = ("ln_final.hook_in", "ln_final.hook_normalized", "hook_logits")
_SITE_RE = re.compile(r"^blocks\.(\d+)\.(" + "|".join(re.escape(k) for k in LAYER_KINDS) + r")$")


@dataclass(frozen=True)
class SiteSpec:
    """Where a site lives: a module path (relative to the base model, ``{l}`` = layer), which side of it to
    read, and a post-op that turns the raw tensor into the canonical one (e.g. split heads)."""

    module: str
    hook: Hook = "output"
    post: Callable[[Any, Any], Any] | None = None  # (tensor, config) -> tensor
    editable: bool = True  # intervene() may replace it (post-op must be identity)


def _first(x: Any, cfg: Any) -> Any:
    return x[0] if isinstance(x, tuple) else x


def _heads(n_attr: str, part: int | None = None, parts: int = 1, head_dim_attr: str | None = None):
    """Post-op: optionally take slice ``part`` of a fused projection, then split the last dim into heads."""

    def post(x: Any, cfg: Any) -> Any:
        x = _first(x, cfg)
        if part is not None:
            x = x.chunk(parts, dim=-1)[part]
        n = getattr(cfg, n_attr)
        return x.reshape(*x.shape[:-1], n, x.shape[-1] // n)

    return post


@dataclass(frozen=True)
class SiteMap:
    """One architecture family's map. ``residual`` states the block's residual form in one place."""

    family: str
    model_types: tuple[str, ...]
    blocks: str  # path of the ModuleList of blocks, relative to the base model
    layer: dict[str, SiteSpec]
    final_norm: str | None
    residual: Literal["sequential", "parallel", "post_ln"]
    post_ln_norms: tuple[str, str] | None = None  # (after attention, after MLP), relative to the block
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_SEQ = dict

GPT2 = SiteMap(
    family="gpt2", model_types=("gpt2",), blocks="h", final_norm="ln_f", residual="sequential",
    layer={
        "hook_resid_pre": SiteSpec("h.{l}", "input"),
        "hook_resid_mid": SiteSpec("h.{l}.ln_2", "input"),
        "hook_resid_post": SiteSpec("h.{l}", "output", _first),
        "hook_attn_out": SiteSpec("h.{l}.attn", "output", _first),
        "hook_mlp_out": SiteSpec("h.{l}.mlp", "output", _first),
        "mlp.hook_pre": SiteSpec("h.{l}.mlp.c_fc"),
        "mlp.hook_post": SiteSpec("h.{l}.mlp.c_proj", "input"),
        "attn.hook_q": SiteSpec("h.{l}.attn.c_attn", "output", _heads("n_head", 0, 3), editable=False),
        "attn.hook_k": SiteSpec("h.{l}.attn.c_attn", "output", _heads("n_head", 1, 3), editable=False),
        "attn.hook_qk_in": SiteSpec("h.{l}.attn.c_attn", "input"),
    },
    notes="Pre-LN. attn_out includes c_proj and resid dropout (identity in eval).",
)

LLAMA = SiteMap(
    family="llama", model_types=("llama", "mistral", "qwen2"), blocks="layers", final_norm="norm",
    residual="sequential",
    layer={
        "hook_resid_pre": SiteSpec("layers.{l}", "input"),
        "hook_resid_mid": SiteSpec("layers.{l}.post_attention_layernorm", "input"),
        "hook_resid_post": SiteSpec("layers.{l}", "output", _first),
        "hook_attn_out": SiteSpec("layers.{l}.self_attn", "output", _first),
        "hook_mlp_out": SiteSpec("layers.{l}.mlp", "output", _first),
        "mlp.hook_pre": SiteSpec("layers.{l}.mlp.gate_proj"),
        "mlp.hook_post": SiteSpec("layers.{l}.mlp.down_proj", "input"),
        "attn.hook_q": SiteSpec("layers.{l}.self_attn.q_proj", "output", _heads("num_attention_heads"),
                                editable=False),
        "attn.hook_k": SiteSpec("layers.{l}.self_attn.k_proj", "output", _heads("num_key_value_heads"),
                                editable=False),
        "attn.hook_qk_in": SiteSpec("layers.{l}.self_attn.q_proj", "input"),
    },
    notes="Pre-RMSNorm, grouped KV heads. q/k are projection outputs before rotary embeddings.",
)

BERT = SiteMap(
    family="bert", model_types=("bert", "roberta"), blocks="encoder.layer", final_norm=None, residual="post_ln",
    post_ln_norms=("attention.output.LayerNorm", "output.LayerNorm"),
    layer={
        "hook_resid_pre": SiteSpec("encoder.layer.{l}", "input"),
        "hook_resid_mid": SiteSpec("encoder.layer.{l}.attention", "output", _first),
        "hook_resid_post": SiteSpec("encoder.layer.{l}", "output", _first),
        "hook_attn_out": SiteSpec("encoder.layer.{l}.attention.output.dense"),
        "hook_mlp_out": SiteSpec("encoder.layer.{l}.output.dense"),
        "mlp.hook_pre": SiteSpec("encoder.layer.{l}.intermediate.dense"),
        "mlp.hook_post": SiteSpec("encoder.layer.{l}.output.dense", "input"),
        "attn.hook_q": SiteSpec("encoder.layer.{l}.attention.self.query", "output",
                                _heads("num_attention_heads"), editable=False),
        "attn.hook_k": SiteSpec("encoder.layer.{l}.attention.self.key", "output",
                                _heads("num_attention_heads"), editable=False),
        "attn.hook_qk_in": SiteSpec("encoder.layer.{l}.attention.self.query", "input"),
    },
    notes="Post-LN: resid_post = LN2(LN1(resid_pre + attn_out) + mlp_out); the plain sum does not hold.",
)

GPT_NEOX = SiteMap(
    family="gpt_neox", model_types=("gpt_neox",), blocks="layers", final_norm="final_layer_norm",
    residual="parallel",
    layer={
        "hook_resid_pre": SiteSpec("layers.{l}", "input"),
        "hook_resid_post": SiteSpec("layers.{l}", "output", _first),
        "hook_attn_out": SiteSpec("layers.{l}.post_attention_dropout", "output"),
        "hook_mlp_out": SiteSpec("layers.{l}.post_mlp_dropout", "output"),
        "mlp.hook_pre": SiteSpec("layers.{l}.mlp.dense_h_to_4h"),
        "mlp.hook_post": SiteSpec("layers.{l}.mlp.dense_4h_to_h", "input"),
        "attn.hook_qk_in": SiteSpec("layers.{l}.attention.query_key_value", "input"),
    },
    notes="Parallel residual (use_parallel_residual=True): h + attn(ln1(h)) + mlp(ln2(h)); no resid_mid. "
          "q/k come fused per head from query_key_value and are not mapped yet.",
)

FAMILIES: tuple[SiteMap, ...] = (GPT2, LLAMA, BERT, GPT_NEOX)


def sitemap_for(model: Any) -> SiteMap:
    """The site map for ``model``'s config.model_type, or a SiteError naming what is supported."""
    mt = getattr(getattr(model, "config", None), "model_type", None)
    for fam in FAMILIES:
        if mt in fam.model_types:
            if fam.residual == "parallel" and not getattr(model.config, "use_parallel_residual", True):
                raise SiteError(f"{type(model).__name__} with use_parallel_residual=False is not mapped; "
                                "add a sequential GPT-NeoX map in mechclaims/sites.py.")
            return fam
    supported = ", ".join(f"{f.family} ({'/'.join(f.model_types)})" for f in FAMILIES)
    raise SiteError(f"no site map for {type(model).__name__} (model_type={mt!r}). Supported families: "
                    f"{supported}. To add one, write a SiteMap in mechclaims/sites.py and append it to FAMILIES; "
                    f"the README's 'Adding an architecture' section shows one in ~20 lines.")


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


def resolve(model: Any, name: str) -> ResolvedSite:
    """Canonical name -> module and spec, with an error that lists valid names."""
    sm = sitemap_for(model)
    base = model.base_model
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
    m = _SITE_RE.match(name)
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
