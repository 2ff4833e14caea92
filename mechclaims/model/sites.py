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

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from mechclaims.errors import SiteError

Hook = Literal["output", "input"]
LAYER_KINDS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
               "mlp.hook_pre", "mlp.hook_post", "attn.hook_q", "attn.hook_k", "attn.hook_qk_in")
GLOBAL_KINDS = ("ln_final.hook_in", "ln_final.hook_normalized", "hook_logits")
_SITE_RE = re.compile(r"^blocks\.(\d+)\.(" + "|".join(re.escape(k) for k in LAYER_KINDS) + r")$")


# ---------------------------------------------------------------------------------------------------------------
# Post-ops: raw hooked tensor -> canonical tensor. Each also knows its inverse, so an edit of the canonical
# tensor can be written back into the raw one (``SiteSpec.apply_edit``).


def first(x: Any, cfg: Any = None) -> Any:
    """Post-op: the first element of a module's tuple output (the hidden states)."""
    return x[0] if isinstance(x, tuple) else x


_first = first


class Heads:
    """Split the last dim into ``cfg.<n_attr>`` heads; optionally first take slice ``part`` of a fused
    projection. Fused layouts: ``[parts, n, d]`` (GPT-2's c_attn, the default), ``interleaved`` per head
    ``[n, parts, d]`` (GPT-NeoX, BLOOM), or ``sizes``: parts of ``cfg.<attr>`` heads each (Phi-3's qkv_proj with
    grouped KV: q, k, v = n_heads, n_kv, n_kv). ``n_attr=None``: take the part without splitting heads (a fused
    gate/up projection). ``heads_first``: the raw tensor is ``[B, n, T, d]`` (Gemma 3's q_norm runs after the
    transpose)."""

    def __init__(self, n_attr: str | None, part: int | None = None, parts: int = 1, interleaved: bool = False,
                 heads_first: bool = False, sizes: tuple[str, ...] | None = None):
        self.n_attr, self.part, self.parts, self.interleaved, self.heads_first, self.sizes = \
            n_attr, part, parts, interleaved, heads_first, sizes

    def __call__(self, x: Any, cfg: Any) -> Any:
        x = _first(x)
        if self.heads_first:
            return x.transpose(1, 2)
        n = getattr(cfg, self.n_attr) if self.n_attr else 1
        if self.part is not None and self.interleaved:
            return x.reshape(*x.shape[:-1], n, self.parts, x.shape[-1] // (n * self.parts))[..., self.part, :]
        if self.part is not None and self.sizes:
            counts = [getattr(cfg, a) for a in self.sizes]
            d = x.shape[-1] // sum(counts)
            x = x[..., sum(counts[:self.part]) * d:sum(counts[:self.part + 1]) * d]
        elif self.part is not None:
            x = x.chunk(self.parts, dim=-1)[self.part]
        return x.reshape(*x.shape[:-1], n, x.shape[-1] // n) if self.n_attr else x

    def invert(self, new: Any, raw: Any, cfg: Any) -> Any:
        if self.heads_first:
            return new.transpose(1, 2).contiguous()
        if self.part is None:
            return new.reshape(raw.shape)
        if getattr(new, "requires_grad", False):
            # Autograd refuses an in-place copy into a chunk() view (mechclaims.forward.attribution's gradient path):
            # scatter out of place, at the raw indices the post-op reads (the post-op applied to an index tensor).
            import torch

            idx = self(torch.arange(raw.numel(), device=raw.device).reshape(raw.shape), cfg)
            return raw.reshape(-1).index_put((idx.reshape(-1),), new.reshape(-1).to(raw.dtype)).reshape(raw.shape)
        out = raw.clone()
        view = self(out, cfg)
        assert view.data_ptr() >= out.data_ptr() and view._base is not None, "post-op must return a view"
        view.copy_(new)  # the view shares out's storage, so this writes the slice back
        return out


class Scaled:
    """Multiply by a config scalar (Granite's residual_multiplier is applied after the sublayer, before the add)."""

    def __init__(self, attr: str):
        self.attr = attr

    def __call__(self, x: Any, cfg: Any) -> Any:
        return _first(x) * getattr(cfg, self.attr)

    def invert(self, new: Any, raw: Any, cfg: Any) -> Any:
        return new / getattr(cfg, self.attr)


@dataclass(frozen=True)
class SiteSpec:
    """Where a site lives: a module path (relative to the base model, ``{l}`` = layer), which side of it to
    read, and a post-op that turns the raw tensor into the canonical one (split heads, scale)."""

    module: str
    hook: Hook = "output"
    post: Callable[[Any, Any], Any] | None = None  # (tensor, config) -> tensor
    editable: bool = True  # intervene() may replace the raw tensor directly (post-op is identity or absent)

    def apply_edit(self, raw: Any, edit: Callable[[Any], Any], cfg: Any) -> Any:
        """Edit the canonical view of ``raw`` and return the raw tensor to put back (for derived sites too)."""
        if isinstance(raw, tuple):
            return (self.apply_edit(raw[0], edit, cfg),) + tuple(raw[1:])
        if self.post is None or self.post is _first:
            return edit(raw)
        invert = getattr(self.post, "invert", None)
        if invert is None:
            raise SiteError(f"the site at {self.module} is derived by {self.post!r}, which has no invert(); give the "
                            f"post-op an invert(new, raw, cfg) method so edits can be written back.")
        return invert(edit(self.post(raw, cfg)), raw, cfg)


def derived(module: str, post: Any, hook: Hook = "output") -> SiteSpec:
    """A site computed from a module's tensor by ``post`` (split heads, scale). intervene() cannot replace it
    directly; ``SiteSpec.apply_edit`` edits it through the post-op's inverse."""
    return SiteSpec(module, hook, post, editable=False)


@dataclass(frozen=True)
class SiteMap:
    """One architecture family's map. ``residual`` and ``block`` state the block's residual form in one place."""

    family: str
    model_types: tuple[str, ...]
    blocks: str  # path of the ModuleList of blocks, relative to the base model
    layer: dict[str, SiteSpec]
    final_norm: str | None
    residual: Literal["sequential", "parallel", "post_ln"]
    block: str = ""  # the block's equation, in words a reader can check against the modeling code
    post_ln_norms: tuple[str, str] | None = None  # (after attention, after MLP), relative to the block
    requires: dict[str, Any] = field(default_factory=dict)  # config values this map assumes
    # How attention learns position: "rotary" (applied to q/k *after* hook_q/hook_k), "learned" (absolute
    # embeddings added to the residual, so q/k carry them), "alibi" (a bias on the scores; q/k carry none).
    positions: Literal["rotary", "learned", "alibi"] = "rotary"
    attn: str = "self_attn"  # attention module, relative to the block
    # Where the attention kernel receives the *positioned* q and k: a function in the attention module's Python
    # module (or ``self.<method>`` of the attention module) and the argument index of q (k follows). None: q/k
    # enter the scores directly (no rotary). Used by the self-tests to prove "before rotary".
    qk_kernel: tuple[str, int] | None = ("eager_attention_forward", 1)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def kinds(self) -> tuple[str, ...]:
        """Per-layer site kinds this family has, in LAYER_KINDS order."""
        return tuple(k for k in LAYER_KINDS if k in self.layer)


def _llama_layer(p: str = "layers.{l}", **over: SiteSpec) -> dict[str, SiteSpec]:
    """The Llama-style naming (self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj); ``over`` replaces kinds
    (``mlp__hook_pre`` spells ``mlp.hook_pre``)."""
    layer = {
        "hook_resid_pre": SiteSpec(p, "input"),
        "hook_resid_mid": SiteSpec(f"{p}.post_attention_layernorm", "input"),
        "hook_resid_post": SiteSpec(p, "output", _first),
        "hook_attn_out": SiteSpec(f"{p}.self_attn", "output", _first),
        "hook_mlp_out": SiteSpec(f"{p}.mlp", "output", _first),
        "mlp.hook_pre": SiteSpec(f"{p}.mlp.gate_proj"),
        "mlp.hook_post": SiteSpec(f"{p}.mlp.down_proj", "input"),
        "attn.hook_q": derived(f"{p}.self_attn.q_proj", Heads("num_attention_heads")),
        "attn.hook_k": derived(f"{p}.self_attn.k_proj", Heads("num_key_value_heads")),
        "attn.hook_qk_in": SiteSpec(f"{p}.self_attn.q_proj", "input"),
    }
    layer.update({k.replace("__", "."): v for k, v in over.items()})
    return layer



# ---------------------------------------------------------------------------------------------------------------
# The maps. Read each against its modeling file: ``block`` is the equation the self-tests prove.

_H = "num_attention_heads"
_KV = "num_key_value_heads"

GPT2 = SiteMap(
    family="gpt2", model_types=("gpt2",), blocks="h", final_norm="ln_f", residual="sequential", attn="attn",
    positions="learned", requires={"add_cross_attention": False},
    block="m = h + attn(ln_1(h)); h' = m + mlp(ln_2(m))",
    layer={
        "hook_resid_pre": SiteSpec("h.{l}", "input"),
        "hook_resid_mid": SiteSpec("h.{l}.ln_2", "input"),
        "hook_resid_post": SiteSpec("h.{l}", "output", _first),
        "hook_attn_out": SiteSpec("h.{l}.attn", "output", _first),  # c_proj + resid_dropout, inside attn
        "hook_mlp_out": SiteSpec("h.{l}.mlp", "output", _first),
        "mlp.hook_pre": SiteSpec("h.{l}.mlp.c_fc"),
        "mlp.hook_post": SiteSpec("h.{l}.mlp.c_proj", "input"),
        "attn.hook_q": derived("h.{l}.attn.c_attn", Heads(_H, 0, 3)),
        "attn.hook_k": derived("h.{l}.attn.c_attn", Heads(_H, 1, 3)),
        "attn.hook_qk_in": SiteSpec("h.{l}.attn.c_attn", "input"),
    },
    notes="Pre-LN, learned absolute positions (in the residual, so q/k carry no rotary).",
)

LLAMA = SiteMap(
    family="llama", model_types=("llama", "mistral", "qwen2", "gemma"), blocks="layers", final_norm="norm",
    residual="sequential", block="m = h + self_attn(input_layernorm(h)); h' = m + mlp(post_attention_layernorm(m))",
    layer=_llama_layer(),
    notes="Pre-RMSNorm, grouped KV heads. Mistral, Qwen2 and Gemma (1) share the block; Gemma scales the "
          "embeddings by sqrt(d), which resid_pre[0] includes. q/k are projection outputs before rotary.",
)

QWEN3 = SiteMap(
    family="qwen3", model_types=("qwen3",), blocks="layers", final_norm="norm", residual="sequential",
    block=LLAMA.block,
    layer=_llama_layer(attn__hook_q=SiteSpec("layers.{l}.self_attn.q_norm"),  # per-head RMSNorm: [.., n, d]
                       attn__hook_k=SiteSpec("layers.{l}.self_attn.k_norm")),
    notes="Llama block with per-head q/k RMSNorm: hook_q/hook_k are the q_norm/k_norm outputs, before rotary.",
)

GEMMA2 = SiteMap(
    family="gemma2", model_types=("gemma2",), blocks="layers", final_norm="norm", residual="sequential",
    block="m = h + post_attention_layernorm(self_attn(input_layernorm(h))); "
          "h' = m + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(m)))",
    layer=_llama_layer(
        hook_resid_mid=SiteSpec("layers.{l}.pre_feedforward_layernorm", "input"),
        hook_attn_out=SiteSpec("layers.{l}.post_attention_layernorm"),  # sandwich norm: after the sublayer
        hook_mlp_out=SiteSpec("layers.{l}.post_feedforward_layernorm")),
    notes="Sandwich norms: attn_out/mlp_out are the post-sublayer norm outputs. hook_logits is before the "
          "final logit softcap.",
)

GEMMA3 = SiteMap(
    family="gemma3", model_types=("gemma3_text",), blocks="layers", final_norm="norm", residual="sequential",
    block=GEMMA2.block,
    layer={**GEMMA2.layer,
           # q_norm/k_norm run per head after the transpose to [B, n, T, d]
           "attn.hook_q": derived("layers.{l}.self_attn.q_norm", Heads(_H, heads_first=True)),
           "attn.hook_k": derived("layers.{l}.self_attn.k_norm", Heads(_KV, heads_first=True))},
    notes="Gemma 2's sandwich block plus per-head q/k RMSNorm (hook_q/hook_k after it, before rotary).",
)

OLMO2 = SiteMap(
    family="olmo2", model_types=("olmo2",), blocks="layers", final_norm="norm", residual="sequential",
    block="m = h + post_attention_layernorm(self_attn(h)); h' = m + post_feedforward_layernorm(mlp(m))",
    layer=_llama_layer(
        hook_resid_mid=SiteSpec("layers.{l}.mlp", "input"),  # no pre-norm: the MLP reads m itself
        hook_attn_out=SiteSpec("layers.{l}.post_attention_layernorm"),  # a *post*-sublayer norm here
        hook_mlp_out=SiteSpec("layers.{l}.post_feedforward_layernorm"),
        attn__hook_q=derived("layers.{l}.self_attn.q_norm", Heads(_H)),  # RMSNorm over all heads at once
        attn__hook_k=derived("layers.{l}.self_attn.k_norm", Heads(_KV))),
    notes="Norms only after the sublayers: post_attention_layernorm normalises attention's output (not the MLP's "
          "input, as in Llama), and q/k read the raw residual.",
)

GRANITE = SiteMap(
    family="granite", model_types=("granite",), blocks="layers", final_norm="norm", residual="sequential",
    block="m = h + residual_multiplier * self_attn(input_layernorm(h)); "
          "h' = m + residual_multiplier * mlp(post_attention_layernorm(m))",
    layer=_llama_layer(hook_attn_out=derived("layers.{l}.self_attn", Scaled("residual_multiplier")),
                       hook_mlp_out=derived("layers.{l}.mlp", Scaled("residual_multiplier"))),
    notes="attn_out/mlp_out include residual_multiplier (derived sites: edit them through SiteSpec.apply_edit). "
          "resid_pre[0] includes embedding_multiplier; hook_logits is before the division by logits_scaling.",
)

PHI = SiteMap(
    family="phi", model_types=("phi",), blocks="layers", final_norm="final_layernorm", residual="parallel",
    requires={"qk_layernorm": False},
    block="h' = h + self_attn(input_layernorm(h)) + mlp(input_layernorm(h))",
    layer={k: v for k, v in _llama_layer(mlp__hook_pre=SiteSpec("layers.{l}.mlp.fc1"),
                                         mlp__hook_post=SiteSpec("layers.{l}.mlp.fc2", "input")).items()
           if k != "hook_resid_mid"},
    notes="Parallel block, one shared input norm, partial rotary. Both sublayers pass through one shared "
          "resid_dropout module (the identity in eval), so the sites are the sublayer outputs.",
)

PHI3 = SiteMap(
    family="phi3", model_types=("phi3",), blocks="layers", final_norm="norm", residual="sequential",
    block="m = h + resid_attn_dropout(self_attn(input_layernorm(h))); "
          "h' = m + resid_mlp_dropout(mlp(post_attention_layernorm(m)))",
    layer=_llama_layer(
        hook_attn_out=SiteSpec("layers.{l}.resid_attn_dropout"),
        hook_mlp_out=SiteSpec("layers.{l}.resid_mlp_dropout"),
        mlp__hook_pre=derived("layers.{l}.mlp.gate_up_proj", Heads(None, 0, 2)),  # fused [gate, up]: the gate
        attn__hook_q=derived("layers.{l}.self_attn.qkv_proj", Heads(_H, 0, sizes=(_H, _KV, _KV))),
        attn__hook_k=derived("layers.{l}.self_attn.qkv_proj", Heads(_KV, 1, sizes=(_H, _KV, _KV))),
        attn__hook_qk_in=SiteSpec("layers.{l}.self_attn.qkv_proj", "input")),
    notes="Llama block with fused qkv_proj (q, k, v sized by head counts) and fused gate_up_proj.",
)

COHERE = SiteMap(
    family="cohere", model_types=("cohere",), blocks="layers", final_norm="norm", residual="parallel",
    requires={"use_qk_norm": False},
    block="h' = h + self_attn(input_layernorm(h)) + mlp(input_layernorm(h))",
    layer={k: v for k, v in _llama_layer().items() if k != "hook_resid_mid"},
    notes="Parallel block with one shared LayerNorm; interleaved rotary. hook_logits is before logit_scale.",
)

STABLELM = SiteMap(
    family="stablelm", model_types=("stablelm",), blocks="layers", final_norm="norm", residual="sequential",
    requires={"use_parallel_residual": False, "qk_layernorm": False},
    block="m = h + self_attn(input_layernorm(h)); h' = m + dropout(mlp(post_attention_layernorm(m)))",
    layer=_llama_layer(hook_mlp_out=SiteSpec("layers.{l}.dropout")),
    notes="Llama-like block with LayerNorm and partial rotary; the MLP's dropout is a module of the block.",
)

GPT_NEOX = SiteMap(
    family="gpt_neox", model_types=("gpt_neox",), blocks="layers", final_norm="final_layer_norm",
    residual="parallel", attn="attention", requires={"use_parallel_residual": True},
    block="h' = h + attention(input_layernorm(h)) + mlp(post_attention_layernorm(h))",
    layer={
        "hook_resid_pre": SiteSpec("layers.{l}", "input"),
        "hook_resid_post": SiteSpec("layers.{l}", "output", _first),
        "hook_attn_out": SiteSpec("layers.{l}.post_attention_dropout", "output"),
        "hook_mlp_out": SiteSpec("layers.{l}.post_mlp_dropout", "output"),
        "mlp.hook_pre": SiteSpec("layers.{l}.mlp.dense_h_to_4h"),
        "mlp.hook_post": SiteSpec("layers.{l}.mlp.dense_4h_to_h", "input"),
        # query_key_value is fused per head: [.., n, 3 * d] -> q, k, v
        "attn.hook_q": derived("layers.{l}.attention.query_key_value", Heads(_H, 0, 3, interleaved=True)),
        "attn.hook_k": derived("layers.{l}.attention.query_key_value", Heads(_H, 1, 3, interleaved=True)),
        "attn.hook_qk_in": SiteSpec("layers.{l}.attention.query_key_value", "input"),
    },
    notes="Parallel residual: both sublayers read h (through two norms), so there is no resid_mid. The MLP's "
          "norm is called post_attention_layernorm but reads h, not h + attn_out.",
)

GPT_NEOX_SEQ = SiteMap(
    family="gpt_neox_sequential", model_types=("gpt_neox",), blocks="layers", final_norm="final_layer_norm",
    residual="sequential", attn="attention", requires={"use_parallel_residual": False},
    block="m = h + attention(input_layernorm(h)); h' = m + mlp(post_attention_layernorm(m))",
    layer={**GPT_NEOX.layer, "hook_resid_mid": SiteSpec("layers.{l}.post_attention_layernorm", "input")},
    notes="GPT-NeoX with use_parallel_residual=False: sequential, so resid_mid exists.",
)

GPTJ = SiteMap(
    family="gptj", model_types=("gptj",), blocks="h", final_norm="ln_f", residual="parallel", attn="attn",
    qk_kernel=("self._attn", 0), block="h' = h + attn(ln_1(h)) + mlp(ln_1(h))",
    layer={
        "hook_resid_pre": SiteSpec("h.{l}", "input"),
        "hook_resid_post": SiteSpec("h.{l}", "output", _first),
        "hook_attn_out": SiteSpec("h.{l}.attn", "output", _first),  # out_proj + resid_dropout, inside attn
        "hook_mlp_out": SiteSpec("h.{l}.mlp", "output", _first),
        "mlp.hook_pre": SiteSpec("h.{l}.mlp.fc_in"),
        "mlp.hook_post": SiteSpec("h.{l}.mlp.fc_out", "input"),
        "attn.hook_q": derived("h.{l}.attn.q_proj", Heads(_H)),
        "attn.hook_k": derived("h.{l}.attn.k_proj", Heads(_H)),
        "attn.hook_qk_in": SiteSpec("h.{l}.attn.q_proj", "input"),
    },
    notes="Parallel block with one shared norm; rotary on the first rotary_dim dims of each head (interleaved).",
)

BLOOM = SiteMap(
    family="bloom", model_types=("bloom",), blocks="h", final_norm="ln_f", residual="sequential",
    attn="self_attention", positions="alibi", qk_kernel=None,
    requires={"apply_residual_connection_post_layernorm": False, "slow_but_exact": False},
    block="m = self_attention(input_layernorm(h), residual=h) = h + dense(...); "
          "h' = mlp(post_attention_layernorm(m), residual=m) = m + dense_4h_to_h(...)",
    layer={
        "hook_resid_pre": SiteSpec("h.{l}", "input"),
        "hook_resid_mid": SiteSpec("h.{l}.post_attention_layernorm", "input"),
        "hook_resid_post": SiteSpec("h.{l}", "output", _first),
        # The modules add the residual inside (dropout_add); the contributions are their last projections.
        "hook_attn_out": SiteSpec("h.{l}.self_attention.dense"),
        "hook_mlp_out": SiteSpec("h.{l}.mlp.dense_4h_to_h"),
        "mlp.hook_pre": SiteSpec("h.{l}.mlp.dense_h_to_4h"),
        "mlp.hook_post": SiteSpec("h.{l}.mlp.dense_4h_to_h", "input"),
        "attn.hook_q": derived("h.{l}.self_attention.query_key_value", Heads(_H, 0, 3, interleaved=True)),
        "attn.hook_k": derived("h.{l}.self_attention.query_key_value", Heads(_H, 1, 3, interleaved=True)),
        "attn.hook_qk_in": SiteSpec("h.{l}.self_attention.query_key_value", "input"),
    },
    notes="The attention and MLP modules return residual + contribution; attn_out/mlp_out are the dense "
          "outputs. ALiBi is added to the scores, so q/k carry no position.",
)

BERT = SiteMap(
    family="bert", model_types=("bert", "roberta"), blocks="encoder.layer", final_norm=None, residual="post_ln",
    attn="attention.self", positions="learned", requires={"add_cross_attention": False},
    post_ln_norms=("attention.output.LayerNorm", "output.LayerNorm"),
    block="m = LN1(h + attn_out); h' = LN2(m + mlp_out)  (post-LN: no additive decomposition)",
    layer={
        "hook_resid_pre": SiteSpec("encoder.layer.{l}", "input"),
        "hook_resid_mid": SiteSpec("encoder.layer.{l}.attention", "output", _first),
        "hook_resid_post": SiteSpec("encoder.layer.{l}", "output", _first),
        "hook_attn_out": SiteSpec("encoder.layer.{l}.attention.output.dense"),
        "hook_mlp_out": SiteSpec("encoder.layer.{l}.output.dense"),
        "mlp.hook_pre": SiteSpec("encoder.layer.{l}.intermediate.dense"),
        "mlp.hook_post": SiteSpec("encoder.layer.{l}.output.dense", "input"),
        "attn.hook_q": derived("encoder.layer.{l}.attention.self.query", Heads(_H)),
        "attn.hook_k": derived("encoder.layer.{l}.attention.self.key", Heads(_H)),
        "attn.hook_qk_in": SiteSpec("encoder.layer.{l}.attention.self.query", "input"),
    },
    notes="Post-LN: resid_post = LN2(LN1(resid_pre + attn_out) + mlp_out); the plain sum does not hold. "
          "RoBERTa shares the block (its positions start after the pad id).",
)

FAMILIES: tuple[SiteMap, ...] = (GPT2, LLAMA, QWEN3, GEMMA2, GEMMA3, OLMO2, GRANITE, PHI, PHI3, COHERE, STABLELM,
                                 GPT_NEOX, GPT_NEOX_SEQ, GPTJ, BLOOM, BERT)


def _supported() -> str:
    return ", ".join(f"{f.family} ({'/'.join(f.model_types)})" for f in FAMILIES)


def sitemap_for(model: Any) -> SiteMap:
    """The site map for ``model``'s config (model_type, then the config values the map requires), or a
    SiteError naming the class, the supported families and how to add one."""
    cfg = getattr(model, "config", None)
    mt = getattr(cfg, "model_type", None)
    matches = [f for f in FAMILIES if mt in f.model_types]
    for fam in matches:
        if all(getattr(cfg, k, v) == v for k, v in fam.requires.items()):
            return fam
    how = ("To add one, write a SiteMap (docs/adding_a_family.md shows one in ~20 lines) and either pass it to "
           "mechclaims.model.sites.register() from your conftest.py, or append it to FAMILIES in mechclaims/sites.py "
           "with a tiny config in tests/tiny_families.py, so that `pytest tests -k sites` proves it.")
    if matches:
        want = "; ".join(f"{f.family}: " + ", ".join(f"{k}={v!r}" for k, v in f.requires.items()) for f in matches)
        have = ", ".join(f"{k}={getattr(cfg, k, None)!r}" for f in matches for k in f.requires)
        raise SiteError(f"{type(model).__name__} (model_type={mt!r}) is mapped only for configs with {want}; "
                        f"this one has {have}, whose residual stream differs. {how}")
    raise SiteError(f"no site map for {type(model).__name__} (model_type={mt!r}). Supported families: "
                    f"{_supported()}. {how}")


def register(sitemap: SiteMap) -> SiteMap:
    """Add a family's map (e.g. from a conftest.py), found by sitemap_for like a built-in one. A map for a
    model_type already mapped with the same ``requires`` is refused: one model, one map."""
    global FAMILIES
    clash = [f.family for f in FAMILIES if set(f.model_types) & set(sitemap.model_types)
             and f.requires == sitemap.requires]
    if clash:
        raise SiteError(f"{sitemap.family}: model_types {sitemap.model_types} are already mapped by {clash}.")
    FAMILIES = FAMILIES + (sitemap,)
    return sitemap


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
