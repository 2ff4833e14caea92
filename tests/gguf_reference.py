"""Reference tokenizers written from a GGUF's metadata alone, following llama.cpp's reading of it
(src/llama-vocab.cpp), with no transformers code: the token ids "the GGUF implies", to judge the tokenizer that
transformers builds from the same file.

- ``tokenizer.ggml.model == "llama"`` (SentencePiece, Gemma 3): spaces become U+2581; starting from characters,
  repeatedly merge the adjacent pair whose concatenation is a token with the highest score (leftmost on ties);
  a piece that is no token falls back to its ``<0xXX>`` byte tokens.
- ``"gpt2"`` (byte-level BPE, SmolLM2): split by the pre-tokenizer regexes of ``tokenizer.ggml.pre`` (for
  ``smollm``: every digit alone, then GPT-2's pattern), map bytes to GPT-2's printable alphabet, then apply the
  merges in rank order.
- Both first cut the text at user-defined tokens (Gemma's runs of newlines, spaces and tabs, HTML tags), longest
  first, as llama.cpp does; then BOS/EOS as ``add_bos_token``/``add_eos_token`` say.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import regex

USER_DEFINED = 4  # llama.cpp's LLAMA_TOKEN_TYPE_USER_DEFINED
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
PRE_REGEXES = {"smollm": [r"\p{N}", _GPT2], "gpt2": [_GPT2], "default": [_GPT2]}


@dataclass(frozen=True)
class GGUFVocab:
    model: str
    pre: str
    tokens: tuple[str, ...]
    index: dict
    scores: tuple[float, ...]
    merges: dict
    user_defined: tuple[tuple[str, int], ...]  # longest first
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    bos: int | None
    eos: int | None


@lru_cache(maxsize=None)
def read_vocab(path: str) -> GGUFVocab:
    import gguf

    f = gguf.GGUFReader(path).fields

    def get(k, default=None):
        return f[f"tokenizer.ggml.{k}"].contents() if f"tokenizer.ggml.{k}" in f else default

    tokens = tuple(get("tokens"))
    types = get("token_type", [1] * len(tokens))
    model = get("model")
    merges = {tuple(m.split(" ", 1)): r for r, m in enumerate(get("merges", []))}
    ud = sorted(((t, i) for i, (t, ty) in enumerate(zip(tokens, types)) if ty == USER_DEFINED),
                key=lambda x: -len(x[0]))
    return GGUFVocab(model=model, pre=get("pre", "default"), tokens=tokens,
                     index={t: i for i, t in enumerate(tokens)}, scores=tuple(get("scores", [0.0] * len(tokens))),
                     merges=merges, user_defined=tuple(ud), add_bos=bool(get("add_bos_token", model == "llama")),
                     add_eos=bool(get("add_eos_token", False)), add_space_prefix=bool(get("add_space_prefix", False)),
                     bos=get("bos_token_id"), eos=get("eos_token_id"))


def encode(v: GGUFVocab, text: str) -> list[int]:
    """Ids of ``text`` with the special tokens the metadata asks for."""
    ids: list[int] = []
    prev_special = True
    for frag, tid in _partition(v, text):
        if tid is not None:
            ids.append(tid)
            prev_special = True
            continue
        ids += _spm(v, frag, prev_special) if v.model == "llama" else _bpe(v, frag)
        prev_special = False
    return [v.bos] * v.add_bos + ids + [v.eos] * v.add_eos


def _partition(v: GGUFVocab, text: str) -> list[tuple[str, int | None]]:
    frags: list[tuple[str, int | None]] = [(text, None)]
    for tok, tid in v.user_defined:
        if tok not in text:
            continue
        out: list[tuple[str, int | None]] = []
        for f, sid in frags:
            if sid is not None:
                out.append((f, sid))
                continue
            for j, part in enumerate(f.split(tok)):
                if j:
                    out.append((tok, tid))
                if part:
                    out.append((part, None))
        frags = out
    return frags


def _spm(v: GGUFVocab, frag: str, prev_special: bool) -> list[int]:
    s = ("\u2581" if v.add_space_prefix and prev_special else "") + frag.replace(" ", "\u2581")
    txt: list[str | None] = list(s)
    nxt = list(range(1, len(s))) + [-1]
    prv = list(range(-1, len(s) - 1))
    heap: list[tuple[float, int, str]] = []

    def push(left: int, right: int) -> None:
        if left >= 0 and right >= 0:
            t = txt[left] + txt[right]
            i = v.index.get(t)
            if i is not None:
                heapq.heappush(heap, (-v.scores[i], left, t))

    for i in range(len(s) - 1):
        push(i, i + 1)
    while heap:
        _, left, t = heapq.heappop(heap)
        right = nxt[left]
        if txt[left] is None or right < 0 or txt[left] + txt[right] != t:
            continue  # stale: one side has merged since this pair was queued
        txt[left], txt[right], nxt[left] = t, None, nxt[right]
        if nxt[left] >= 0:
            prv[nxt[left]] = left
        push(prv[left], left)
        push(left, nxt[left])
    out, i = [], 0 if s else -1
    while i >= 0:
        t = txt[i]
        out += [v.index[t]] if t in v.index else [v.index[f"<0x{b:02X}>"] for b in t.encode()]
        i = nxt[i]
    return out


@lru_cache(maxsize=1)
def _byte_alphabet() -> dict[int, str]:
    """GPT-2's map from bytes to printable characters (printable Latin-1 bytes map to themselves)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
            *range(ord("\u00ae"), ord("\u00ff") + 1)]
    extra = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + n) for n, b in enumerate(extra)}}


def _bpe(v: GGUFVocab, frag: str) -> list[int]:
    pieces = [frag]
    for pat in PRE_REGEXES[v.pre]:
        out = []
        for p in pieces:
            pos = 0
            for m in regex.finditer(pat, p):
                if m.start() > pos:
                    out.append(p[pos:m.start()])
                out.append(m.group())
                pos = m.end()
            if pos < len(p):
                out.append(p[pos:])
        pieces = out
    alpha = _byte_alphabet()
    ids = []
    for p in pieces:
        word = [alpha[b] for b in p.encode()]
        while len(word) > 1:
            ranks = [v.merges.get(pair, float("inf")) for pair in zip(word, word[1:])]
            best = min(range(len(ranks)), key=ranks.__getitem__)
            if ranks[best] == float("inf"):
                break
            word[best:best + 2] = [word[best] + word[best + 1]]
        ids += [v.index[w] for w in word]
    return ids


def gguf_path_of(name: str) -> Path:
    """The GGUF file of a built-in model (assembled in the cache for gemma3-270m)."""
    from mechclaims.model import registry, sources as models

    if name == registry.DEFAULT_MODEL:
        return models.smollm2_gguf()
    from mechclaims.model.gemma3 import gguf_file

    return gguf_file()
