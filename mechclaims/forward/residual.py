"""The residual identity's terms, read from captured sites through a site map: one place for the additivity claim
and the site-map proofs (``tests/test_sites.py``).

Pre-LN: ``h[l+1] = h[l] + attn_out[l] + mlp_out[l]``, where ``h[L]`` is ``ln_final.hook_in`` (the residual before
the final norm). Post-LN (BERT): ``h_mid = LN1(h[l] + attn_out)``, ``h[l+1] = LN2(h_mid + mlp_out)``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from mechclaims.model.sites import SiteMap, base_of
from mechclaims.stats.additivity import additivity_verdict
from mechclaims.verdict.verdict import Verdict


def _ln(module: Any) -> tuple[np.ndarray, np.ndarray, float]:
    return module.weight.detach().double().cpu().numpy(), module.bias.detach().double().cpu().numpy(), module.eps


def identity_sites(lm: Any, sitemap: SiteMap | None = None) -> list[str]:
    """Every site the identity reads, at every layer."""
    sm = sitemap or lm.sitemap
    kinds = [k for k in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")
             if k in sm.layer]
    return [f"blocks.{l}.{k}" for l in range(lm.n_layers) for k in kinds] + (
        ["ln_final.hook_in"] if sm.final_norm else [])


def layer_terms(lm: Any, acts: Mapping[str, np.ndarray], layer: int, *, sitemap: SiteMap | None = None,
                drop: str | None = None, offset: int = 0) -> dict[str, Any]:
    """Keyword arguments of :func:`additivity_verdict` for one layer.

    ``drop`` ("attn" or "mlp") zeroes that term and ``offset`` reads h from ``offset`` layers too early: the
    deliberately wrong decompositions the claim's controls use.
    """
    sm, l, L = sitemap or lm.sitemap, layer, lm.n_layers
    g = lambda k, at=l: acts[f"blocks.{at}.{k}"]  # noqa: E731
    h = g("hook_resid_pre", max(l - offset, 0))
    if sm.residual == "post_ln":
        target = g("hook_resid_post")
    elif l < L - 1:
        target = acts[f"blocks.{l + 1}.hook_resid_pre"]
    else:
        target = acts["ln_final.hook_in"] if sm.final_norm else g("hook_resid_post")
    attn, mlp = g("hook_attn_out"), g("hook_mlp_out")
    if drop == "attn":
        attn = np.zeros_like(attn)
    elif drop == "mlp":
        mlp = np.zeros_like(mlp)
    elif drop is not None:
        raise ValueError(f"drop must be 'attn', 'mlp' or None, not {drop!r}")
    kw: dict[str, Any] = {"h": h, "attn": attn, "mlp": mlp, "h_next": target, "dtype": lm.dtype}
    if sm.residual == "post_ln":
        blk = base_of(lm.model, sm).get_submodule(f"{sm.blocks}.{l}")
        kw["post_ln"] = {k: _ln(blk.get_submodule(n)) for k, n in zip(("ln1", "ln2"), sm.post_ln_norms)}
        kw["h_mid"] = g("hook_resid_mid")
    return kw


def identity_checks(lm: Any, acts: Mapping[str, np.ndarray], sitemap: SiteMap | None = None
                    ) -> list[tuple[str, Verdict]]:
    """(equation, Verdict) for every identity the map implies at every layer, including ``resid_mid = h +
    attn_out`` where a pre-LN family has a resid_mid site."""
    sm, out = sitemap or lm.sitemap, []
    for l in range(lm.n_layers):
        kw = layer_terms(lm, acts, l, sitemap=sm)
        if sm.residual == "post_ln":
            out.append((f"L{l} post-LN", additivity_verdict(**kw)))
            continue
        out.append((f"L{l} h+attn+mlp", additivity_verdict(**kw)))
        if "hook_resid_mid" in sm.layer:
            z = np.zeros_like(kw["h"])
            out.append((f"L{l} mid=h+attn", additivity_verdict(kw["h"], kw["attn"], z, acts[f"blocks.{l}.hook_resid_mid"],
                                                               dtype=lm.dtype)))
    return out
