"""Many single-position ablations, fast: the lesion claim's engine.

:class:`Runner` gives the target-minus-foil logit at the prediction position for many (prompt, edit) rows, one edit
per row, where the edit rewrites ``blocks.{l}.mlp.hook_post`` at that position (an :class:`~mechclaims.forward.edit.Edit`
with op ``keep_fill``).

Causal models run through the one fast path (:mod:`mechclaims.forward.fastpath`): the prompt prefixes run once with
their KV cache, each row runs only its last token, and only blocks ``l..L-1`` (fed the recorded clean input), which
makes a late layer's null several times cheaper. Whether that reproduces the full forward pass is checked on the
model itself (:func:`mechclaims.forward.fastpath.check`); where it does not, every row runs every block. Masked
models run full sequences, edited at [MASK].
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import numpy as np
import torch

from mechclaims.forward import fastpath
from mechclaims.forward.capture import single_token_id
from mechclaims.forward.edit import Edit, edit_fn
from mechclaims.forward.engine import device_of, run_batch
from mechclaims.forward.intervene import intervene
from mechclaims.forward.nonfinite import nonfinite_error
from mechclaims.model.sites import site

ROWS = 512  # one-token rows per forward pass (causal); masked models run full sequences, ROWS // 8 at a time


class Runner:
    """Target-minus-foil logit differences at the prediction position, for several (target, foil) word pairs at once.

    ``pairs``: words without the BPE space (the runner adds it for causal models), e.g. ``[("her", "him"),
    ("the", "a")]``. ``sign`` ``[n_prompts]`` or ``[n_prompts, n_pairs]``: +1 reads target minus foil, -1 foil minus
    target (a "him" prompt's target is " him"). ``run`` returns ``[rows, n_pairs]``, or ``[rows]`` for one pair."""

    def __init__(self, lm: Any, ids: list[list[int]], pos: list[int], sign: np.ndarray,
                 pairs: tuple[tuple[str, str], ...] = (("her", "him"),)):
        self.dev = dev = device_of(lm)
        sign = np.asarray(sign, float)
        sign = np.repeat(sign[:, None], len(pairs), 1) if sign.ndim == 1 else sign
        self.lm, self.ids, self.pos, self.sign = lm, ids, torch.as_tensor(pos), torch.as_tensor(sign, device=dev)
        self.single = len(pairs) == 1
        sp = " " if lm.kind == "causal" else ""
        self.tf = [single_token_id(lm, sp + w) for pair in pairs for w in pair]  # target0, foil0, target1, ...
        out = lm.model.get_output_embeddings()
        self.u = out.weight.detach()[self.tf]  # [2 * n_pairs, d_model]
        self.b = (out.bias.detach()[self.tf] if getattr(out, "bias", None) is not None
                  else torch.zeros(len(self.tf), device=dev))
        self.prefix: fastpath.PrefixRunner | None = None
        self.skip = False
        self.skip_note = "masked model: full sequences"
        if lm.kind == "causal":
            chk = fastpath.check(lm)
            self.prefix = fastpath.PrefixRunner(lm, ids, record_blocks=chk.skip, chunk=ROWS)
            self.skip = chk.skip
            self.skip_note = (f"blocks before the edited one are skipped (checked: {chk.note})" if chk.skip else
                              f"every block runs: skipping earlier blocks did not reproduce the full pass ({chk.note})")
            self.clean = self._logits(self.prefix.clean if self.prefix.clean is not None
                                      else self.prefix.hidden(torch.arange(len(ids))), torch.arange(len(ids)))
        else:
            self.clean = self.run(None, np.arange(len(ids)))
        bad = np.flatnonzero(~np.isfinite(np.asarray(self.clean).reshape(len(ids), -1)).all(1))
        if bad.size:  # NaN logits (e.g. a NaN final norm) must never read as "the model prefers the other word"
            raise nonfinite_error(lm, ids, "hook_logits", int(bad[0]), len(ids[bad[0]]) - 1)

    def run(self, layer: int | None, prompt: np.ndarray, keep: np.ndarray | None = None,
            fill: np.ndarray | None = None) -> np.ndarray:
        """``prompt[r]`` indexes the prompt of row r; with ``layer``, ``mlp.hook_post`` at the prediction position
        becomes ``x * keep[r] + fill[r]`` (zero ablation: keep 0, fill 0; mean ablation: keep 0, fill the mean)."""
        out, step = [], ROWS if self.lm.kind == "causal" else ROWS // 8  # masked: full [rows, T, vocab] logits
        edit = None if layer is None else Edit(site("mlp.hook_post", layer), "keep_fill",
                                               "last" if self.lm.kind == "causal" else "given")
        state: dict[Any, Any] = {}
        with ExitStack() as hooks:
            if edit is not None:
                hooks.enter_context(intervene(self.lm, edit.site, edit_fn(edit, state)))
            for s in range(0, len(prompt), step):
                r = torch.as_tensor(prompt[s:s + step])
                if edit is not None:
                    state[edit] = (torch.as_tensor(keep[s:s + step]), torch.as_tensor(fill[s:s + step]))
                    state["at"] = self.pos[r]
                out.append(self._batch(r, start=layer if (layer is not None and self.skip) else 0))
        return np.concatenate(out) if out else np.zeros((0,) if self.single else (0, self.sign.shape[1]))

    def _logits(self, h: torch.Tensor, r: torch.Tensor) -> np.ndarray:
        logits = h @ self.u.T + self.b
        diff = (logits[:, 0::2] - logits[:, 1::2]).float() * self.sign[r].to(logits.device).float()
        out = diff.cpu().numpy()
        return out[:, 0] if self.single else out

    def _batch(self, r: torch.Tensor, start: int = 0) -> np.ndarray:
        if self.prefix is not None:
            return self._logits(self.prefix.hidden(r, start), r.to(self.dev))
        with torch.no_grad():
            out = run_batch(self.lm, [self.ids[i] for i in r.tolist()])[2].logits
            logits = out[torch.arange(len(r), device=out.device), self.pos[r].to(out.device)][:, self.tf]
        diff = (logits[:, 0::2] - logits[:, 1::2]).float() * self.sign[r].to(logits.device).float()
        out = diff.cpu().numpy()
        return out[:, 0] if self.single else out


def ablate_sets(runner: Runner, layer: int, acts: np.ndarray, sets: dict[Any, np.ndarray], fill: str,
                mean: np.ndarray | None = None, rows: np.ndarray | None = None) -> dict[Any, np.ndarray]:
    """The lesion claim's ablation: each neuron set in ``sets`` ablated on every prompt of ``runner`` in one pass;
    returns, per set, the change of the readouts from clean, ``[n_prompts, n_pairs]`` (or ``[n_prompts]``).

    ``rows`` (default: all the runner's prompts, in order) are held-out pairs, ``rows[i]`` and ``rows[n + i]`` the two
    prompts of pair ``i``; ``acts`` ``[2n, d_mlp]``: ``mlp.hook_post`` at the prediction position of those rows. ``fill``: ``"pair"`` (each ablated
    neuron set to the mean of its pair's two prompts: the claim decides with it, and the calibration of
    :mod:`mechclaims.calibrate.lesion_model` runs it), ``"train"`` (to ``mean``, its training-prompt mean) or
    ``"zero"``. Empty sets are left out."""
    n = len(acts) // 2
    val = {"pair": np.tile((acts[:n] + acts[n:]) / 2.0, (2, 1)), "zero": np.zeros_like(acts),
           "train": None if mean is None else np.broadcast_to(mean, acts.shape)}[fill]
    if val is None:
        raise ValueError('ablate_sets(fill="train") needs the training mean: pass mean=')
    keys = [k for k, idx in sets.items() if len(idx)]
    keep, fills = np.ones((len(keys), *acts.shape), np.float32), np.zeros((len(keys), *acts.shape), np.float32)
    for j, k in enumerate(keys):
        keep[j][:, sets[k]], fills[j][:, sets[k]] = 0.0, val[:, sets[k]]
    rows = np.arange(2 * n) if rows is None else np.asarray(rows)
    y = runner.run(layer, np.tile(rows, len(keys)), keep.reshape(-1, acts.shape[1]),
                   fills.reshape(-1, acts.shape[1])) if keys else []
    return {k: y[j * 2 * n:(j + 1) * 2 * n] - runner.clean[rows] for j, k in enumerate(keys)}
