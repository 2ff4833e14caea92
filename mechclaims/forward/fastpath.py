"""The one fast path for many small variations of a few prompts: KV-cache prefixes and block skipping.

Causal LMs only. A variation (an ablation, a patch) that touches only a prompt's last token, at block s or later,
cannot change anything before that token, nor any block before s. So:

- *prefixes once*: every distinct prompt's tokens but the last run once, left-padded, keeping their keys and values
  (:class:`PrefixRunner`); each varied row then runs one token against its prompt's cache rows
  (:func:`subset_cache`: the shared cache is never written);
- *blocks from s*: the block list is cut to ``s..`` (:func:`blocks_from`, restored in ``finally``) and block s gets
  the prompt's clean input at the last token, recorded once; for full-sequence runs (patches at earlier positions)
  the clean ``hook_resid_pre[s]`` of every token is fed instead (:func:`feed_block_input`).

Whether these reproduce the plain forward pass depends on the family's forward code and the transformers version,
so :func:`check` runs all three against the plain pass on the model itself, once per loaded model (kept in
``lm.extra``). A path that does not reproduce it to ``RTOL`` is never used: its callers run the plain pass, with a
warning. ``tests/test_fastpath.py`` runs the check and row-by-row comparisons on every tiny family and smollm2-135m.
"""
from __future__ import annotations

import copy
import inspect
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from mechclaims.forward.engine import device_of, pad_id, run_batch
from mechclaims.forward.intervene import intervene
from mechclaims.model.sites import base_of, site

RTOL = 1e-4  # of the largest |value|: float32 through other kernels (cached, batched, padded)


def cache_kw(module: Any) -> str:
    """transformers >= 5.2x names the KV cache ``cache`` (``past_key_values`` still works, with a warning)."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def subset_cache(cache: Any, rows: torch.Tensor, layers: Sequence[int] | None = None) -> Any:
    """A cache holding rows ``rows`` of ``cache`` at ``layers`` (default: all); other layers' entries are left as
    they are (a run from block s never reads them). The shared cache is never written."""
    c = copy.copy(cache)
    if hasattr(c, "layers"):  # transformers >= 4.56: a list of per-layer objects
        c.layers = [copy.copy(x) for x in cache.layers]
        for i, x in enumerate(c.layers):
            if layers is None or i in layers:
                x.keys, x.values = x.keys[rows], x.values[rows]
    else:  # older DynamicCache: lists of tensors
        keep = range(len(cache.key_cache)) if layers is None else layers
        c.key_cache = [k[rows] if i in keep else k for i, k in enumerate(cache.key_cache)]
        c.value_cache = [v[rows] if i in keep else v for i, v in enumerate(cache.value_cache)]
    return c


@contextmanager
def blocks_from(lm: Any, start: int) -> Iterator[None]:
    """Run only blocks ``start..`` (the block list is cut and restored in ``finally``)."""
    if start == 0:
        yield
        return
    base = base_of(lm.model)
    parent_path, _, attr = lm.sitemap.blocks.rpartition(".")
    parent = base.get_submodule(parent_path) if parent_path else base
    full = getattr(parent, attr)
    try:
        setattr(parent, attr, torch.nn.ModuleList(list(full)[start:]))
        yield
    finally:
        setattr(parent, attr, full)


@contextmanager
def feed_block_input(lm: Any, start: int, value: Any) -> Iterator[None]:
    """Cut the blocks to ``start..`` and replace block ``start``'s input by ``value(x)`` (a tensor of x's shape),
    before any edit of the caller's at that site. The feed hook goes on before the list is cut: the site resolves
    against the full block list."""
    if start == 0:
        yield
        return
    with intervene(lm, site("hook_resid_pre", start), lambda x: value(x).to(x.dtype), first=True), \
            blocks_from(lm, start):
        yield


class PrefixRunner:
    """Many one-token continuations of a set of prompts (causal LMs): the final hidden state at each row's last
    token, with whatever edits the caller has installed, optionally running only blocks ``start..``.

    ``prompts``: token id lists (distinct or not: rows are indices into them). ``hidden(rows, start)`` returns
    ``[len(rows), d_model]`` (the base model's output at the last token, after its final norm)."""

    def __init__(self, lm: Any, prompts: Sequence[Sequence[int]], record_blocks: bool = False, chunk: int = 512):
        self.lm, self.prompts, self.chunk = lm, [list(p) for p in prompts], chunk
        self.dev = dev = device_of(lm)
        self.base = base_of(lm.model)
        self.ckw = cache_kw(self.base)
        n, T = len(prompts), max(len(x) for x in prompts) - 1
        pre = torch.full((n, T), pad_id(lm) if lm.tokenizer.pad_token_id is None else lm.tokenizer.pad_token_id)
        self.mask = torch.zeros((n, T), dtype=torch.long)
        for i, x in enumerate(self.prompts):  # left-padded, so every row's last token sits at the same place
            pre[i, T - len(x) + 1:], self.mask[i, T - len(x) + 1:] = torch.tensor(x[:-1]), 1
        pre, self.mask = pre.to(dev), self.mask.to(dev)
        with torch.no_grad():  # the prefixes never change: run them once, keep their keys and values
            res = self.base(input_ids=pre, attention_mask=self.mask, use_cache=True,
                            position_ids=(self.mask.cumsum(1) - 1).clamp(min=0))
            self.cache = res["cache"] if self.ckw == "cache" else res.past_key_values
        self.last = torch.tensor([x[-1] for x in self.prompts], device=dev)
        self.block_in: torch.Tensor | None = None  # [n_layers, n_prompts, d_model]: clean block inputs, last token
        self.clean: torch.Tensor | None = None  # [n_prompts, d_model]: the clean final hidden state
        if record_blocks:
            self._record()

    def _record(self) -> None:
        L, n = self.lm.n_layers, len(self.prompts)
        rec: dict[int, list[torch.Tensor]] = {l: [] for l in range(L)}

        def keep(l: int):
            def f(x):
                rec[l].append(x[:, -1].detach().clone())
                return x
            return f

        with ExitStack() as st:
            for l in range(L):
                st.enter_context(intervene(self.lm, site("hook_resid_pre", l), keep(l)))
            self.clean = self.hidden(torch.arange(n))
        self.block_in = torch.stack([torch.cat(rec[l]) for l in range(L)])

    def hidden(self, rows: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Final hidden state at the last token of ``prompts[rows]``, in chunks of ``self.chunk`` rows; with
        ``start`` > 0 only blocks ``start..`` run, fed the recorded clean input (needs ``record_blocks``)."""
        out = []
        for s in range(0, len(rows), self.chunk):
            out.append(self._one(rows[s:s + self.chunk], start))
        return torch.cat(out) if out else torch.zeros((0, self.base.config.hidden_size), device=self.dev)

    def _one(self, r: torch.Tensor, start: int) -> torch.Tensor:
        r = r.to(self.dev)
        c = subset_cache(self.cache, r, None if start == 0 else [0, *range(start, self.lm.n_layers)])
        m = torch.cat([self.mask[r], torch.ones(len(r), 1, dtype=torch.long, device=self.dev)], 1)
        feed = None
        if start > 0:
            x0 = self.block_in[start][r]
            feed = lambda x: x0.unsqueeze(1).expand_as(x).clone()  # noqa: E731
        with torch.no_grad(), feed_block_input(self.lm, start, feed):
            h = self.base(input_ids=self.last[r, None], attention_mask=m, **{self.ckw: c},
                          position_ids=m.sum(1, keepdim=True) - 1, use_cache=False).last_hidden_state
        return h[:, -1]


@dataclass(frozen=True)
class Check:
    """What :func:`check` found: whether each shortcut reproduces the plain pass, and the relative errors."""

    last_token: bool
    skip: bool
    full_skip: bool
    note: str


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / max(1.0, float(b.abs().max())))


def check(lm: Any) -> Check:
    """Run the three shortcuts against the plain forward pass on ``lm`` itself, once per loaded model (memoised
    in ``lm.extra["fastpath"]``: a property of the loaded model, like its fingerprint)."""
    extra = getattr(lm, "extra", None)
    if extra is not None and "fastpath" in extra:
        return extra["fastpath"]
    if lm.kind != "causal":
        res = Check(False, False, False, "not a causal LM: every row runs in full")
    else:
        res = _measure(lm)
        if not (res.last_token and res.skip and res.full_skip):
            warnings.warn(f"{lm.name}: some rows run every block in full ({res.note})", stacklevel=2)
    if extra is not None:
        extra["fastpath"] = res
    return res


def _measure(lm: Any) -> Check:
    """Each shortcut on its own: a family whose cache layout breaks the last-token path may still skip blocks on
    full sequences."""
    rng = np.random.default_rng(0)
    vocab = int(lm.model.get_input_embeddings().weight.shape[0])
    prompts = [rng.integers(3, vocab, size=k).tolist() for k in (7, 5, 7)]
    mid = lm.n_layers // 2
    notes, ok = [], {"last_token": False, "skip": False, "full_skip": False}
    with torch.no_grad():
        plain = [run_batch(lm, [p], base_only=True)[2].last_hidden_state[0] for p in prompts]
    try:
        pr = PrefixRunner(lm, prompts, record_blocks=True)
        rows = torch.arange(len(prompts))
        got0, gotm = pr.hidden(rows), pr.hidden(rows, start=mid)
        e_last, e_skip = _rel(got0, torch.stack([h[-1] for h in plain])), _rel(gotm, got0)
        ok["last_token"], ok["skip"] = e_last <= RTOL, e_last <= RTOL and e_skip <= RTOL
        notes += [f"last token vs plain {e_last:.2g}", f"blocks from {mid} vs all {e_skip:.2g}"]
    except Exception as e:  # an unexpected forward signature or cache layout: no last-token shortcut
        notes.append(f"last token: {type(e).__name__}: {str(e)[:120]}")
    try:
        resid: dict[str, torch.Tensor] = {}

        def keep(x: torch.Tensor) -> torch.Tensor:
            resid["x"] = x.detach().clone()
            return x

        with torch.no_grad(), intervene(lm, site("hook_resid_pre", mid), keep):
            run_batch(lm, [prompts[0]], base_only=True)
        with torch.no_grad(), feed_block_input(lm, mid, lambda x: resid["x"]):
            fs = run_batch(lm, [prompts[0]], base_only=True)[2].last_hidden_state[0]
        e_full = _rel(fs, plain[0])
        ok["full_skip"] = e_full <= RTOL
        notes.append(f"full sequence from {mid} vs plain {e_full:.2g}")
    except Exception as e:  # noqa: BLE001 - same: no full-sequence skip
        notes.append(f"full-sequence skip: {type(e).__name__}: {str(e)[:120]}")
    return Check(ok["last_token"], ok["skip"], ok["full_skip"], "; ".join(notes) + f" (tolerance {RTOL:g})")
