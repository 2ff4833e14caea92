"""Residual-stream additivity: the block's output is its input plus what its sublayers add.

Pre-LN (sequential or parallel): ``h[l+1] = h[l] + attn_out[l] + mlp_out[l]``.
Post-LN (BERT): ``h_mid = LN1(h[l] + attn_out)`` and ``h[l+1] = LN2(h_mid + mlp_out)``.

Criterion (stated before looking): the max over tokens of ``||h[l+1] - recon|| / ||h[l+1]||`` is at most the dtype
tolerance AND at most ``SEPARATION[dtype]`` times the median error of the h[l]-only reconstruction. A correlation
is never the criterion: h[l] alone already correlates ~0.9 with h[l+1].
"""
from __future__ import annotations

import numpy as np

from mechclaims.verdict.verdict import Verdict

# float32: eps 1.2e-7, a sum of three terms of residual size gives <~1e-6 relative; 1e-5 leaves 10x headroom.
# bfloat16 (eps 7.8e-3) and float16 (eps 9.8e-4): the model itself rounds the residual add, so the identity holds
# only to the dtype's rounding of a sum; 3e-2 and 5e-3 leave ~4x headroom over one rounding of |h|.
TOLERANCE = {"float32": 1e-5, "bfloat16": 3e-2, "float16": 5e-3}
# "Orders of magnitude below the h[l]-only error": 3 orders in float32; in half precision the identity's own
# rounding is ~1e-2 of |h|, so one order is all that can be asked.
SEPARATION = {"float32": 1e-3, "bfloat16": 1e-1, "float16": 1e-1}


def rel_err(target: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Per-token ``||target - recon|| / ||target||`` in float64."""
    t, r = np.asarray(target, np.float64), np.asarray(recon, np.float64)
    return np.linalg.norm(t - r, axis=-1) / np.maximum(np.linalg.norm(t, axis=-1), 1e-30)


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, eps: float) -> np.ndarray:
    x = np.asarray(x, np.float64)
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps) * w
    return y + b if b is not None else y


def additivity_verdict(h: np.ndarray, attn: np.ndarray, mlp: np.ndarray, h_next: np.ndarray, *,
                       dtype: str = "float32", post_ln: dict | None = None, h_mid: np.ndarray | None = None,
                       claim: str = "residual_additivity") -> Verdict:
    """Verdict for one layer. ``post_ln`` = {"ln1": (w, b, eps), "ln2": (w, b, eps)} selects the post-LN form,
    which also needs the captured ``h_mid`` (checked as its own equation, so each LayerNorm is pinned)."""
    if h.shape != h_next.shape or h.shape[0] == 0:
        raise ValueError(f"additivity needs matching non-empty [tokens, d] arrays, got {h.shape} and {h_next.shape}")
    tol, sep = TOLERANCE[dtype], SEPARATION[dtype]
    h64 = np.asarray(h, np.float64)
    if post_ln is None:
        recon = h64 + attn + mlp
        err = rel_err(h_next, recon)
        form = "h[l+1] = h[l] + attn_out + mlp_out"
        plain = err
    else:
        mid = layer_norm(h64 + attn, *post_ln["ln1"])
        err_mid = rel_err(h_mid, mid) if h_mid is not None else np.zeros(len(h))
        recon = layer_norm((h_mid if h_mid is not None else mid) + np.asarray(mlp, np.float64), *post_ln["ln2"])
        err = np.maximum(rel_err(h_next, recon), err_mid)
        form = "h_mid = LN1(h[l] + attn_out), h[l+1] = LN2(h_mid + mlp_out)"
        plain = rel_err(h_next, h64 + attn + mlp)
    hl_only = rel_err(h_next, h64)
    max_err, hl_med = float(err.max()), float(np.median(hl_only))
    ratio = max_err / hl_med if hl_med > 0 else float("inf")
    passed = max_err <= tol and ratio <= sep
    return Verdict(
        claim=claim, statistic_name="max_rel_err", statistic=max_err,
        rule=f"{form}: max_t ||Δ||/||h[l+1]|| <= {tol:g} ({dtype}) and <= {sep:g} x median h[l]-only error",
        passed=passed, effect_name=None,
        details={"median_rel_err": float(np.median(err)), "hl_only_median_rel_err": hl_med,
                 "hl_only_min_rel_err": float(hl_only.min()), "ratio_to_hl_only": ratio,
                 "plain_sum_max_rel_err": float(plain.max()), "n_tokens": float(len(h)), "tolerance": tol},
        reason="" if passed else ("identity error above the dtype tolerance" if max_err > tol
                                  else "identity error not far enough below the h[l]-only error"))
