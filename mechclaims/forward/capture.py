"""capture() and intervene(): the only code paths that run or change forward passes.

``capture`` runs batched, right-padded forward passes with attention masks and keeps only the requested
sites at the requested positions, as float32 numpy arrays. ``intervene`` is a context manager that edits one
site; its hooks come off in ``finally``. Hooks on the session model are read-only shared state: nothing else
may leave one behind (the plugin's guard fails any test that does).
"""
from __future__ import annotations

import contextlib
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from mechclaims.errors import NonFiniteActivationError, StimuliError
from mechclaims.model.registry import LoadedModel
from mechclaims.model.sites import resolve

Positions = str | Sequence[int] | np.ndarray  # "all" | "last" | one index per sequence


@dataclass
class Activations:
    """Captured sites. Per-position captures are ``[n_seq, ...]``. With ``positions="all"`` every real token
    is kept, flattened to ``[n_tokens, ...]``, with ``seq`` (sequence index) and ``pos`` (token index)."""

    sites: dict[str, np.ndarray]
    seq: np.ndarray | None = None
    pos: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.sites:
            raise KeyError(f"{name!r} was not captured; captured sites: {sorted(self.sites)}")
        return self.sites[name]


def encode(lm: LoadedModel, texts: Sequence[str]) -> list[list[int]]:
    """Token ids per text, with the model's own special tokens (BERT's [CLS]/[SEP]; none for SmolLM2)."""
    if isinstance(texts, str):
        raise TypeError("encode() takes a list of texts, not one string")
    return [list(ids) for ids in lm.tokenizer(list(texts), add_special_tokens=True)["input_ids"]]


def single_token_id(lm: LoadedModel, word: str, source: str = "") -> int:
    """Id of ``word`` as one token (spell BPE words with their leading space, e.g. ``" her"``)."""
    ids = lm.tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [lm.tokenizer.decode([i]) for i in ids]
        raise StimuliError(f"{source + ': ' if source else ''}the word {word!r} is {len(ids)} tokens for model "
                           f"{lm.name} ({pieces}); it must be a single token. Choose another word, or check "
                           f"the leading space (BPE vocabularies spell words as ' word').")
    return ids[0]


def context_length(lm: LoadedModel) -> int | None:
    """The most tokens the model takes in one sequence (its position-embedding table), or None if unstated."""
    cfg = lm.model.config
    for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _preview(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def locate_word(lm: LoadedModel, text: str, word: str, source: str = "") -> int:
    """Token index of ``word`` in ``text``.

    Rule: ``word`` (stripped of spaces) must occur exactly once in ``text`` as a whole word, case-sensitive,
    and must be exactly one token there. Zero or several occurrences, or a multi-token word, raise a
    StimuliError that names the sentence, the word and the model. The target must also lie inside the model's
    context: for a causal model only the tokens up to the target matter (claims may cut the rest), for an
    encoder the whole sentence must fit.
    """
    w = word.strip()
    hits = [m.start() for m in re.finditer(rf"(?<!\w){re.escape(w)}(?!\w)", text)]
    where = f"{source + ': ' if source else ''}sentence {text!r}"
    if not hits:
        raise StimuliError(f"{where} does not contain its target {w!r} as a whole word (case-sensitive). "
                           f"Fix the sentence or its target field.")
    if len(hits) > 1:
        raise StimuliError(f"{where} contains its target {w!r} {len(hits)} times; the rule is exactly once, so "
                           f"the position is unambiguous. Rewrite the sentence.")
    start, end = hits[0], hits[0] + len(w)
    enc = lm.tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
    covering = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start]
    if len(covering) != 1 or enc["offset_mapping"][covering[0]][1] != end or enc["offset_mapping"][covering[0]][0] > start:
        pieces = [text[a:b] for i, (a, b) in enumerate(enc["offset_mapping"]) if i in covering]
        raise StimuliError(f"{where}: the target {w!r} is split into {len(covering)} tokens {pieces} by model "
                           f"{lm.name}'s tokenizer; the target must be a single token. Use another word.")
    ctx = context_length(lm)
    need = covering[0] + 1 if lm.kind == "causal" else len(enc["input_ids"])
    if ctx is not None and need > ctx:
        where = f"{source + ': ' if source else ''}sentence {_preview(text)!r}"
        if lm.kind == "causal":
            what, fix = f"its target {w!r} is token {need:,}", f"(keep the target within the first {ctx:,} tokens)"
        else:
            what, fix = f"it is {need:,} tokens", f"to at most {ctx:,} tokens"
        raise StimuliError(f"{where}: {what}, past model {lm.name}'s context of {ctx:,} tokens. Shorten the "
                           f"sentence {fix} or drop the record.")
    return covering[0]


def batch_for(lm: LoadedModel, batch_size: int) -> int:
    """The batch size a capture uses on ``lm``: ``--mc-batch-size`` (kept in ``lm.extra``) when given."""
    return int((getattr(lm, "extra", None) or {}).get("batch_size") or batch_size)


def _batches(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    # Sort by length so each batch pads little; results go back to the caller's order.
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for s in range(0, len(order), batch_size):
        yield order[s:s + batch_size]


def show_progress() -> bool:
    """Progress bars go to the real terminal (past pytest's capture), and never into CI logs."""
    import os
    import sys

    stream = sys.__stderr__
    return bool(stream is not None and stream.isatty() and not os.environ.get("CI"))


def _progress(total: int, desc: str, enabled: bool | None):
    import sys

    from tqdm.auto import tqdm

    on = show_progress() if enabled is None else enabled
    return tqdm(total=total, desc=desc, disable=not on, leave=False, unit="seq", file=sys.__stderr__)


def pad_id(lm: LoadedModel) -> int:
    """The id right-padding uses. Any id works: the attention mask hides padding and capture() never keeps a
    padded position, so a tokenizer with neither a pad nor an eos token pads with id 0."""
    for v in (lm.tokenizer.pad_token_id, getattr(lm.tokenizer, "eos_token_id", None)):
        if isinstance(v, int):
            return v
    return 0


def _pad(lm: LoadedModel, batch: Sequence[Sequence[int]]) -> tuple[Any, Any]:
    import torch

    T = max(len(x) for x in batch)
    inp = torch.full((len(batch), T), pad_id(lm), dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    for j, x in enumerate(batch):
        inp[j, :len(x)] = torch.as_tensor(list(x))
        mask[j, :len(x)] = 1
    return inp, mask


def _run_batch(lm: LoadedModel, batch: Sequence[Sequence[int]], base_only: bool = False) -> tuple[Any, Any, Any]:
    """One right-padded forward pass, in the given row order, under no_grad.

    ``base_only`` runs the model without its LM head (no logits): capture() uses it when no site needs the head,
    which saves the vocabulary projection (about a fifth of smollm2's forward pass).
    """
    import torch

    from mechclaims.model.sites import base_of

    dev = next(lm.model.parameters()).device
    inp, mask = _pad(lm, batch)
    module = base_of(lm.model) if base_only else lm.model
    with torch.no_grad():
        # No KV cache for causal LMs (saves memory); encoders' forward takes no use_cache in transformers 4.x.
        kw = {"use_cache": False} if lm.kind == "causal" else {}
        out = module(input_ids=inp.to(dev), attention_mask=mask.to(dev), **kw)
    return inp, mask, out


def forward_batches(lm: LoadedModel, ids: Sequence[Sequence[int]], batch_size: int = 32,
                    progress: bool | None = None, desc: str = "forward"):
    """Yield ``(rows, input_ids, attention_mask, output)`` per length-sorted, right-padded batch.

    ``rows`` are indices into ``ids``; row j of the batch is ``ids[rows[j]]``.
    """
    bar = _progress(len(ids), desc, progress)
    try:
        for rows in _batches([len(x) for x in ids], batch_for(lm, batch_size)):
            inp, mask, out = _run_batch(lm, [ids[r] for r in rows])
            yield rows, inp, mask, out
            bar.update(len(rows))
    finally:
        bar.close()


_TRIM: Any = None


def release_freed_memory() -> None:
    """Hand memory that was freed back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Forward passes over batches of varying length leave freed tensor blocks in glibc's heap, which keeps them: GED's
    capture of 1,044 short sequences on smollm2-135m grew the RSS from 0.95 to 3.85 GB while holding 192 MB of
    activations (1.15 GB after one trim). Trimming after each batch keeps the peak at the live data; it costs
    milliseconds."""
    global _TRIM
    if _TRIM is None:
        import ctypes
        import ctypes.util

        try:
            _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
            _TRIM = False
    if _TRIM:
        _TRIM(0)


def _register(rs, fn: Callable) -> Any:
    if rs.spec.hook == "input":
        return rs.module.register_forward_pre_hook(
            lambda mod, args, kwargs: fn(args[0] if args else next(iter(kwargs.values()))), with_kwargs=True)
    return rs.module.register_forward_hook(lambda mod, args, out: fn(out))


def check_context(lm: LoadedModel, ids: Sequence[Sequence[int]]) -> None:
    """Every sequence must fit the model's context; a longer one would index past the position embeddings."""
    ctx = context_length(lm)
    if ctx is None:
        return
    long = [i for i, x in enumerate(ids) if len(x) > ctx]
    if long:
        i = long[0]
        text = lm.tokenizer.decode(list(ids[i])[:40])
        raise StimuliError(f"sequence {i + 1} of {len(ids)} ({_preview(text)!r}) is {len(ids[i]):,} tokens, past "
                           f"model {lm.name}'s context of {ctx:,} tokens ({len(long)} sequence(s) are). Shorten or "
                           f"split those texts in the stimuli file.")


class _NonFinite(Exception):
    """Raised inside a hook to stop the forward pass at the first non-finite capture (see capture())."""

    def __init__(self, site: str, row: int, token: int):
        super().__init__(site)
        self.site, self.row, self.token = site, row, token


def capture(lm: LoadedModel, ids: Sequence[Sequence[int]], sites: Sequence[str], positions: Positions = "last",
            batch_size: int = 32, progress: bool | None = None,
            reduce: dict[str, Callable[[Any, dict[str, Any]], Any]] | None = None) -> Activations:
    """Run ``ids`` (token id lists) through the model once, keeping ``sites`` at ``positions``.

    ``positions``: ``"last"`` (last real token), ``"all"`` (every real token, flattened), or one index per
    sequence (e.g. from :func:`locate_word`). Hooks always come off, even when the forward pass raises.

    A sequence longer than the model's context is a StimuliError. A NaN or infinite value at any captured
    position stops the capture with a :class:`~mechclaims.errors.NonFiniteActivationError` naming the first
    non-finite site of the model, its layer and the sequence: no claim ever computes from NaN activations.

    ``reduce[site](x, ctx)`` replaces the default position selection for that site, so a huge tensor (logits)
    can be reduced on the fly: ``x`` is the full ``[batch, seq, ...]`` tensor and ``ctx`` holds ``input_ids``,
    ``b`` and ``t`` (the batch-row and token index of every kept position). It returns one row per kept position.
    """
    import torch

    if len(ids) == 0:
        raise StimuliError("capture() got no sequences; the stimuli set is empty.")
    check_context(lm, ids)
    cfg = lm.model.config
    resolved = [resolve(lm.model, s) for s in sites]
    per_pos = None
    all_tokens = isinstance(positions, str) and positions == "all"  # an index array must never hit ==
    if not isinstance(positions, str):
        per_pos = np.asarray(positions, dtype=int)
        if per_pos.shape != (len(ids),):
            raise ValueError(f"positions must hold one index per sequence ({len(ids)}), got shape {per_pos.shape}")
        bad = [i for i, p in enumerate(per_pos) if not 0 <= p < len(ids[i])]
        if bad:
            raise ValueError(f"positions out of range for sequences {bad[:5]}")
    elif positions not in ("last", "all"):
        raise ValueError(f"positions must be 'last', 'all' or one index per sequence, not {positions!r}")

    chunks: dict[str, list[np.ndarray]] = {s: [] for s in sites}
    state: dict[str, Any] = {}

    def keeper(rs):
        def fn(x):
            x = _first_tensor(x)
            if rs.spec.post is not None:
                x = rs.spec.post(x, cfg)
            if reduce and rs.name in reduce:
                sel = reduce[rs.name](x, state["ctx"])
            else:
                sel = state["select"](x)
            sel = sel.detach()
            if sel.is_floating_point() and not bool(torch.isfinite(sel).all()):
                bad = int((~torch.isfinite(sel.reshape(sel.shape[0], -1))).any(1).nonzero()[0, 0])
                b, t = state["ctx"]["b"], state["ctx"]["t"]
                raise _NonFinite(rs.name, state["rows"][int(b[bad])], int(t[bad]))
            chunks[rs.name].append(sel.to(torch.float32).cpu().numpy())
        return fn

    all_rows, seqs, poss = [], [], []
    handles = []
    bar = _progress(len(ids), f"capture {lm.name}", progress)
    try:
        for rs in resolved:
            handles.append(_register(rs, keeper(rs)))
        for rows in _batches([len(x) for x in ids], batch_for(lm, batch_size)):
            lens = torch.tensor([len(ids[r]) for r in rows])
            if all_tokens:
                b_idx = torch.cat([torch.full((int(n),), j) for j, n in enumerate(lens)])
                t_idx = torch.cat([torch.arange(int(n)) for n in lens])
                seqs.append(np.asarray(rows)[b_idx.numpy()])
                poss.append(t_idx.numpy())
            else:
                b_idx = torch.arange(len(rows))
                t_idx = lens - 1 if per_pos is None else torch.as_tensor(per_pos[rows])
            # The selector keeps only the requested positions, so memory scales with them, not with T.
            state["select"] = lambda x, b=b_idx, t=t_idx: x[b.to(x.device), t.to(x.device)]
            batch = [ids[r] for r in rows]
            state["ctx"] = {"input_ids": _pad(lm, batch)[0], "b": b_idx, "t": t_idx, "lengths": lens}
            state["rows"] = rows
            _run_batch(lm, batch, base_only="hook_logits" not in sites)
            release_freed_memory()
            all_rows.extend(rows)
            bar.update(len(rows))
    except _NonFinite as e:
        bad = e
    else:
        bad = None
    finally:
        for h in handles:
            h.remove()
        bar.close()
    if bad is not None:
        from mechclaims.forward.nonfinite import nonfinite_error

        raise nonfinite_error(lm, ids, bad.site, bad.row, bad.token)

    out = {s: np.concatenate(chunks[s], axis=0) for s in sites}
    seq = pos = None
    if all_tokens:
        seq, pos = np.concatenate(seqs), np.concatenate(poss)
        key = np.lexsort((pos, seq))  # batches ran length-sorted; give tokens back in (seq, pos) order
        out = {s: a[key] for s, a in out.items()}
        seq, pos = seq[key], pos[key]
    else:
        inv = np.empty(len(all_rows), dtype=int)
        inv[np.asarray(all_rows)] = np.arange(len(all_rows))
        out = {s: a[inv] for s, a in out.items()}
    return Activations(out, seq=seq, pos=pos, meta={"model": lm.name, "n_seq": len(ids)})


def _first_tensor(x: Any) -> Any:
    return x[0] if isinstance(x, tuple) else x


@contextlib.contextmanager
def intervene(lm: LoadedModel, site_name: str, edit: Callable[[Any], Any]) -> Iterator[None]:
    """Replace ``site_name``'s tensor by ``edit(tensor)`` for forward passes inside the block.

    ``edit`` receives the full ``[batch, seq, ...]`` tensor and returns one of the same shape (it may close over
    per-row positions or masks). The hook is removed in ``finally``, so an exception inside the block, or in
    ``edit`` itself, never leaves the shared model edited.
    """
    rs = resolve(lm.model, site_name)
    cfg = lm.model.config
    # Edits go through the site's own post-op inverse, so derived sites (per-head q/k, scaled sublayer outputs)
    # are edited in their canonical view and written back in the module's raw form.
    put = lambda raw: rs.spec.apply_edit(raw, edit, cfg)  # noqa: E731
    if rs.spec.hook == "input":
        def pre(mod, args, kwargs):
            if args:
                return (put(args[0]),) + tuple(args[1:]), kwargs
            k = next(iter(kwargs))
            return args, {**kwargs, k: put(kwargs[k])}
        handle = rs.module.register_forward_pre_hook(pre, with_kwargs=True)
    else:
        handle = rs.module.register_forward_hook(lambda mod, args, out: put(out))
    try:
        yield
    finally:
        handle.remove()


def _ours(fn: Any) -> bool:
    # transformers installs persistent hooks of its own (output capturing for output_hidden_states); not ours.
    return not getattr(fn, "__module__", "").startswith("transformers")


def count_hooks(model: Any) -> int:
    """Forward/pre hooks on every submodule, except transformers' own (the guard compares before and after)."""
    return sum(sum(_ours(f) for f in m._forward_hooks.values()) + sum(_ours(f) for f in m._forward_pre_hooks.values())
               for m in model.modules())


def clear_hooks(model: Any) -> None:
    """Remove every non-transformers hook (the guard's clean-up after a leaky test)."""
    for m in model.modules():
        for d in (m._forward_hooks, m._forward_pre_hooks):
            for k in [k for k, f in d.items() if _ours(f)]:
                del d[k]


class _CallableModule(type(sys.modules[__name__])):
    """``mechclaims.forward.capture`` is both this module and the function: importing the submodule rebinds the
    package's ``capture`` attribute to the module, so the module calls :func:`capture` (``mc.capture(lm, ...)``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Activations:
        return capture(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
