"""Loading a model by name: built-in, hub id or local directory; once, in eval mode, without grad."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gguf
from huggingface_hub import try_to_load_from_cache

import torch
from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, BertConfig,
                          BertForMaskedLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM)

from mechclaims.errors import ModelError
from mechclaims.model.cache import cache_root
from mechclaims.model import gemma3
from mechclaims.model.bundled_tokenizers import bundled_tokenizer
from mechclaims.model.fingerprint import hub_fingerprint, weight_fingerprint
from mechclaims.model.gguf import dtype_kw, gguf_dir
from mechclaims.model.loaderrors import load_error
from mechclaims.model.registry import (BUILTIN, DEFAULT_MODEL, GEMMA3, GGUF_MODELS, TINY, LoadedModel, check_device_dtype,
                                       closest_builtin, hub_kwargs, kind_of, n_layers_of)
from mechclaims.model.sites import sitemap_for
from mechclaims.model.sources import minilm_dir, smollm2_gguf
from mechclaims.model.tokenization import pin_special_tokens


def _tiny_config(name: str, vocab_size: int, tok: Any):
    if name == "tiny-gpt2":
        return GPT2Config(n_layer=4, n_embd=64, n_head=4, n_positions=512, vocab_size=vocab_size,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if name == "tiny-llama":
        return LlamaConfig(num_hidden_layers=4, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=512,
                           bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id)
    return BertConfig(num_hidden_layers=4, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                      vocab_size=vocab_size, max_position_embeddings=512, pad_token_id=tok.pad_token_id)


def _tokenizer_for(name: str, cache: Any):
    """The tiny models' tokenizers ship in the wheel (mechclaims.model.bundled_tokenizers): no model package."""
    return bundled_tokenizer(name)


def resolve_config(name: str, cache: Any = None, **hub: Any) -> tuple[Any, str]:
    """Config and source without loading weights (cheap: used at collection to know the layer count). ``hub``:
    :func:`hub_kwargs` for a hub id."""
    # A built-in real model needs its package even with a converted cache (its digest keys the cache): checked
    # here, at start-up, so a missing package is one usage error instead of one error per test.
    if name == DEFAULT_MODEL:
        smollm2_gguf()
        d = cache_root(cache)
        hits = sorted(d.glob("smollm2-135m-*/config.json")) if d.exists() else []
        if hits:
            return AutoConfig.from_pretrained(hits[-1].parent), "gguf-cache"
        reader = gguf.GGUFReader(str(smollm2_gguf()))
        f = reader.fields["llama.block_count"]
        n = int(f.parts[f.data[0]][0])
        return LlamaConfig(num_hidden_layers=n), "gguf"
    if name == GEMMA3:
        gemma3.package()
        d = cache_root(cache)
        hits = sorted(d.glob(f"{GEMMA3}-*/config.json")) if d.exists() else []
        # No cache yet: convert now (once, ~60 s) rather than parse the GGUF twice (GGUFReader: ~8 s on its vocab).
        return AutoConfig.from_pretrained(hits[-1].parent if hits else gguf_dir(GEMMA3, cache)), "gguf-cache"
    if name == "minilm-l6":
        return AutoConfig.from_pretrained(minilm_dir()), "package"
    if name in TINY:
            return {"tiny-gpt2": GPT2Config(n_layer=4), "tiny-llama": LlamaConfig(num_hidden_layers=4),
                "tiny-bert": BertConfig(num_hidden_layers=4)}[name], "code"
    check_not_a_typo(name)
    try:
        return AutoConfig.from_pretrained(name, **hub), "hf"
    except Exception as e:  # transformers raises OSError/ValueError/HF errors: "not here", or a broken directory
        raise load_error(name, e) from None


def check_not_a_typo(name: str) -> None:
    """A name that is not a built-in, not a local folder and not in the HF cache, but close to a built-in name
    (``tiny-gtp2``), is a ModelError with "did you mean", before any hub call (which retried for 26 s)."""
    if name in BUILTIN or Path(name).expanduser().exists():
        return
    close = closest_builtin(name)
    if close is None or _in_hf_cache(name):
        return
    raise ModelError(f"model {name!r} is not a built-in model or a local folder: did you mean {close}? (The built-in "
                     f"models: {', '.join(BUILTIN)}.) Being this close to a built-in name, it was not looked up on the "
                     f"Hugging Face hub; for a hub model give its full id, with the organisation (org/name).")


def _in_hf_cache(name: str) -> bool:
    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # noqa: BLE001 - an id the hub library refuses is not in its cache
        return False


def load_model(name: str = DEFAULT_MODEL, device: str = "cpu", dtype: str = "float32",
               cache: str | os.PathLike | None = None, seed: int = 0, revision: str | None = None,
               trust_remote_code: bool = False, local_files_only: bool | None = None,
               batch_size: int | None = None, max_memory: dict[Any, Any] | None = None,
               offload_folder: str | os.PathLike | None = None) -> LoadedModel:
    """Load ``name`` once, in eval mode; see the module docstring for the names.

    ``revision``, ``trust_remote_code`` and ``local_files_only`` go to ``from_pretrained`` for a hub id (see
    :func:`hub_kwargs`); ``batch_size`` caps every capture's forward batch on this model. ``device="auto"`` splits
    a hub or local model with accelerate (``device_map="auto"``), within ``max_memory`` per device (e.g.
    ``{0: "20GiB", "cpu": "60GiB"}``), offloading the rest to ``offload_folder`` on disk.
    """
    hub = hub_kwargs(revision, trust_remote_code, local_files_only)
    check_device_dtype(device, dtype)
    tdtype = getattr(torch, dtype)
    if name in TINY:
        tok = _tokenizer_for(name, cache)
        cfg = _tiny_config(name, len(tok), tok)
        cls = {"tiny-gpt2": GPT2LMHeadModel, "tiny-llama": LlamaForCausalLM, "tiny-bert": BertForMaskedLM}[name]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(cfg)
    elif name in GGUF_MODELS:
        d = gguf_dir(name, cache)
        tok = pin_special_tokens(AutoTokenizer.from_pretrained(d), name, cache)
        model = AutoModelForCausalLM.from_pretrained(d, **dtype_kw(tdtype))
    elif name == "minilm-l6":
        d = minilm_dir()
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModel.from_pretrained(d, **dtype_kw(tdtype))
    else:
        cfg, _ = resolve_config(name, cache, **hub)
        archs = getattr(cfg, "architectures", None) or []
        loader = (AutoModelForCausalLM if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
                  else AutoModelForMaskedLM if any(a.endswith("ForMaskedLM") for a in archs) else AutoModel)
        try:
            tok = AutoTokenizer.from_pretrained(name, **hub)
            kw: dict[str, Any] = {"device_map": "auto"} if device == "auto" else {}
            if device == "auto" and max_memory:
                kw["max_memory"] = max_memory
            if device == "auto" and offload_folder:
                kw["offload_folder"] = str(offload_folder)
            model = loader.from_pretrained(name, **hub, **dtype_kw(tdtype), **kw)
        except Exception as e:
            raise load_error(name, e) from None
    ensure_pad(tok)
    if device != "auto":  # a dispatched model (accelerate hooks, offloaded weights) must not be moved
        model = model.to(dtype=tdtype).to(device)
    model.eval()
    model.requires_grad_(False)
    sm = sitemap_for(model)  # fails early, with the supported families, on an unknown architecture
    extra: dict[str, Any] = {"batch_size": batch_size} if batch_size else {}
    return LoadedModel(name=name, model=model, tokenizer=tok, kind=kind_of(model), family=sm.family,
                       n_layers=n_layers_of(model.config), fingerprint=_fingerprint(name, model, hub, extra),
                       device=device, dtype=dtype, extra=extra)


MUTATION_CHECK_BYTES = 2 << 30  # file-fingerprinted models up to this size also get a state-dict hash at load


def _fingerprint(name: str, model: Any, hub: dict[str, Any], extra: dict[str, Any]) -> str:
    """Built-in models: the state-dict hash (their committed baselines name it). Hub ids and local directories with
    safetensors files: the files' hash (mechclaims.model.fingerprint), plus, for a model small enough, the state-dict hash
    in ``extra["state_fingerprint"]`` for the end-of-session mutation check (skipped for bigger models)."""
    if name not in BUILTIN:
        fp = hub_fingerprint(name, hub)
        if fp is not None:
            size = sum(p.numel() * p.element_size() for p in model.state_dict().values() if p.device.type != "meta")
            if size <= MUTATION_CHECK_BYTES:
                extra["state_fingerprint"] = weight_fingerprint(model)
            return fp
    return weight_fingerprint(model)


def ensure_pad(tok: Any) -> None:
    """Give a tokenizer without a pad token one. Padding is masked out everywhere, so any id works: eos by
    convention, else the vocabulary's first token (a tokenizer with neither pad nor eos)."""
    if tok.pad_token_id is not None:
        return
    if tok.eos_token is not None:
        tok.pad_token = tok.eos_token
        return
    try:
        tok.pad_token = tok.convert_ids_to_tokens(0)
    except Exception:  # noqa: BLE001 - capture.pad_id falls back to id 0 whatever the tokenizer allows
        pass
