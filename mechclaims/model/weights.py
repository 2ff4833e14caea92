"""Weight accessors beside the site map: what a site's module computes, read from the module itself.

- :func:`w_out`: ``[d_mlp, d_model]``, row i = what MLP neuron i writes to the residual stream (the weight read by
  ``mlp.hook_post``'s module; ``nn.Linear`` stores ``[out, in]``, GPT-2's ``Conv1D`` ``[in, out]``).
- :func:`qk_path`: a function that maps inputs of ``attn.hook_qk_in`` to what ``attn.hook_q`` and ``attn.hook_k``
  would capture for them: the projections (fused or not, with bias) and any per-head q/k norm, in the family's own
  modules. ``tests/test_weights.py`` checks it against real captures on every family's tiny model.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from mechclaims.model.sites import base_of, resolve, site
from mechclaims.stats.lesion import logit_direction as direction


def w_out(lm: Any, layer: int) -> np.ndarray:
    mod = resolve(lm.model, site("mlp.hook_post", layer)).module
    w = mod.weight.detach().float().cpu().numpy()
    return w.T if isinstance(mod, torch.nn.Linear) else w


def _is_projection(mod: Any, d_in: int) -> bool:
    w = getattr(mod, "weight", None)
    return w is not None and w.ndim == 2 and d_in in w.shape and not hasattr(mod, "variance_epsilon") \
        and type(mod).__name__ not in ("LayerNorm",) and "Norm" not in type(mod).__name__


def qk_path(lm: Any, layer: int) -> Callable[[Any], tuple[Any, Any]]:
    """``f(X [n, d]) -> (Q [n, n_heads, d_head], K [n, n_kv_heads, d_head])`` (torch tensors, no grad), exactly what
    ``attn.hook_q``/``attn.hook_k`` capture when ``attn.hook_qk_in`` holds the rows of X."""
    cfg = lm.model.config
    rin = resolve(lm.model, site("attn.hook_qk_in", layer))
    rq, rk = resolve(lm.model, site("attn.hook_q", layer)), resolve(lm.model, site("attn.hook_k", layer))
    d = int(getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd"))
    attn = _parent(lm.model, rin.name, rin.module)

    def one(rs: Any, which: str) -> Callable[[Any], Any]:
        post = rs.spec.post or (lambda x, c: x)
        if _is_projection(rs.module, d):  # the hooked module is the projection itself (maybe fused)
            return lambda x: post(rs.module(x[None]), cfg)[0]
        proj = getattr(attn, f"{which}_proj", None)
        if proj is None:
            raise NotImplementedError(f"{lm.name}: {rs.name} sits on {type(rs.module).__name__}, and its attention "
                                      f"module has no {which}_proj to feed it; add this family to qk_path.")
        heads = getattr(cfg, "num_attention_heads" if which == "q" else "num_key_value_heads", None) or \
            getattr(cfg, "num_attention_heads")
        width = int(getattr(rs.module, "weight").numel())
        if width * heads == proj.weight.shape[0]:  # a per-head norm after the head split (Gemma 3, Qwen 3)
            return lambda x: rs.module(proj(x).reshape(x.shape[0], heads, -1))
        return lambda x: post(rs.module(proj(x)[None]), cfg)[0]  # a norm over all heads, then the split (OLMo-2)

    fq, fk = one(rq, "q"), one(rk, "k")

    def f(X: Any) -> tuple[Any, Any]:
        p = next(lm.model.parameters())
        x = torch.as_tensor(X, dtype=p.dtype, device=p.device)
        with torch.no_grad():
            return fq(x), fk(x)
    return f


def _parent(model: Any, site_name: str, module: Any) -> Any:
    """The module that owns ``module`` (the attention block holding the q/k projections)."""
    for name, m in model.named_modules():
        for child in m.children():
            if child is module:
                return m
    raise LookupError(f"no parent module found for {site_name}")


def logit_direction(lm: Any, target: int, foil: int) -> np.ndarray:
    """``(u_target - u_foil)`` through the final norm's scale (centred for LayerNorm): the residual-space direction
    whose dot product with the final norm's normalised input is the target-minus-foil logit (token ids)."""
    norm = base_of(lm.model).get_submodule(lm.sitemap.final_norm)
    u = lm.model.get_output_embeddings().weight.detach().float().cpu().numpy()
    return direction(u[target], u[foil],
                     norm.weight.detach().float().cpu().numpy(), center=isinstance(norm, torch.nn.LayerNorm))


def model_path(lm: Any, layer: int) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The model's own q/k path at ``layer`` as a numpy function (see :func:`qk_path`): what the Q/K nulls run."""
    f = qk_path(lm, layer)

    def g(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q, k = f(X)
        return q.float().cpu().numpy(), k.float().cpu().numpy()
    return g


def unembedding(lm: Any) -> np.ndarray:
    """``[vocab, d_model]``: the output embedding's rows (logit of token t = final-norm state . row t, plus bias)."""
    return lm.model.get_output_embeddings().weight.detach().float().cpu().numpy()
