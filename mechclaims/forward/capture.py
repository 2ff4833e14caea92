"""capture(): observation. Batched, right-padded forward passes (mechclaims.forward.engine) that keep only the
requested sites at the requested positions, as float32 numpy arrays; plus the tokenization helpers every claim uses.

Changing a forward pass is :func:`mechclaims.forward.intervene.intervene` (re-exported here); hooks come off in
``finally``.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mechclaims.errors import StimuliError
from mechclaims.forward.activations import Activations
from mechclaims.forward.engine import (batch_for, batches, check_context, context_length, first_tensor, pad,
                                       preview, progress, register_reader, release_freed_memory, run_batch)
from mechclaims.forward.intervene import clear_hooks, count_hooks, intervene
from mechclaims.forward.nonfinite import nonfinite_error
from mechclaims.model.registry import LoadedModel
from mechclaims.model.tokens import encode, single_token_id
from mechclaims.model.sites import resolve

__all__ = ["capture", "capture_at_words", "at_words", "encode", "single_token_id", "locate_word", "Activations",
           "intervene", "count_hooks", "clear_hooks", "Positions"]

Positions = str | Sequence[int] | np.ndarray  # "all" | "last" | one index per sequence


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
        where = f"{source + ': ' if source else ''}sentence {preview(text)!r}"
        if lm.kind == "causal":
            what, fix = f"its target {w!r} is token {need:,}", f"(keep the target within the first {ctx:,} tokens)"
        else:
            what, fix = f"it is {need:,} tokens", f"to at most {ctx:,} tokens"
        raise StimuliError(f"{where}: {what}, past model {lm.name}'s context of {ctx:,} tokens. Shorten the "
                           f"sentence {fix} or drop the record.")
    return covering[0]


def at_words(lm: LoadedModel, texts: Sequence[str], words: Sequence[str],
             sources: Sequence[str] | None = None) -> tuple[list[list[int]], list[int]]:
    """Token ids and the read position of each sentence, read at its stated word (:func:`locate_word`; ``sources``
    names each sentence in its errors). A causal model's ids are cut after the word: its activations there depend
    only on the prefix (about 2x faster on the GED pairs)."""
    if len(texts) != len(words) or (sources is not None and len(sources) != len(texts)):
        raise ValueError(f"at_words: {len(texts)} texts, {len(words)} words"
                         + ("" if sources is None else f", {len(sources)} sources"))
    pos = [locate_word(lm, t, w, source=sources[i] if sources is not None else "")
           for i, (t, w) in enumerate(zip(texts, words))]
    ids = encode(lm, list(texts))
    if lm.kind == "causal":
        ids = [x[:p + 1] for x, p in zip(ids, pos)]
    return ids, pos


def capture_at_words(lm: LoadedModel, texts: Sequence[str], words: Sequence[str], sites: Sequence[str],
                     sources: Sequence[str] | None = None, show: bool | None = None) -> Activations:
    """:func:`capture` of ``sites`` at each sentence's stated word (:func:`at_words`): one row per sentence."""
    ids, pos = at_words(lm, texts, words, sources)
    return capture(lm, ids, sites, pos, show=show)


class _NonFinite(Exception):
    """Raised inside a hook to stop the forward pass at the first non-finite capture (see capture())."""

    def __init__(self, site: str, row: int, token: int):
        super().__init__(site)
        self.site, self.row, self.token = site, row, token


def capture(lm: LoadedModel, ids: Sequence[Sequence[int]], sites: Sequence[str], positions: Positions = "last",
            batch_size: int = 32, show: bool | None = None,
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
            x = first_tensor(x)
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
    bar = progress(len(ids), f"capture {lm.name}", show)
    try:
        for rs in resolved:
            handles.append(register_reader(rs, keeper(rs)))
        for rows in batches([len(x) for x in ids], batch_for(lm, batch_size)):
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
            state["ctx"] = {"input_ids": pad(lm, batch)[0], "b": b_idx, "t": t_idx, "lengths": lens}
            state["rows"] = rows
            run_batch(lm, batch, base_only="hook_logits" not in sites)
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
