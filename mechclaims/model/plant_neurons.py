"""Planting MLP neurons that read a direction of the MLP input and write a direction of the residual stream.

The shared construction of the lesion, patching and GED plants. A planted neuron i at layer l gets:
- input weights that read a unit direction ``r`` of the MLP input (after the block's norm): ``fc[i] = a * r`` with no
  bias (GELU: ``post = gelu(a z)``, z = r . x), or, in a gated MLP, ``gate[i] = a * r`` and ``up[i] = r``
  (``post = silu(a z) * z``). Both are ~0 for z < 0 and grow with z > 0, so a neuron reading the centred contrast of
  two classes of contexts fires in one class only. ``a`` puts the firing class's mean at ``a z = 3`` (GELU's linear
  regime; gelu(-3) = -0.004);
- output weights ``W_out[i] = alpha * u`` for a unit residual direction ``u`` (zero for a pure representation plant).
Every other weight of the layer is left as it was; the planted neurons' own old weights are overwritten.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mechclaims.forward.capture import single_token_id
from mechclaims.model.plant_core import MLPParts, mlp_parts, param_name, unit
from mechclaims.model.registry import LoadedModel
from mechclaims.model.weights import logit_direction

FIRE = 3.0  # a * z at the firing class's mean input


def install(lm: LoadedModel, layer: int, neurons: Sequence[int], read: np.ndarray, fire_at: float,
            write: np.ndarray | None) -> list[str]:
    """Overwrite ``neurons`` at ``layer``: read unit direction ``read`` with ``a = FIRE / fire_at`` (``fire_at``: the
    firing class's mean projection), write ``write`` (``[len(neurons), d_model]`` rows; None: zero). Returns the
    state-dict names written."""
    p = mlp_parts(lm, layer)
    idx = torch.as_tensor(np.asarray(neurons, int))
    r = torch.as_tensor(unit(read))
    a = FIRE / fire_at
    with torch.no_grad():
        _set_rows(p.fc, idx, (a * r).expand(len(idx), -1))
        if p.gated:
            _set_rows(p.up, idx, r.expand(len(idx), -1))
        w = p.w_out()
        w[idx] = torch.as_tensor(np.zeros((len(idx), w.shape[1])) if write is None else write, dtype=w.dtype)
    mods = [p.fc, p.out] + ([p.up] if p.gated else [])
    return [param_name(lm.model, t) for m in mods for t in (m.weight, getattr(m, "bias", None)) if t is not None]


def _set_rows(mod, idx: torch.Tensor, rows: torch.Tensor) -> None:
    w = mod.weight.T if type(mod).__name__ == "Conv1D" else mod.weight
    w[idx] = rows.to(w.dtype)
    if getattr(mod, "bias", None) is not None:
        mod.bias[idx] = 0.0


def activations(lm: LoadedModel, layer: int, x: np.ndarray, neurons: Sequence[int]) -> np.ndarray:
    """``[n, k]``: what ``mlp.hook_post`` holds at ``neurons`` for MLP-input rows ``x`` (the planted weights)."""
    p: MLPParts = mlp_parts(lm, layer)
    dt = next(lm.model.parameters()).dtype
    with torch.no_grad():
        return p.post(torch.as_tensor(x, dtype=dt)).double().numpy()[:, np.asarray(neurons, int)]


def pronoun_directions(lm: LoadedModel, target: str = "her", foil: str = "him",
                       unrelated: tuple[str, str] = ("the", "a")) -> dict[str, np.ndarray]:
    """Residual directions (causal spelling, leading space): ``v`` = the target-minus-foil logit direction through the
    final norm, ``n`` = the unrelated pair's; ``u`` = unit ``v`` with ``n`` projected out (so a write along it moves
    the unrelated logit difference by nothing), ``u_n`` = unit ``n`` with ``v`` projected out."""
    sp = " " if lm.kind == "causal" else ""
    v = logit_direction(lm, single_token_id(lm, sp + target), single_token_id(lm, sp + foil))
    n = logit_direction(lm, single_token_id(lm, sp + unrelated[0]), single_token_id(lm, sp + unrelated[1]))
    u = unit(v - (v @ n) / (n @ n) * n)
    u_n = unit(n - (n @ v) / (v @ v) * v)
    return {"v": v, "n": n, "u": u, "u_n": u_n}
