"""Activation patching: run prompts with activations copied in from other runs, at chosen sites, rows, positions.

A :class:`PatchTable` says what to write where: for each canonical site, triples (row, position, value), where
``value`` has the site's canonical shape at one position (``[d_model]``, or ``[n_heads, d_head]`` for
``attn.hook_q``). :func:`run_patched` runs every row of ``ids`` (its *base* run) with its own patches, all sites at
once, in batches, and returns the logits of chosen tokens at a chosen position (or every logit, for small models).
Each row may patch different sites: one batch can hold a whole layer x position sweep.

Each patch is an :class:`~mechclaims.forward.edit.Edit` (op ``set``) installed with
:func:`mechclaims.forward.intervene.intervene` (hooks off in ``finally``; derived sites such as ``attn.hook_q/k`` are
written back through the site's post-op inverse). Two shortcuts of the one fast path (:mod:`mechclaims.forward.fastpath`)
keep sweeps cheap; each is used only where :func:`mechclaims.forward.fastpath.check` found that it reproduces the
plain pass on the model itself (otherwise every row runs the plain pass, with a warning):

- *block skip*: a row whose patches all sit at layer >= s runs only blocks s.., fed with its base run's
  ``hook_resid_pre[s]`` (captured once per distinct base prompt): blocks before s cannot see the patch;
- *last token* (causal LMs): a row whose patches all sit at its last token runs that one token against its base
  prompt's cached keys and values: nothing before the last token can see the patch.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from mechclaims.forward import fastpath
from mechclaims.forward.capture import capture
from mechclaims.forward.edit import Edit, edit_fn
from mechclaims.forward.engine import device_of, pad
from mechclaims.forward.intervene import intervene
from mechclaims.model.sites import base_of, layer_of, site


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
            layer = layer_of(s)
            np.minimum.at(start, r, n_layers - 1 if layer is None else layer)
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
            and all(np.all(p == lens[r] - 1) for r, p, _ in g.values()) and fastpath.check(lm).last_token):
        return _last_token(lm, ids, g, tokens, 8 * batch_size)  # one-token rows: many fit in a batch
    skip = shortcuts and bool(g) and fastpath.check(lm).full_skip  # nothing patched: one plain pass is cheapest
    start = patches.start_layers(lm.n_layers) if skip else np.zeros(n, int)
    return _full(lm, ids, g, tokens, pos, start, batch_size)


# ---------------------------------------------------------------------------------------------------------------
# The plain path (with the block skip)


def _head(lm: Any) -> tuple[Any, Any] | None:
    """(W_U, bias) when logits are a plain linear map of the base model's output (causal LMs)."""
    out = lm.model.get_output_embeddings()
    if lm.kind != "causal" or not isinstance(out, torch.nn.Linear):
        return None
    return out.weight, out.bias


def _patch_edits(g: dict) -> dict[str, Edit]:
    return {s: Edit(s, "set") for s in g}


def _full(lm, ids, g, tokens, pos, start, batch_size):
    n, dev = len(ids), device_of(lm)
    head = _head(lm) if tokens is not None else None
    feeds = _base_residuals(lm, ids, start)
    state: dict[str, Any] = {}
    out: list[Any] = [None] * n
    edits = _patch_edits(g)
    feed_edits = {s: Edit(site("hook_resid_pre", s), "set", source="base run") for s in feeds["layers"]}
    with ExitStack() as hooks:
        for e in feed_edits.values():  # feed hooks first: they must run before a patch at the same site
            hooks.enter_context(intervene(lm, e.site, edit_fn(e, state)))
        for s, e in edits.items():
            hooks.enter_context(intervene(lm, s, edit_fn(e, state)))
        if head is None:
            hooks.enter_context(intervene(lm, "hook_logits", _reader(state)))
        for s0 in sorted({int(s) for s in start}):  # one start layer per batch; short rows together
            grp = sorted(np.flatnonzero(start == s0).tolist(), key=lambda i: len(ids[i]))
            for b0 in range(0, len(grp), batch_size):
                _run_group(lm, ids, grp[b0:b0 + batch_size], g, state, feeds, s0, head, tokens, pos, out, dev, edits,
                           feed_edits)
    return out if tokens is None else np.stack(out)


def _run_group(lm, ids, rows, g, state, feeds, s, head, tokens, pos, out, dev, edits, feed_edits):
    state.clear()
    where = {r: j for j, r in enumerate(rows)}
    for name, (r, p, v) in g.items():
        m = np.isin(r, rows)
        if m.any():
            state[edits[name]] = (torch.as_tensor([where[i] for i in r[m]]), torch.as_tensor(p[m]),
                                  torch.as_tensor(v[m]))
    inp, mask = pad(lm, [ids[i] for i in rows])
    if s > 0:
        f = torch.zeros((len(rows), inp.shape[1], feeds[s][rows[0]].shape[-1]))
        for j, i in enumerate(rows):
            f[j, :len(ids[i])] = torch.as_tensor(feeds[s][i])
        state[feed_edits[s]] = (torch.arange(len(rows))[:, None], torch.arange(inp.shape[1])[None, :], f)
    with torch.no_grad(), fastpath.blocks_from(lm, s):
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
    bases: dict[tuple, int] = {}
    for x in ids:
        bases.setdefault(tuple(x), len(bases))
    base_of_row = np.array([bases[tuple(x)] for x in ids])
    runner = fastpath.PrefixRunner(lm, [list(b) for b in bases], chunk=batch_size)
    dev = runner.dev
    w, b = _head(lm)
    edits = _patch_edits(g)
    state: dict[Any, Any] = {}
    out = np.zeros(tokens.shape, np.float32)
    with ExitStack() as hooks:
        for s, e in edits.items():
            hooks.enter_context(intervene(lm, s, edit_fn(e, state)))
        for s0 in range(0, len(ids), batch_size):
            rows = np.arange(s0, min(s0 + batch_size, len(ids)))
            state.clear()
            for name, (r, p, v) in g.items():
                m = (r >= rows[0]) & (r <= rows[-1])
                if m.any():
                    state[edits[name]] = (torch.as_tensor(r[m] - rows[0]), torch.zeros(int(m.sum()), dtype=torch.long),
                                          torch.as_tensor(v[m]))
            h = runner.hidden(torch.as_tensor(base_of_row[rows]))
            with torch.no_grad():
                tk = torch.as_tensor(tokens[rows], device=dev)
                lg = torch.einsum("nd,nkd->nk", h, w[tk]) + (b[tk] if b is not None else 0)
            out[rows] = lg.float().cpu().numpy()
    return out
