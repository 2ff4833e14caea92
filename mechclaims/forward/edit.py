"""One flat, hashable edit spec: where a forward pass is changed, on which rows and positions, how, from what.

An :class:`Edit` says *what* an intervention does (pyvene's flat dicts are the model); the arrays it writes travel
beside it, named by ``source``. The same object is a complete memo key of the edit, so a claim can memoise a
patched run on ``(edit, inputs)``. The forward engine turns it into a hook function (:func:`edit_fn`) that
:func:`mechclaims.forward.intervene.intervene` installs and removes.

Ops on ``x[row, position]`` (the canonical tensor at the site):
- ``set``: ``v``                    (activation patching: a value from another run)
- ``keep_fill``: ``x * keep + fill``  (ablation: zero ablation keep 0 fill 0; mean ablation keep 0 fill the mean)
- ``tap``: ``x + delta`` with a zero ``delta`` that requires grad (attribution: the total derivative at the site)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

OPS = ("set", "keep_fill", "tap")


@dataclass(frozen=True)
class Edit:
    site: str
    op: str = "set"
    positions: str = "given"  # "last": each row's last position; "given": per-entry positions in the values
    source: str = ""  # names the values (e.g. "clean", "train mean"): part of the key, not the arrays

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"Edit.op must be one of {OPS}, not {self.op!r}")


def edit_fn(edit: Edit, state: dict[str, Any]) -> Callable[[Any], Any]:
    """The hook function of ``edit``. It reads this batch's values from ``state[edit]`` when the engine has put
    them there (rows without an entry are untouched):

    - ``set``: ``(b, t, v)``: batch rows, positions, values ``[k, *site shape]``;
    - ``keep_fill``: ``(keep, fill)`` ``[rows, width]`` at each row's last position (``positions="last"``) or at
      ``state["at"]`` (one position per row);
    - ``tap``: nothing; writes ``(x, delta)`` back into ``state[edit]`` for the caller's backward pass.
    """
    def fn(x: Any) -> Any:
        if edit.op == "tap":
            delta = torch.zeros_like(x, requires_grad=True)
            state[edit] = (x.detach(), delta)
            return x + delta
        got = state.get(edit)
        if got is None:
            return x
        if edit.op == "set":
            b, t, v = got
            if x[b, t].shape != v.shape:
                raise ValueError(f"{edit.site}: patch values have shape {tuple(v.shape[1:])} but the site is "
                                 f"{tuple(x.shape[2:])} per position")
            x = x.clone()
            x[b, t] = v.to(x.device, x.dtype)
            return x
        keep, fill = got
        b = torch.arange(x.shape[0], device=x.device)
        t = torch.full_like(b, x.shape[1] - 1) if edit.positions == "last" else state["at"].to(x.device)
        x = x.clone()
        x[b, t] = x[b, t] * keep.to(x.device, x.dtype) + fill.to(x.device, x.dtype)
        return x
    return fn
