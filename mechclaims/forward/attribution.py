"""The opt-in gradient path: activations and the gradient of a logit difference with respect to them.

``capture()`` never builds a graph (no_grad, always). :func:`capture_grad` is the one place that does, for
attribution patching (Nanda 2023; Syed, Rager & Conmy 2023): ``m(corrupt with a_clean) - m(corrupt) ~
(a_clean - a_corrupt) . dm/da`` at the corrupt run.

How the gradient is taken: each site's canonical tensor ``x`` is replaced by ``x + delta``, with ``delta`` a zero
tensor that requires grad. ``delta.grad`` is then the *total* derivative of the metric with respect to ``x``, through
every later site too. (Replacing ``x`` by a detached leaf instead would cut the graph at every hooked site, so the
gradient at ``attn_out[l]`` would miss every path through later layers that were also hooked; the library tests
check the total derivative against a finite difference.) The weights never require grad; the edits go through
:func:`mechclaims.forward.capture.intervene`, so derived sites (``attn.hook_q/k``) get their gradient through the site's
post-op, and every hook comes off in ``finally``.
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Sequence

import numpy as np

import torch

from mechclaims.forward.activations import Activations
from mechclaims.forward.edit import Edit, edit_fn
from mechclaims.forward.engine import batches, device_of, pad
from mechclaims.forward.intervene import intervene
from mechclaims.model.sites import base_of


def capture_grad(lm: Any, ids: Sequence[Sequence[int]], sites: Sequence[str], target: Any, foil: Any,
                 read_pos: Any = None, batch_size: int = 16) -> tuple[Activations, Activations, np.ndarray]:
    """Activations, and gradients of ``logit(target[i]) - logit(foil[i])`` at ``read_pos[i]`` (default: the last
    token) with respect to each site, at every real token of every sequence.

    Returns ``(acts, grads, metric)``: two :class:`Activations` flattened like ``capture(..., "all")`` (``seq``,
    ``pos``), and the metric per sequence ``[n]``. The metric is read at ``hook_logits`` (the output-embedding's
    output), like every mechclaims readout.
    """
    n = len(ids)
    lens = np.array([len(x) for x in ids])
    pos = lens - 1 if read_pos is None else np.asarray(read_pos, int)
    tgt, fl = np.asarray(target, int).reshape(n), np.asarray(foil, int).reshape(n)
    dev = device_of(lm)
    acts: dict[str, list] = {s: [] for s in sites}
    grads: dict[str, list] = {s: [] for s in sites}
    metric = np.zeros(n)
    seqs, poss = [], []
    state: dict[Any, Any] = {}
    taps = {s: Edit(s, "tap") for s in sites}

    def head_reader(x):
        state["logits"] = x
        return x

    for rows in batches(lens.tolist(), batch_size):
        state.clear()
        inp, mask = pad(lm, [ids[r] for r in rows])
        with ExitStack() as hooks, torch.enable_grad():
            for s, e in taps.items():
                hooks.enter_context(intervene(lm, s, edit_fn(e, state)))
            head = lm.model.get_output_embeddings()
            b = torch.arange(len(rows))
            p = torch.as_tensor(pos[rows])
            if lm.kind == "causal" and isinstance(head, torch.nn.Linear):
                h = base_of(lm.model)(input_ids=inp.to(dev), attention_mask=mask.to(dev), use_cache=False)
                h = h.last_hidden_state[b, p]
                w = head.weight[torch.as_tensor(tgt[rows])] - head.weight[torch.as_tensor(fl[rows])]
                m = (h * w).sum(-1)
                if head.bias is not None:
                    m = m + head.bias[torch.as_tensor(tgt[rows])] - head.bias[torch.as_tensor(fl[rows])]
            else:
                hooks.enter_context(intervene(lm, "hook_logits", head_reader))
                lm.model(input_ids=inp.to(dev), attention_mask=mask.to(dev))
                lg = state["logits"][b, p]
                m = lg[b, torch.as_tensor(tgt[rows])] - lg[b, torch.as_tensor(fl[rows])]
            m.sum().backward()  # rows are independent, so the sum's gradient is each row's own
        metric[rows] = m.detach().float().cpu().numpy()
        b_idx = np.concatenate([np.full(lens[r], j) for j, r in enumerate(rows)])
        t_idx = np.concatenate([np.arange(lens[r]) for r in rows])
        seqs.append(np.asarray(rows)[b_idx])
        poss.append(t_idx)
        for s in sites:
            x, d = state[taps[s]]
            acts[s].append(x[b_idx, t_idx].float().cpu().numpy())
            grads[s].append(d.grad[b_idx, t_idx].float().cpu().numpy())
    seq, tok = np.concatenate(seqs), np.concatenate(poss)
    key = np.lexsort((tok, seq))  # back to (sequence, position) order
    a = Activations({s: np.concatenate(v)[key] for s, v in acts.items()}, seq=seq[key], pos=tok[key])
    g = Activations({s: np.concatenate(v)[key] for s, v in grads.items()}, seq=seq[key], pos=tok[key])
    return a, g, metric
