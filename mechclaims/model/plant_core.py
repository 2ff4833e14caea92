"""The ground of every plant: a planted copy of a model, its identity, and views of the weights a plant writes.

A plant never edits the model it is given: :func:`planted_copy` deep-copies the module (tied weights stay tied, except
where :func:`untie_unembedding` unties them on purpose), and :func:`finish` names the copy
``"<name>+plant:<tag>"``, hashes its weights (:func:`mechclaims.model.fingerprint.weight_fingerprint`) and records
what was planted in ``extra["plant"]``: the mechanism, layer, size, every state-dict entry written, and the numbers
measured while planting. Anything not listed in ``edited`` is bit-identical to the original (tests/test_plant.py).

Weight views (write through them in place, under ``torch.no_grad()``), one convention for every family:
- :func:`unit_rows`: ``[n_units, d_in]`` rows of a projection's *output units* (``nn.Linear.weight`` rows, GPT-2
  ``Conv1D.weight`` columns), optionally only the units a derived site reads (the q or k part of a fused c_attn);
- :func:`mlp_parts`: the MLP at a layer: input rows (gate or fc), the up rows of a gated MLP, and the output rows
  ``W_out[i]`` = what neuron i writes (``[d_mlp, d_model]``, a view of down_proj / c_proj).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mechclaims.model.fingerprint import weight_fingerprint
from mechclaims.model.registry import LoadedModel
from mechclaims.model.sites import base_of, resolve, site


@dataclass
class PlantInfo:
    """What a plant put where (``extra["plant"]`` of the planted model; ``asdict``-able, JSON-friendly numbers)."""

    mechanism: str
    layer: int | None
    size: float
    edited: list[str] = field(default_factory=list)  # state-dict names written
    details: dict[str, Any] = field(default_factory=dict)  # indices, gains, and what was measured while planting
    base: str = ""  # the original model's name and fingerprint
    parent: dict[str, Any] | None = None  # an earlier plant this one was made on (e.g. the gender channel)


def planted_copy(lm: LoadedModel) -> LoadedModel:
    """A deep copy of ``lm`` whose module can be edited (eval mode, no grad). Identity is set by :func:`finish`."""
    model = copy.deepcopy(lm.model)  # deepcopy's memo keeps tied parameters tied
    model.eval()
    model.requires_grad_(False)
    extra = {k: v for k, v in lm.extra.items() if k not in ("state_fingerprint", "fastpath", "plant")}
    return LoadedModel(name=lm.name, model=model, tokenizer=lm.tokenizer, kind=lm.kind, family=lm.family,
                       n_layers=lm.n_layers, fingerprint="", device=lm.device, dtype=lm.dtype, extra=extra)


def finish(new: LoadedModel, base: LoadedModel, info: PlantInfo, tag: str) -> LoadedModel:
    """Name, fingerprint and label the planted copy (``tag`` like ``"lesion@L2:s0.5"``)."""
    info.base = f"{base.name}@{base.fingerprint}"
    info.parent = _as_dict(base.extra.get("plant"))
    a, b = base.model.state_dict(), new.model.state_dict()
    changed = {n for n in b if n in a and not torch.equal(a[n], b[n])}
    stray = changed - set(info.edited)
    if stray:  # a plant may write only what it declares
        raise AssertionError(f"plant {info.mechanism} changed undeclared weights: {sorted(stray)}")
    info.edited = sorted(changed)  # declared and actually changed (a zero bias scaled by 0 is not an edit)
    new.name = f"{base.name}+plant:{tag}"
    new.fingerprint = weight_fingerprint(new.model)
    new.extra["plant"] = info
    return new


def _as_dict(info: PlantInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    d = {k: getattr(info, k) for k in ("mechanism", "layer", "size", "edited", "base", "parent")}
    d["details"] = {k: v for k, v in info.details.items() if not isinstance(v, list) or len(v) <= 64}
    return d


def param_name(model: Any, p: torch.Tensor) -> str:
    """The state-dict name of parameter ``p`` (a view's base is matched by storage)."""
    ptr = p.untyped_storage().data_ptr()
    for n, q in model.named_parameters(remove_duplicate=False):
        if q.untyped_storage().data_ptr() == ptr:
            return n
    raise LookupError("parameter not found in the model")


def _is_conv1d(mod: Any) -> bool:
    return type(mod).__name__ == "Conv1D"  # GPT-2's [in, out] projection


def unit_rows(mod: Any, units: torch.Tensor | None = None) -> torch.Tensor:
    """``[n_units, d_in]`` view of ``mod``'s weight, one row per output unit (all units, or ``units`` in order:
    then a copy, so write back with :func:`set_unit_rows`)."""
    w = mod.weight.T if _is_conv1d(mod) else mod.weight
    return w if units is None else w[units]


def set_unit_rows(mod: Any, units: torch.Tensor, rows: torch.Tensor, bias: torch.Tensor | float | None = None) -> None:
    w = mod.weight.T if _is_conv1d(mod) else mod.weight
    w[units] = rows.to(w.dtype)
    if bias is not None and getattr(mod, "bias", None) is not None:
        mod.bias[units] = torch.as_tensor(bias, dtype=mod.bias.dtype)


def derived_units(lm: LoadedModel, kind: str, layer: int) -> tuple[Any, torch.Tensor]:
    """The module behind site ``kind`` at ``layer`` and the raw output units its canonical tensor reads, in the
    canonical (flattened head-major) order: the q or k part of a fused projection, or every unit."""
    rs = resolve(lm.model, site(kind, layer))
    mod = rs.module
    if not hasattr(mod, "weight") or mod.weight.ndim != 2 or rs.spec.hook != "output":
        raise NotImplementedError(f"{lm.name}: {kind} sits on {type(mod).__name__}, not on a projection; planting "
                                  f"there needs this family's projection (q_norm families are not supported yet).")
    n_out = mod.weight.shape[1] if _is_conv1d(mod) else mod.weight.shape[0]
    idx = torch.arange(n_out).reshape(1, 1, n_out)
    if rs.spec.post is not None:
        idx = rs.spec.post(idx, lm.model.config)
    return mod, idx.reshape(-1)


@dataclass
class MLPParts:
    fc: Any  # the module behind mlp.hook_pre (c_fc / gate_proj)
    up: Any | None  # up_proj of a gated MLP
    out: Any  # the module behind mlp.hook_post (c_proj / down_proj)
    parent: Any  # the MLP module (its act / act_fn is the nonlinearity)

    @property
    def gated(self) -> bool:
        return self.up is not None

    def w_out(self) -> torch.Tensor:
        """``[d_mlp, d_model]`` view: row i is what neuron i writes."""
        return self.out.weight if _is_conv1d(self.out) else self.out.weight.T

    @property
    def d_mlp(self) -> int:
        return self.w_out().shape[0]

    def post(self, x: torch.Tensor) -> torch.Tensor:
        """What ``mlp.hook_post`` holds for MLP-input rows ``x`` (``[n, d_model]``)."""
        act = getattr(self.parent, "act_fn", None) or getattr(self.parent, "act")
        return act(self.fc(x)) * self.up(x) if self.gated else act(self.fc(x))


def mlp_parts(lm: LoadedModel, layer: int) -> MLPParts:
    fc = resolve(lm.model, site("mlp.hook_pre", layer))
    out = resolve(lm.model, site("mlp.hook_post", layer)).module
    if fc.spec.post is not None:
        raise NotImplementedError(f"{lm.name}: a fused gate/up projection is not supported by the plants yet")
    parent = next(m for m in lm.model.modules() if any(c is fc.module for c in m.children()))
    return MLPParts(fc.module, getattr(parent, "up_proj", None), out, parent)


def final_norm(lm: LoadedModel) -> Any:
    return base_of(lm.model).get_submodule(lm.sitemap.final_norm)


def embeddings(lm: LoadedModel) -> torch.Tensor:
    return lm.model.get_input_embeddings().weight


def untie_unembedding(lm: LoadedModel) -> bool:
    """Give the unembedding its own copy of the weights where it shares the input embedding's (GPT-2), so an edit of
    the input embedding leaves every logit readout as it was. Returns whether it untied."""
    out, emb = lm.model.get_output_embeddings(), lm.model.get_input_embeddings()
    if out is None or out.weight is not emb.weight:
        return False
    out.weight = torch.nn.Parameter(emb.weight.detach().clone(), requires_grad=False)
    return True


def unit(v: np.ndarray | torch.Tensor) -> np.ndarray:
    v = np.asarray(v, np.float64)
    n = np.linalg.norm(v)
    if n == 0:
        raise ValueError("a zero direction cannot be planted")
    return v / n


def pick_units(n: int, k: int, seed: int, exclude: Sequence[int] = ()) -> np.ndarray:
    """``k`` distinct unit indices from ``range(n)`` (seeded), none in ``exclude``."""
    pool = np.setdiff1d(np.arange(n), np.asarray(exclude, int))
    if k > len(pool):
        raise ValueError(f"cannot pick {k} of {len(pool)} free units")
    return np.sort(np.random.default_rng(seed).choice(pool, size=k, replace=False))
