"""A SentencePiece-BPE tokenizer built from a GGUF's own vocabulary with the ``tokenizers`` library, for the
transformers versions whose GGUF converter builds Gemma 3's wrongly.

Gemma 3's GGUF (``tokenizer.ggml.model == "llama"``) lists tokens and scores but no merges. llama.cpp encodes by
repeatedly merging the adjacent pair whose concatenation is the token with the highest score. A BPE whose merges
are every split of every token into two tokens, ranked by the whole token's score (ties: the pieces' ids), does
the same; that is how transformers 5.23+ rebuilds it. Measured on the probe sentence: 4.52.4 and 4.57.6 build a
Unigram model instead (10 tokens where the GGUF implies 6), 5.0.0 a BPE with no merges (22). So
:func:`build` writes the tokenizer from the file alone, with no transformers converter, and the ids are then the
same under every transformers version (tests/test_tokenization.py checks them against the llama.cpp reading
in tests/gguf_reference.py, in every cell of the version matrix).

The built tokenizer is memoised as ``<cache>/gguf-spm-<sha12>-v<BUILDER>.json`` (the GGUF's checksum and this
builder's version name it): building took 25 s for 262k tokens (on a busy core), loading the file ~2 s.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gguf as gg
import transformers
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

BUILDER = 1  # bump when build() changes what it writes
CONTROL, USER_DEFINED = 3, 4  # llama.cpp's token types
SPACE = "\u2581"


def merges_from_scores(tokens: list[str], scores: list[float]) -> list[tuple[str, str]]:
    """Every split of every token into two tokens, highest-scoring whole token first; within one token by the
    pieces' ids (transformers' ``generate_merges`` order)."""
    index = {t: i for i, t in enumerate(tokens)}
    out: list[tuple[float, int, int, str, str]] = []
    for t, s in zip(tokens, scores):
        for k in range(1, len(t)):
            left, right = t[:k], t[k:]
            il, ir = index.get(left), index.get(right)
            if il is not None and ir is not None:
                out.append((-s, il, ir, left, right))
    out.sort(key=lambda m: (m[0], m[1], m[2]))
    return [(m[3], m[4]) for m in out]


def build(gguf: Path) -> Any:
    """:func:`from_vocab` of a SentencePiece ("llama") GGUF's metadata."""
    f = gg.GGUFReader(str(gguf)).fields

    def get(key: str, default: Any = None) -> Any:
        field = f.get(f"tokenizer.ggml.{key}")
        return default if field is None else field.contents()

    if get("model") != "llama":
        raise ValueError(f"{gguf.name}: tokenizer.ggml.model is {get('model')!r}, not a SentencePiece ('llama') one")
    tokens = list(get("tokens"))
    return from_vocab(tokens, list(get("scores")), list(get("token_type", [1] * len(tokens))),
                      unk=get("unknown_token_id", 0), bos=get("bos_token_id"), eos=get("eos_token_id"),
                      add_bos=bool(get("add_bos_token", True)), add_eos=bool(get("add_eos_token", False)))


def from_vocab(tokens: list[str], scores: list[float], types: list[int], unk: int, bos: int | None,
               eos: int | None, add_bos: bool, add_eos: bool) -> Any:
    """A ``tokenizers.Tokenizer`` for a SentencePiece vocabulary: spaces become U+2581, BPE with byte fallback,
    control tokens special, user-defined tokens (Gemma's runs of newlines, HTML tags) matched first, and BOS/EOS
    as the metadata says."""
    tk = Tokenizer(BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges_from_scores(tokens, scores),
                       unk_token=tokens[unk], fuse_unk=True, byte_fallback=True))
    tk.normalizer = normalizers.Replace(" ", SPACE)
    tk.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tk.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
    tk.add_special_tokens([AddedToken(t, normalized=False, special=True)
                           for t, ty in zip(tokens, types) if ty == CONTROL])
    tk.add_tokens([AddedToken(t, normalized=False, special=False) for t, ty in zip(tokens, types)
                   if ty == USER_DEFINED])
    single = [f"{tokens[bos]}:0"] * (add_bos and bos is not None) + ["$A:0"] + \
        [f"{tokens[eos]}:0"] * (add_eos and eos is not None)
    special = [(tokens[i], i) for i in sorted({bos, eos} - {None})]
    tk.post_processor = processors.TemplateProcessing(single=" ".join(single), special_tokens=special)
    return tk


def load(gguf: Path, digest: str, cache_dir: Path, special: dict[str, str]) -> Any:
    """A ``PreTrainedTokenizerFast`` around :func:`build`'s tokenizer, read from (or written to) the cache.
    ``special`` names the special tokens for transformers (bos_token, eos_token, unk_token, pad_token, ...)."""
    path = cache_dir / f"gguf-spm-{digest[:12]}-v{BUILDER}.json"
    try:
        tk = Tokenizer.from_file(str(path))
    except Exception:  # absent or unreadable (tokenizers raises its own Exception type): build it again
        tk = build(gguf)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tk.save(str(tmp))
            os.replace(tmp, path)  # atomic: a concurrent reader sees no file or the whole file
        except Exception:  # read-only or full cache (tokenizers raises its own type): rebuild next time
            tmp.unlink(missing_ok=True)
    body = tk.encode("a", add_special_tokens=False).ids
    with_special = tk.encode("a").ids
    flags = {"add_bos_token": with_special[:1] != body[:1], "add_eos_token": with_special[-1:] != body[-1:]}
    return _fast_class()(tokenizer_object=tk, **flags, **special)


def _flag(key: str, default: bool) -> property:
    """A tokenizer flag (``add_bos_token``/``add_eos_token``) whose setter rebuilds the post-processor."""
    def get(self: Any) -> bool:
        return self._flags[key] if hasattr(self, "_flags") else default

    def set_(self: Any, value: bool) -> None:
        if hasattr(self, "_flags"):
            self._flags[key] = bool(value)
            self._rebuild()

    return property(get, set_)


def _fast_class() -> type:
    """``PreTrainedTokenizerFast`` whose ``add_bos_token``/``add_eos_token`` setters rebuild the post-processor, as
    transformers' Llama and Gemma tokenizers do, so that :func:`mechclaims.model.tokenization.pin_special_tokens` can set
    the GGUF's rule on it under every version (4.57's base class has no such setters)."""
    class GGUFSentencePieceTokenizerFast(transformers.PreTrainedTokenizerFast):
        def __init__(self, *args: Any, add_bos_token: bool = True, add_eos_token: bool = False, **kw: Any):
            self._flags = {"bos": bool(add_bos_token), "eos": bool(add_eos_token)}
            super().__init__(*args, **kw)
            self._rebuild()

        def _rebuild(self) -> None:
            if getattr(self, "_tokenizer", None) is None or not hasattr(self, "_flags"):
                return  # called by the base class's __init__ before the backend exists
            bos, eos = self.bos_token, self.eos_token
            single = [f"{bos}:0"] * self._flags["bos"] + ["$A:0"] + [f"{eos}:0"] * self._flags["eos"]
            special = [(t, self.convert_tokens_to_ids(t)) for t in dict.fromkeys([bos, eos]) if t is not None]
            self._tokenizer.post_processor = processors.TemplateProcessing(single=" ".join(single),
                                                                           special_tokens=special)

        add_bos_token = _flag("bos", True)
        add_eos_token = _flag("eos", False)

    return GGUFSentencePieceTokenizerFast
