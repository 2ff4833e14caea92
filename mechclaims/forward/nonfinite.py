"""What went non-finite, and where first: the message of a NonFiniteActivationError.

capture() stops at the first NaN/inf among the sites it keeps. That site is often far downstream of the cause (a
NaN embedding makes every site NaN), so this module runs the offending sequence once more with a hook on every
residual-stream site, in forward order, and names the first one that is not finite, plus any parameters that
hold NaN/inf. It runs only on the error path.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import torch

from mechclaims.errors import NonFiniteActivationError
from mechclaims.forward.engine import first_tensor, register_reader, run_batch
from mechclaims.model.sites import resolve


def _layer_of(site: str) -> str:
    m = re.match(r"blocks\.(\d+)\.", site)
    if m:
        return f"layer {m.group(1)}"
    return "after the last layer" if site.startswith("ln_final") else "the output"


def bad_parameters(model: Any, limit: int = 5) -> list[str]:
    """Names of parameters holding NaN/inf, with how many values are bad."""
    out = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.is_floating_point():
                n = int((~torch.isfinite(p)).sum())
                if n:
                    out.append(f"{name} ({n:,} of {p.numel():,} values)")
                    if len(out) >= limit:
                        break
    return out


def first_nonfinite_site(lm: Any, seq: Sequence[int]) -> str | None:
    """The first residual-stream site (forward order) with a NaN/inf at any token of ``seq``, or None."""
    names = [f"blocks.{l}.{k}" for l in range(lm.n_layers)
             for k in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post")] + ["ln_final.hook_in"]
    fired: list[tuple[str, bool]] = []
    handles = []
    cfg = lm.model.config
    try:
        for n in names:
            try:
                rs = resolve(lm.model, n)
            except Exception:  # a family without this site: the others still locate the first NaN
                continue

            def hook(x, rs=rs):
                x = first_tensor(x)
                if rs.spec.post is not None:
                    x = rs.spec.post(x, cfg)
                fired.append((rs.name, not bool(torch.isfinite(x).all())))
            handles.append(register_reader(rs, hook))
        run_batch(lm, [list(seq)], base_only=True)
    finally:
        for h in handles:
            h.remove()
    return next((n for n, bad in fired if bad), None)


def nonfinite_error(lm: Any, ids: Sequence[Sequence[int]], site: str, row: int, token: int
                    ) -> NonFiniteActivationError:
    """The error for a non-finite value met at ``site``, sequence ``row``, token ``token``."""
    try:
        first = first_nonfinite_site(lm, ids[row]) or site
    except Exception:  # the diagnosis must never hide the finding itself
        first = site
    try:
        params = bad_parameters(lm.model)
    except Exception:
        params = []
    text = lm.tokenizer.decode(list(ids[row])[:30])
    layer = _layer_of(first) + (", i.e. already at the embeddings" if first == "blocks.0.hook_resid_pre" else "")
    why = (f" Parameters holding NaN/inf: {', '.join(params)}." if params else
           " No parameter is NaN/inf, so the forward pass overflows: run in float32, or check the model's scaling.")
    return NonFiniteActivationError(
        f"non-finite activations in model {lm.name}: the first non-finite site is {first} ({layer}), in sequence "
        f"{row + 1} of {len(ids)} ({text[:60]!r}); the capture met it at {site} ({_layer_of(site)}), token {token}."
        f"{why} No statistic can be computed from NaN/inf, so this claim test is inconclusive on this model.")
