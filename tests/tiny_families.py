"""Seeded tiny random models of every mapped architecture, built from configs in code.

Each one has 3 layers and width 64, so the whole site-map matrix runs on CPU in seconds. They need no tokenizer:
the self-tests feed token ids (``ids(...)``), and the stub tokenizer only supplies the pad id that
``mechclaims.forward.capture`` uses for right padding.

``TINY`` maps a readable family id (the pytest id: ``-k "sites and gemma2"``) to ``(config factory, model class
name)``. Sublayer weights are drawn with ``initializer_range=0.2`` (not HF's 0.02) so that attention and the MLP add
a sizeable share of the residual (measured: the resid_pre-only reconstruction is off by 31-63% median): the
identity then has something to catch, and dropping a term or double-counting the residual moves the error by whole
percents, not by rounding noise. Attention is "eager", so the self-tests can observe q/k inside the kernel.

``WRONG`` holds, per family, a deliberately wrong site map: the bug the self-test must catch.
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from mechclaims.model.sites import SiteMap, SiteSpec, first, sitemap_for

V, D, H, KV, L, FF, T = 96, 64, 4, 2, 3, 128, 9  # vocab, width, heads, kv heads, layers, MLP width, tokens
INIT = 0.2


def _common(**kw: Any) -> dict[str, Any]:
    base = dict(vocab_size=V, hidden_size=D, num_hidden_layers=L, num_attention_heads=H, intermediate_size=FF,
                max_position_embeddings=64, initializer_range=INIT, attn_implementation="eager",
                bos_token_id=1, eos_token_id=2)
    base.update(kw)
    return base


def _cfg(cls_name: str, **kw: Any) -> Callable[[], Any]:
    def make() -> Any:
        import transformers

        return getattr(transformers, cls_name)(**kw)
    return make


GQA = dict(num_key_value_heads=KV)
TINY: dict[str, tuple[Callable[[], Any], str]] = {
    "gpt2": (_cfg("GPT2Config", n_layer=L, n_embd=D, n_head=H, n_inner=FF, n_positions=64, vocab_size=V,
                  bos_token_id=1, eos_token_id=2, initializer_range=INIT, attn_implementation="eager"),
             "GPT2LMHeadModel"),
    "gpt_neox": (_cfg("GPTNeoXConfig", **_common(use_parallel_residual=True)), "GPTNeoXForCausalLM"),
    "gpt_neox_sequential": (_cfg("GPTNeoXConfig", **_common(use_parallel_residual=False)), "GPTNeoXForCausalLM"),
    "gptj": (_cfg("GPTJConfig", n_layer=L, n_embd=D, n_head=H, n_inner=FF, n_positions=64, rotary_dim=8,
                  vocab_size=V, bos_token_id=1, eos_token_id=2, initializer_range=INIT,
                  attn_implementation="eager"), "GPTJForCausalLM"),
    "llama": (_cfg("LlamaConfig", **_common(**GQA)), "LlamaForCausalLM"),
    "gemma": (_cfg("GemmaConfig", **_common(**GQA, head_dim=16)), "GemmaForCausalLM"),
    "mistral": (_cfg("MistralConfig", **_common(**GQA, sliding_window=None)), "MistralForCausalLM"),
    "qwen2": (_cfg("Qwen2Config", **_common(**GQA)), "Qwen2ForCausalLM"),
    "qwen3": (_cfg("Qwen3Config", **_common(**GQA, head_dim=16)), "Qwen3ForCausalLM"),
    "gemma2": (_cfg("Gemma2Config", **_common(**GQA, head_dim=16, query_pre_attn_scalar=16, sliding_window=4)),
               "Gemma2ForCausalLM"),
    "gemma3": (_cfg("Gemma3TextConfig", **_common(**GQA, head_dim=16, query_pre_attn_scalar=16, sliding_window=4)),
               "Gemma3ForCausalLM"),
    "olmo2": (_cfg("Olmo2Config", **_common(**GQA)), "Olmo2ForCausalLM"),
    "phi": (_cfg("PhiConfig", **_common(**GQA)), "PhiForCausalLM"),
    "phi3": (_cfg("Phi3Config", **_common(**GQA, pad_token_id=0)), "Phi3ForCausalLM"),
    "cohere": (_cfg("CohereConfig", **_common(**GQA)), "CohereForCausalLM"),
    "stablelm": (_cfg("StableLmConfig", **_common(**GQA)), "StableLmForCausalLM"),
    "bloom": (_cfg("BloomConfig", vocab_size=V, hidden_size=D, n_layer=L, n_head=H, initializer_range=INIT,
                   attn_implementation="eager"), "BloomForCausalLM"),
    "granite": (_cfg("GraniteConfig", **_common(**GQA, embedding_multiplier=12.0, residual_multiplier=0.22,
                                                attention_multiplier=0.0625, logits_scaling=8.0)),
                "GraniteForCausalLM"),
    "bert": (_cfg("BertConfig", **_common()), "BertForMaskedLM"),
    "roberta": (_cfg("RobertaConfig", **_common(pad_token_id=1)), "RobertaForMaskedLM"),
}
FAMILY_IDS = tuple(TINY)


def build(family: str, dtype: str = "float32", seed: int = 0):
    """A LoadedModel (eval mode, no grad) of the tiny ``family``, with a stub tokenizer (pad id only)."""
    import torch
    import transformers

    from mechclaims.model.registry import LoadedModel, kind_of, n_layers_of

    from mechclaims.model.fingerprint import weight_fingerprint

    make_cfg, cls_name = TINY[family]
    cfg = make_cfg()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, cls_name)(cfg)
    model = model.to(getattr(torch, dtype)).eval()
    model.requires_grad_(False)
    sm = sitemap_for(model)
    tok = SimpleNamespace(pad_token_id=int(getattr(cfg, "pad_token_id", None) or 0))
    return LoadedModel(name=f"tiny-{family}", model=model, tokenizer=tok, kind=kind_of(model), family=sm.family,
                       n_layers=n_layers_of(model.config), fingerprint=weight_fingerprint(model), dtype=dtype)


def ids(n_seq: int = 4, n_tok: int = T, seed: int = 0, vocab: int = V) -> list[list[int]]:
    """Equal-length random token ids (no padding, so every position of every row is a real token).
    Ids 0-2 are skipped: they are pad/bos/eos in some configs (RoBERTa derives positions from the pad id)."""
    rng = np.random.default_rng(seed)
    return rng.integers(3, vocab, size=(n_seq, n_tok)).tolist()


# ---------------------------------------------------------------------------------------------------------------
# Deliberately wrong maps: each is a bug a real library shipped or could ship. The identity must fail on them.


def _swap(sm: SiteMap, **specs: SiteSpec) -> SiteMap:
    return dataclasses.replace(sm, layer={**sm.layer, **{k.replace("__", "."): v for k, v in specs.items()}})


WRONG: dict[str, tuple[str, Callable[[SiteMap], SiteMap]]] = {
    "gpt2": ("attn_out read at c_proj's input (head outputs before W_O, 'hook_z' mistaken for attn_out)",
             lambda sm: _swap(sm, hook_attn_out=SiteSpec("h.{l}.attn.c_proj", "input"))),
    "gpt_neox": ("attention and MLP taken sequentially: resid_mid read at the MLP norm's input, which in the "
                 "parallel block is resid_pre, not resid_pre + attn_out",
                 lambda sm: dataclasses.replace(sm, residual="sequential", layer={
                     **sm.layer, "hook_resid_mid": SiteSpec("layers.{l}.post_attention_layernorm", "input")})),
    "gpt_neox_sequential": ("treated as parallel: resid_mid read at the attention norm's input (h), where a "
                            "parallel block's MLP would read, instead of h + attn_out",
                            lambda sm: _swap(sm, hook_resid_mid=SiteSpec("layers.{l}.input_layernorm", "input"))),
    "gptj": ("mlp_out read at the shared ln_1's output (the normed input both sublayers read)",
             lambda sm: _swap(sm, hook_mlp_out=SiteSpec("h.{l}.ln_1"))),
    "llama": ("resid_mid read at the MLP norm's output instead of its input",
              lambda sm: _swap(sm, hook_resid_mid=SiteSpec("layers.{l}.post_attention_layernorm"))),
    "gemma": ("attn_out read at the attention's input (input_layernorm's output) instead of its output",
              lambda sm: _swap(sm, hook_attn_out=SiteSpec("layers.{l}.input_layernorm"))),
    "mistral": ("attn_out read at o_proj's input (before W_O)",
                lambda sm: _swap(sm, hook_attn_out=SiteSpec("layers.{l}.self_attn.o_proj", "input"))),
    "qwen2": ("mlp_out read at the MLP norm's output (the MLP's input, not what it adds)",
              lambda sm: _swap(sm, hook_mlp_out=SiteSpec("layers.{l}.post_attention_layernorm"))),
    "qwen3": ("attn_out read at o_proj's input (before W_O)",
              lambda sm: _swap(sm, hook_attn_out=SiteSpec("layers.{l}.self_attn.o_proj", "input"))),
    "gemma2": ("sandwich norm ignored: attn_out/mlp_out read at the sublayer modules' outputs, before "
               "post_attention_layernorm / post_feedforward_layernorm",
               lambda sm: _swap(sm, hook_attn_out=SiteSpec("layers.{l}.self_attn", "output", first),
                                hook_mlp_out=SiteSpec("layers.{l}.mlp"))),
    "gemma3": ("sandwich norm ignored: attn_out read at self_attn's output, before post_attention_layernorm",
               lambda sm: _swap(sm, hook_attn_out=SiteSpec("layers.{l}.self_attn", "output", first))),
    "olmo2": ("post-sublayer norm ignored: mlp_out read at the MLP's output, before post_feedforward_layernorm",
              lambda sm: _swap(sm, hook_mlp_out=SiteSpec("layers.{l}.mlp"))),
    "phi": ("attn_out read at the output projection's input (before W_O)",
            lambda sm: _swap(sm, hook_attn_out=SiteSpec("layers.{l}.self_attn.dense", "input"))),
    "phi3": ("resid_mid read at the block's input (the residual before attention was added)",
             lambda sm: _swap(sm, hook_resid_mid=SiteSpec("layers.{l}", "input"))),
    "cohere": ("parallel block treated as sequential: a resid_mid read at the shared norm's input (h)",
               lambda sm: dataclasses.replace(sm, residual="sequential", layer={
                   **sm.layer, "hook_resid_mid": SiteSpec("layers.{l}.input_layernorm", "input")})),
    "stablelm": ("mlp_out read at the MLP's input norm (post_attention_layernorm) output",
                 lambda sm: _swap(sm, hook_mlp_out=SiteSpec("layers.{l}.post_attention_layernorm"))),
    "bloom": ("attn_out read at the attention module's output, which already holds the residual "
              "(dropout_add inside the module): the residual is counted twice",
              lambda sm: _swap(sm, hook_attn_out=SiteSpec("h.{l}.self_attention", "output", first))),
    "granite": ("residual_multiplier ignored: attn_out/mlp_out read as the raw sublayer outputs",
                lambda sm: _swap(sm, hook_attn_out=SiteSpec("layers.{l}.self_attn", "output", first),
                                 hook_mlp_out=SiteSpec("layers.{l}.mlp"))),
    "bert": ("post-LN treated as pre-LN: the plain sum resid_pre + attn_out + mlp_out claimed for resid_post",
             lambda sm: dataclasses.replace(sm, residual="sequential")),
    "roberta": ("post-LN treated as pre-LN, with attn_out read after the Add & LayerNorm (= resid_mid)",
                lambda sm: _swap(dataclasses.replace(sm, residual="sequential"),
                                 hook_attn_out=SiteSpec("encoder.layer.{l}.attention", "output", first))),
}
