"""The site maps of the supported architecture families, and the lookup of a model's map.

Read each map against its modeling file: ``block`` is the equation the self-tests (tests/test_sites.py) prove, by
the residual identity, by hidden_states, by liveness and by a deliberately wrong twin that must fail. Adding a
family: docs/adding_a_family.md.
"""
from __future__ import annotations

from typing import Any

from mechclaims.errors import SiteError
from mechclaims.model.sitemap import Heads, Scaled, SiteMap, SiteSpec, derived, first

_first = first

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
           "mechclaims.model.sites.register() from your conftest.py, or append it to FAMILIES in mechclaims/model/families.py "
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
    global FAMILIES  # the user-extensible registry (like pytest's plugins): not a memo, documented API
    clash = [f.family for f in FAMILIES if set(f.model_types) & set(sitemap.model_types)
             and f.requires == sitemap.requires]
    if clash:
        raise SiteError(f"{sitemap.family}: model_types {sitemap.model_types} are already mapped by {clash}.")
    FAMILIES = FAMILIES + (sitemap,)
    return sitemap
