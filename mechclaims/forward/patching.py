"""Activation patching: run prompts with activations copied in from other runs, at chosen sites, rows, positions.

A :class:`PatchTable` says what to write where: for each canonical site, triples (row, position, value), where
``value`` has the site's canonical shape at one position (``[d_model]``, or ``[n_heads, d_head]`` for
``attn.hook_q``). :func:`run_patched` runs every row of ``ids`` (its *base* run) with its own patches, all sites at
once, in batches, and returns the logits of chosen tokens at a chosen position (or every logit, for small models).
Each row may patch different sites: one batch can hold a whole layer x position sweep.

Edits go through :func:`mechclaims.forward.capture.intervene` (hooks off in ``finally``; derived sites such as
``attn.hook_q/k`` are written back through the site's post-op inverse). Two shortcuts keep sweeps cheap, and each
is checked against the plain forward pass on the model itself the first time it is used (kept only if the logits
agree to 1e-4 relative; otherwise every row runs the plain pass, with a warning):

- *block skip*: a row whose patches all sit at layer >= s runs only blocks s.., fed with its base run's
  ``hook_resid_pre[s]`` (captured once per distinct base prompt): blocks before s cannot see the patch;
- *last token* (causal LMs): a row whose patches all sit at its last token runs that one token against its base
  prompt's cached keys and values: nothing before the last token can see the patch.
"""
from __future__ import annotations

import copy
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from mechclaims.forward.capture import _pad, capture, intervene
from mechclaims.model.sites import _SITE_RE, base_of, site

CHECK_RTOL = 1e-4
_CHECKED: dict[tuple[int, str], str] = {}  # (id(model), shortcut) -> "ok" or why not


@dataclass
class PatchTable:
    """Per site: row indices, token positions, values ``[k, *canonical shape]`` to write there."""

    n_rows: int
    sites: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = field(default_factory=dict)

    def add(self, site_name: str, rows: Any, positions: Any, values: Any) -> "PatchTable":
        """Write ``values[j]`` at ``(rows[j], positions[j])`` of ``site_name``. ``rows``/``positions`` broadcast
        against each other; ``values`` has one entry per (row, position) pair."""
        r, p = np.broadcast_arrays(np.atleast_1d(np.asarray(rows, int)), np.atleast_1d(np.asarray(positions, int)))
        v = values.detach().float().cpu().numpy() if hasattr(values, "detach") else np.asarray(values, np.float32)
        if v.shape[0] != r.size:
            raise ValueError(f"{site_name}: {r.size} (row, position) pairs but {v.shape[0]} values")
        if r.size and (r.min() < 0 or r.max() >= self.n_rows):
            raise ValueError(f"{site_name}: row index out of range 0..{self.n_rows - 1}")
        self.sites.setdefault(site_name, []).append((r.ravel(), p.ravel(), v))
        return self

    def grouped(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return {s: tuple(np.concatenate([e[i] for e in es]) for i in range(3)) for s, es in self.sites.items()}

    def start_layers(self, n_layers: int) -> np.ndarray:
        """Per row, the first block that can see one of its patches (rows without patches: the last block)."""
        start = np.full(self.n_rows, n_layers - 1)
        for s, (r, _, _) in self.grouped().items():
            m = _SITE_RE.match(s)
            np.minimum.at(start, r, int(m.group(1)) if m else n_layers - 1)
        return start


def run_patched(lm: Any, ids: Sequence[Sequence[int]], patches: PatchTable | None = None, *,
                read_tokens: Any = None, read_pos: Any = None, batch_size: int = 64,
                shortcuts: bool = True) -> Any:
    """Run every row of ``ids`` with its patches; return ``[n_rows, k]`` logits of ``read_tokens`` (``[n_rows, k]``
    token ids) at ``read_pos`` (default: each row's last token), or, with ``read_tokens=None``, a list of
    ``[len_i, vocab]`` logit arrays (all logits: small models only). No gradients; hooks always come off."""
    n = len(ids)
    patches = patches or PatchTable(n)
    if patches.n_rows != n:
        raise ValueError(f"the patch table has {patches.n_rows} rows but ids has {n}")
    lens = np.array([len(x) for x in ids])
    pos = lens - 1 if read_pos is None else np.asarray(read_pos, int)
    g = patches.grouped()
    for s, (r, p, _) in g.items():
        bad = np.flatnonzero((p < 0) | (p >= lens[r]))
        if bad.size:
            raise ValueError(f"{s}: position {p[bad[0]]} is outside row {r[bad[0]]} ({lens[r[bad[0]]]} tokens)")
    tokens = None if read_tokens is None else np.asarray(read_tokens, int).reshape(n, -1)
    if (shortcuts and g and tokens is not None and lm.kind == "causal" and np.all(pos == lens - 1) and lens.min() > 1
            and all(np.all(p == lens[r] - 1) for r, p, _ in g.values()) and _ok(lm, "last")):
        return _last_token(lm, ids, g, tokens, 8 * batch_size)  # one-token rows: many fit in a batch
    skip = shortcuts and bool(g) and _ok(lm, "skip")  # nothing patched: one plain pass is cheapest
    start = patches.start_layers(lm.n_layers) if skip else np.zeros(n, int)
    return _full(lm, ids, g, tokens, pos, start, batch_size)


# ---------------------------------------------------------------------------------------------------------------
# The plain path (with the block skip)


def _head(lm: Any) -> tuple[Any, Any] | None:
    """(W_U, bias) when logits are a plain linear map of the base model's output (causal LMs)."""
    import torch

    out = lm.model.get_output_embeddings()
    if lm.kind != "causal" or not isinstance(out, torch.nn.Linear):
        return None
    return out.weight, out.bias


def _edit_for(state: dict, key: str):
    def edit(x):
        got = state.get(key)
        if got is None:
            return x
        b, t, v = got
        if x[b, t].shape != v.shape:
            raise ValueError(f"{key}: patch values have shape {tuple(v.shape[1:])} but the site is "
                             f"{tuple(x.shape[2:])} per position")
        x = x.clone()
        x[b, t] = v.to(x.device, x.dtype)
        return x
    return edit


@contextmanager
def _blocks_from(lm: Any, start: int) -> Iterator[None]:
    """Run only blocks ``start..`` (the block list is cut and restored in ``finally``)."""
    import torch

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


def _full(lm, ids, g, tokens, pos, start, batch_size):
    import torch

    n, dev = len(ids), next(lm.model.parameters()).device
    head = _head(lm) if tokens is not None else None
    feeds = _base_residuals(lm, ids, start)
    state: dict[str, Any] = {}
    out: list[Any] = [None] * n
    with ExitStack() as hooks:
        for s in feeds["layers"]:  # feed hooks first: they must run before a patch at the same site
            hooks.enter_context(intervene(lm, site("hook_resid_pre", s), _edit_for(state, f"feed{s}")))
        for s in g:
            hooks.enter_context(intervene(lm, s, _edit_for(state, s)))
        if head is None:
            hooks.enter_context(intervene(lm, "hook_logits", _reader(state)))
        for s0 in sorted({int(s) for s in start}):  # one start layer per batch; short rows together
            grp = sorted(np.flatnonzero(start == s0).tolist(), key=lambda i: len(ids[i]))
            for b0 in range(0, len(grp), batch_size):
                _run_group(lm, ids, grp[b0:b0 + batch_size], g, state, feeds, s0, head, tokens, pos, out, dev)
    return out if tokens is None else np.stack(out)


def _run_group(lm, ids, rows, g, state, feeds, s, head, tokens, pos, out, dev):
    import torch

    state.clear()
    where = {r: j for j, r in enumerate(rows)}
    for name, (r, p, v) in g.items():
        m = np.isin(r, rows)
        if m.any():
            state[name] = (torch.as_tensor([where[i] for i in r[m]]), torch.as_tensor(p[m]), torch.as_tensor(v[m]))
    inp, mask = _pad(lm, [ids[i] for i in rows])
    if s > 0:
        f = torch.zeros((len(rows), inp.shape[1], feeds[s][rows[0]].shape[-1]))
        for j, i in enumerate(rows):
            f[j, :len(ids[i])] = torch.as_tensor(feeds[s][i])
        state[f"feed{s}"] = (torch.arange(len(rows))[:, None], torch.arange(inp.shape[1])[None, :], f)
    with torch.no_grad(), _blocks_from(lm, s):
        kw = {"use_cache": False} if lm.kind == "causal" else {}
        module = base_of(lm.model) if head is not None else lm.model
        res = module(input_ids=inp.to(dev), attention_mask=mask.to(dev), **kw)
    for j, i in enumerate(rows):
        if head is not None:
            w, b = head
            h = res.last_hidden_state[j, pos[i]]
            lg = h @ w[tokens[i]].T + (b[tokens[i]] if b is not None else 0)
            out[i] = lg.float().cpu().numpy()
        else:
            full = state["logits"][j, :len(ids[i])]
            out[i] = full.numpy() if tokens is None else full[pos[i], tokens[i]].numpy()


def _reader(state: dict):
    def read(x):
        state["logits"] = x.detach().float().cpu()
        return x
    return read


def _base_residuals(lm, ids, start) -> dict:
    """``feeds[s][row]``: the row's base-run ``hook_resid_pre[s]`` at every token, for each start layer s > 0 in
    use (one capture per distinct base prompt)."""
    layers = sorted({int(s) for s in start if s > 0})
    feeds: dict[Any, Any] = {"layers": layers}
    if not layers:
        return feeds
    need = np.flatnonzero(start > 0).tolist()
    bases: dict[tuple, int] = {}
    for i in need:
        bases.setdefault(tuple(ids[i]), len(bases))
    acts = capture(lm, [list(b) for b in bases], [site("hook_resid_pre", s) for s in layers], "all")
    for s in layers:
        a = acts[site("hook_resid_pre", s)]
        per = [a[acts.seq == j] for j in range(len(bases))]
        feeds[s] = {i: per[bases[tuple(ids[i])]] for i in need if start[i] == s}
    return feeds


# ---------------------------------------------------------------------------------------------------------------
# The last-token path (causal LMs): prefixes run once with a KV cache, each row runs one token


def _last_token(lm, ids, g, tokens, batch_size):
    import torch

    dev = next(lm.model.parameters()).device
    bases: dict[tuple, int] = {}
    for x in ids:
        bases.setdefault(tuple(x), len(bases))
    base_of_row = np.array([bases[tuple(x)] for x in ids])
    prefixes = [list(b[:-1]) for b in bases]
    T = max(len(p) for p in prefixes)
    pre = torch.full((len(prefixes), T), lm.tokenizer.pad_token_id, dtype=torch.long)
    pmask = torch.zeros((len(prefixes), T), dtype=torch.long)
    for j, p in enumerate(prefixes):  # left-padded, so every row's last token sits at the same place
        pre[j, T - len(p):], pmask[j, T - len(p):] = torch.as_tensor(p), 1
    pre, pmask = pre.to(dev), pmask.to(dev)
    base = base_of(lm.model)
    w, b = _head(lm)
    ckw = _cache_kw(base)
    with torch.no_grad():
        res = base(input_ids=pre, attention_mask=pmask, use_cache=True, position_ids=(pmask.cumsum(1) - 1).clamp(min=0))
        cache = res["cache"] if ckw == "cache" else res.past_key_values
    last = torch.as_tensor([x[-1] for x in ids], device=dev)
    state: dict[str, Any] = {}
    out = np.zeros(tokens.shape, np.float32)
    with ExitStack() as hooks:
        for s in g:
            hooks.enter_context(intervene(lm, s, _edit_for(state, s)))
        for s0 in range(0, len(ids), batch_size):
            rows = np.arange(s0, min(s0 + batch_size, len(ids)))
            state.clear()
            for name, (r, p, v) in g.items():
                m = (r >= rows[0]) & (r <= rows[-1])
                if m.any():
                    state[name] = (torch.as_tensor(r[m] - rows[0]), torch.zeros(int(m.sum()), dtype=torch.long),
                                   torch.as_tensor(v[m]))
            rb = torch.as_tensor(base_of_row[rows], device=dev)
            mask = torch.cat([pmask[rb], torch.ones(len(rows), 1, dtype=torch.long, device=dev)], 1)
            with torch.no_grad():
                h = base(input_ids=last[rows][:, None], attention_mask=mask, **{ckw: _subset(cache, rb)},
                         position_ids=mask.sum(1, keepdim=True) - 1, use_cache=False).last_hidden_state[:, -1]
                tk = torch.as_tensor(tokens[rows], device=dev)
                lg = torch.einsum("nd,nkd->nk", h, w[tk]) + (b[tk] if b is not None else 0)
            out[rows] = lg.float().cpu().numpy()
    return out


def _cache_kw(module: Any) -> str:
    """transformers >= 5.2x names the KV cache ``cache`` (``past_key_values`` still works, with a warning)."""
    import inspect

    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def _subset(cache: Any, r: Any) -> Any:
    """A cache holding rows ``r`` of ``cache`` (the shared cache is never written)."""
    c = copy.copy(cache)
    if hasattr(c, "layers"):  # transformers >= 4.56
        c.layers = [copy.copy(x) for x in cache.layers]
        for x in c.layers:
            x.keys, x.values = x.keys[r], x.values[r]
    else:
        c.key_cache = [k[r] for k in cache.key_cache]
        c.value_cache = [v[r] for v in cache.value_cache]
    return c


# ---------------------------------------------------------------------------------------------------------------
# Checking each shortcut on the model itself


def _ok(lm: Any, which: str) -> bool:
    """Whether shortcut ``which`` ("skip" or "last") reproduces the plain pass on this model (checked once)."""
    key = (id(lm.model), which)
    if key not in _CHECKED:
        _CHECKED[key] = _check(lm, which)
        if _CHECKED[key] != "ok":
            warnings.warn(f"{lm.name}: patching runs every row in full ({which} shortcut off: {_CHECKED[key]})",
                          stacklevel=3)
    return _CHECKED[key] == "ok"


def _check(lm: Any, which: str) -> str:
    if which == "last" and _head(lm) is None:
        return "not a causal LM with a linear head"
    rng = np.random.default_rng(0)
    vocab = int(lm.model.get_input_embeddings().weight.shape[0])
    ids = [rng.integers(3, vocab, size=k).tolist() for k in (7, 5, 7)]
    tokens = rng.integers(3, vocab, size=(3, 2))
    L = lm.n_layers
    t = PatchTable(3)
    if which == "last":  # a patch at the last token, both paths
        d = capture(lm, ids, [site("hook_resid_pre", L // 2)], "last")[site("hook_resid_pre", L // 2)]
        t.add(site("hook_resid_pre", L // 2), [0, 1, 2], [6, 4, 6], d[[2, 0, 1]])
    else:
        d = capture(lm, ids[1:2], [site("hook_resid_pre", L // 2)], "all")[site("hook_resid_pre", L // 2)]
        t.add(site("hook_resid_pre", L // 2), [0, 0], [1, 3], d[[0, 2]])
    try:
        plain = _full(lm, ids, t.grouped(), tokens, np.array([6, 4, 6]), np.zeros(3, int), 8)
        fast = (_last_token(lm, ids, t.grouped(), tokens, 8) if which == "last" else
                _full(lm, ids, t.grouped(), tokens, np.array([6, 4, 6]), t.start_layers(L), 8))
    except Exception as e:  # an unexpected forward signature or cache layout: no shortcut
        return f"{type(e).__name__}: {str(e)[:120]}"
    err = float(np.max(np.abs(fast - plain)) / max(1.0, float(np.max(np.abs(plain)))))
    return "ok" if err <= CHECK_RTOL else f"relative error {err:.2g}"
