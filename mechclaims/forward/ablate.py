"""Many single-position ablations, fast: the lesion claim's engine.

:class:`Runner` gives the target-minus-foil logit at the prediction position for many (prompt, edit) rows, one edit
per row, where the edit rewrites ``blocks.{l}.mlp.hook_post`` at that position.

Causal models: the prompt prefixes run once (left-padded, KV cache kept); each row then runs only its last token,
so an edit there is exact (nothing before it can change) and costs one token. Blocks before ``l`` see nothing of the
edit either, so their output at the last token is taken from one clean pass: only blocks ``l..L-1`` run, which
makes a late layer's null several times cheaper. Whether that shortcut reproduces the full forward pass is checked
on the model itself when the runner is built; where it does not (another family's forward, an older transformers),
every row runs all blocks. Masked models: full sequences, edited at [MASK].
"""
from __future__ import annotations

import copy
import warnings
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator

import numpy as np
import torch

from mechclaims.forward.capture import _run_batch, intervene, single_token_id
from mechclaims.model.sites import site

ROWS = 512  # one-token rows per forward pass (causal); masked models run full sequences, ROWS // 8 at a time


class Runner:
    """Target-minus-foil logit differences at the prediction position, for several (target, foil) word pairs at once.

    ``pairs``: words without the BPE space (the runner adds it for causal models), e.g. ``[("her", "him"),
    ("the", "a")]``. ``sign`` ``[n_prompts]`` or ``[n_prompts, n_pairs]``: +1 reads target minus foil, -1 foil minus
    target (a "him" prompt's target is " him"). ``run`` returns ``[rows, n_pairs]``, or ``[rows]`` for one pair."""

    def __init__(self, lm: Any, ids: list[list[int]], pos: list[int], sign: np.ndarray,
                 pairs: tuple[tuple[str, str], ...] = (("her", "him"),)):
        self.dev = dev = next(lm.model.parameters()).device
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
        self.block_in: torch.Tensor | None = None  # [n_layers, n_prompts, d_model]: clean block inputs
        self.clean: np.ndarray | None = None  # the unedited logit difference of every prompt
        self.skip_note = "masked model: full sequences"
        if lm.kind == "causal":
            n, T = len(ids), max(len(x) for x in ids) - 1
            pre = torch.full((n, T), lm.tokenizer.pad_token_id)
            self.mask = torch.zeros((n, T), dtype=torch.long)
            for i, x in enumerate(ids):
                pre[i, T - len(x) + 1:], self.mask[i, T - len(x) + 1:] = torch.tensor(x[:-1]), 1
            pre, self.mask = pre.to(dev), self.mask.to(dev)
            with torch.no_grad():  # the prefixes never change: run them once, keep their keys and values
                self.cache = lm.model.base_model(input_ids=pre, attention_mask=self.mask, use_cache=True,
                                                 position_ids=(self.mask.cumsum(1) - 1).clamp(min=0)).past_key_values
            self.last = torch.tensor([x[-1] for x in ids], device=dev)
            self._init_skip()  # also sets self.clean: its recording pass is the clean pass
        else:
            self.clean = self.run(None, np.arange(len(ids)))

    # ------------------------------------------------------------------------------------------------ public
    def run(self, layer: int | None, prompt: np.ndarray, keep: np.ndarray | None = None,
            fill: np.ndarray | None = None) -> np.ndarray:
        """``prompt[r]`` indexes the prompt of row r; with ``layer``, ``mlp.hook_post`` at the prediction position
        becomes ``x * keep[r] + fill[r]`` (zero ablation: keep 0, fill 0; mean ablation: keep 0, fill the mean)."""
        out, step = [], ROWS if self.lm.kind == "causal" else ROWS // 8  # masked: full [rows, T, vocab] logits
        for s in range(0, len(prompt), step):
            r = torch.as_tensor(prompt[s:s + step])
            if layer is None:
                out.append(self._batch(r))
                continue
            kp, fl, at = torch.as_tensor(keep[s:s + step]), torch.as_tensor(fill[s:s + step]), self.pos[r]

            def edit(x, kp=kp, fl=fl, at=at):
                b = torch.arange(x.shape[0], device=x.device)
                t = torch.full_like(b, x.shape[1] - 1) if self.lm.kind == "causal" else at.to(x.device)
                x = x.clone()
                x[b, t] = x[b, t] * kp.to(x.device, x.dtype) + fl.to(x.device, x.dtype)
                return x

            with intervene(self.lm, site("mlp.hook_post", layer), edit):
                out.append(self._batch(r, start=layer if self.block_in is not None else 0))
        return np.concatenate(out) if out else np.zeros((0,) if self.single else (0, self.sign.shape[1]))

    # ------------------------------------------------------------------------------------------------ internals
    def _init_skip(self) -> None:
        """Record each block's clean input at the last token, then check that running blocks ``l..`` from it
        reproduces the full pass (at the middle block); keep the shortcut only if it does."""
        L, n = self.lm.n_layers, len(self.ids)
        rec: dict[int, list[torch.Tensor]] = {l: [] for l in range(L)}

        def keep_input(l):
            def f(x):
                rec[l].append(x[:, -1].detach().clone())
                return x
            return f

        clean = []
        with ExitStack() as st:
            for l in range(L):
                st.enter_context(intervene(self.lm, site("hook_resid_pre", l), keep_input(l)))
            for s in range(0, n, ROWS):
                clean.append(self._batch(torch.arange(s, min(s + ROWS, n))))
        self.block_in = torch.stack([torch.cat(rec[l]) for l in range(L)])
        full, mid = np.concatenate(clean), L // 2
        self.clean = full
        try:
            short = np.concatenate([self._batch(torch.arange(s, min(s + ROWS, n)), start=mid)
                                    for s in range(0, n, ROWS)])
            err = float(np.max(np.abs(short - full)) / max(1.0, float(np.max(np.abs(full)))))
        except Exception as e:  # an unexpected forward signature: run every block
            err, why = float("inf"), f"{type(e).__name__}: {e}"
        else:
            why = f"relative error {err:.2g} at block {mid}"
        if err <= 1e-4:
            self.skip_note = f"blocks before the edited one are skipped (checked: {why})"
        else:
            self.block_in = None
            self.skip_note = f"every block runs: skipping earlier blocks did not reproduce the full pass ({why})"
            warnings.warn(f"{self.lm.name}: {self.skip_note}", stacklevel=2)

    @contextmanager
    def _from_block(self, start: int) -> Iterator[None]:
        """Run only blocks ``start..``; block ``start`` gets its recorded clean input. Restored in ``finally``."""
        if start == 0:
            yield
            return
        base = self.lm.model.base_model
        parent_path, _, attr = self.lm.sitemap.blocks.rpartition(".")
        parent = base.get_submodule(parent_path) if parent_path else base
        full = getattr(parent, attr)
        rows = self._rows
        x0 = self.block_in[start]

        def feed(x):
            return x0[rows].to(x.dtype).unsqueeze(1).expand_as(x).clone()

        # The site resolves against the full block list, so the hook goes on before the list is cut.
        with intervene(self.lm, site("hook_resid_pre", start), feed):
            try:
                setattr(parent, attr, torch.nn.ModuleList(list(full)[start:]))
                yield
            finally:
                setattr(parent, attr, full)

    def _subset_cache(self, r: torch.Tensor, start: int) -> Any:
        """One cache row per edited row (the shared cache is never written); skipped blocks' entries untouched."""
        c = copy.copy(self.cache)
        if hasattr(c, "layers"):  # transformers >= 4.56: a list of per-layer objects
            c.layers = [copy.copy(x) for x in self.cache.layers]
            for i, x in enumerate(c.layers):
                if i == 0 or i >= start:
                    x.keys, x.values = x.keys[r], x.values[r]
        else:  # older DynamicCache: lists of tensors
            c.key_cache = [k[r] if (i == 0 or i >= start) else k for i, k in enumerate(self.cache.key_cache)]
            c.value_cache = [v[r] if (i == 0 or i >= start) else v for i, v in enumerate(self.cache.value_cache)]
        return c

    def _batch(self, r: torch.Tensor, start: int = 0) -> np.ndarray:
        lm, r = self.lm, r.to(self.dev)
        with torch.no_grad():
            if lm.kind == "causal":
                c = self._subset_cache(r, start)
                m = torch.cat([self.mask[r], torch.ones(len(r), 1, dtype=torch.long, device=self.dev)], 1)
                self._rows = r
                with self._from_block(start):
                    h = lm.model.base_model(input_ids=self.last[r, None], attention_mask=m, past_key_values=c,
                                            position_ids=m.sum(1, keepdim=True) - 1,
                                            use_cache=False).last_hidden_state
                logits = h[:, -1] @ self.u.T + self.b
            else:
                out = _run_batch(lm, [self.ids[i] for i in r.tolist()])[2].logits
                logits = out[torch.arange(len(r), device=out.device), self.pos[r.cpu()].to(out.device)][:, self.tf]
        diff = (logits[:, 0::2] - logits[:, 1::2]).float() * self.sign[r].to(logits.device).float()
        out = diff.cpu().numpy()
        return out[:, 0] if self.single else out


def ablate_layer(runner: Runner, layer: int, prompts: dict[str, np.ndarray], selections: dict[str, dict[str, np.ndarray]],
                 mean: np.ndarray, *, n_max: int, seed: int, h: int = 10, chunk: int = 20,
                 null_sides: tuple[str, ...] | None = None, sides: tuple[str, str] | None = None) -> dict[str, Any]:
    """Every real ablation one layer needs: each selection mean- and zero-ablated on its side's prompts, and
    size-matched random sets (mean-ablated) drawn in chunks until every selection's effect is decided in both tails
    (``mechclaims.stats.common.needs_draws``) or ``n_max`` sets.

    ``prompts[side]``: prompt indices; ``selections[name][side]``: neuron indices; ``mean``: each neuron's mean at
    the prediction position over the training prompts. Returns ``{"sel": {(name, side, kind): [n, pairs]},
    "null": {(side, size): [B, n, pairs]}}`` as changes from the clean logit differences. ``null_sides`` limits the
    random sets to the sides that can decide (a side where the model is at chance cannot: its effects are reported
    without a null). ``sides``: the two side names in order (they seed the random sets: first 0, second 1; default
    her, him)."""
    from mechclaims.stats.common import needs_draws
    from mechclaims.stats.lesion import random_sets

    d = len(mean)
    clean = {s: runner.clean[p] for s, p in prompts.items()}
    rows: list[np.ndarray] = []
    keeps: list[np.ndarray] = []
    fills: list[np.ndarray] = []
    tags: list[tuple] = []

    def add(side: str, idx: np.ndarray, fill_mean: bool, tag: tuple) -> None:
        n = len(prompts[side])
        k, f = np.ones((n, d), np.float32), np.zeros((n, d), np.float32)
        k[:, idx] = 0.0
        if fill_mean:
            f[:, idx] = mean[idx]
        rows.append(prompts[side]), keeps.append(k), fills.append(f), tags.append((tag, side, n))

    def flush() -> dict[tuple, np.ndarray]:
        if not rows:
            return {}
        y = runner.run(layer, np.concatenate(rows), np.concatenate(keeps), np.concatenate(fills))
        y = y[:, None] if y.ndim == 1 else y
        out, at = {}, 0
        for tag, side, n in tags:
            out[tag] = y[at:at + n] - (clean[side][:, None] if clean[side].ndim == 1 else clean[side])
            at += n
        rows.clear(), keeps.clear(), fills.clear(), tags.clear()
        return out

    for name, sel in selections.items():
        for side, idx in sel.items():
            if len(idx) and len(prompts[side]):
                add(side, np.asarray(idx), True, (name, side, "mean"))
                add(side, np.asarray(idx), False, (name, side, "zero"))
    got = flush()
    users: dict[tuple[str, int], list[float]] = {}
    for name, sel in selections.items():
        for side, idx in sel.items():
            if len(idx) and len(prompts[side]) and (null_sides is None or side in null_sides):
                users.setdefault((side, len(idx)), []).append(float(got[name, side, "mean"][:, 0].mean()))
    null = {k: np.zeros((0, len(prompts[k[0]]), 1)) for k in users}
    code = {s: i for i, s in enumerate(sides)} if sides else SIDE_CODE
    rngs = {k: np.random.default_rng([seed, layer, code.get(k[0], 9), k[1]]) for k in users}
    while active := [k for k in sorted(users) if needs_draws(users[k], null[k][:, :, 0].mean(1), n_max, h)]:
        for side, size in active:
            for j, idx in enumerate(random_sets(d, size, chunk, rngs[side, size])):
                add(side, idx, True, ("null", side, size, j))
        new = flush()
        for side, size in active:
            draws = np.stack([new["null", side, size, j] for j in range(chunk)])
            null[side, size] = draws if null[side, size].size == 0 else np.concatenate([null[side, size], draws])
    return {"sel": got, "null": null}


SIDE_CODE = {"her": 0, "him": 1}
