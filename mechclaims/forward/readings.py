"""Readings of captured activations that need the model's structure: the residual identity's terms (one place for
the additivity claim and the site-map proofs in ``tests/test_sites.py``), the final norm's scale, and the on-the-fly
reducers that turn a huge site (every token's residual, every logit) into the few numbers a claim keeps.

Pre-LN: ``h[l+1] = h[l] + attn_out[l] + mlp_out[l]``, where ``h[L]`` is ``ln_final.hook_in`` (the residual before
the final norm). Post-LN (BERT): ``h_mid = LN1(h[l] + attn_out)``, ``h[l+1] = LN2(h_mid + mlp_out)``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch

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


def inverse_norm_scale(lm: Any, x: np.ndarray) -> np.ndarray:
    """1 / scale of the final norm for rows ``x`` of its input (``ln_final.hook_in``): RMS for RMSNorm, SD for
    LayerNorm (centred), each with the module's eps. A direct contribution through the norm is ``(c * g) * this``."""
    norm = base_of(lm.model).get_submodule(lm.sitemap.final_norm)
    x = np.asarray(x, float)
    spread = x.var(axis=1) if isinstance(norm, torch.nn.LayerNorm) else (x ** 2).mean(axis=1)
    return 1.0 / np.sqrt(spread + getattr(norm, "eps", getattr(norm, "variance_epsilon", 1e-5)))


def step_reducers(sites: list[str], prev: dict[str, str | None], carry: tuple[str, ...] = ()) -> dict[str, Callable]:
    """``reduce`` callbacks for :func:`mechclaims.forward.capture.capture` that turn each residual site into the norm
    of its step from ``prev[site]`` on the fly (hooks fire in layer order within one forward pass), so no
    [tokens, layers, d_model] array is ever kept. Sites in ``carry`` also return their state after the norm."""
    held: dict[str, torch.Tensor] = {}

    def make(site: str) -> Callable:
        def fn(x: torch.Tensor, ctx: dict) -> torch.Tensor:
            sel = x[ctx["b"].to(x.device), ctx["t"].to(x.device)].float()
            held[site] = sel
            base = held[prev[site]] if prev[site] else torch.zeros_like(sel)
            step = torch.linalg.vector_norm(sel - base, dim=-1, keepdim=True)
            return torch.cat([step, sel], dim=-1) if site in carry else step
        return fn

    return {s: make(s) for s in sites}


def next_token_logit_reducer(chunk: int = 256) -> Callable:
    """A ``hook_logits`` reducer: per kept position, [logit of the true next token, logsumexp, next token id, has a
    next token, entropy]. Row chunks: every number is per row, so chunking changes nothing, but the float copy, the
    softmax and its product with the logits exist for ``chunk`` rows at a time instead of every token of the batch
    (the capture's peak was ~2.9 GB on smollm2's 49k vocabulary)."""
    def logits(x: torch.Tensor, ctx: dict) -> torch.Tensor:
        b, t = ctx["b"].to(x.device), ctx["t"].to(x.device)
        nxt = torch.clamp(t + 1, max=x.shape[1] - 1)
        tgt = ctx["input_ids"].to(x.device)[b, nxt]
        has = (t + 1 < ctx["lengths"].to(x.device)[b]).float()
        out = []
        for c in range(0, len(b), chunk):
            lg = x[b[c:c + chunk], t[c:c + chunk]].float()
            g = tgt[c:c + chunk]
            true = lg.gather(1, g[:, None])[:, 0]
            lse = torch.logsumexp(lg, dim=-1)
            entropy = lse - (torch.softmax(lg, dim=-1) * lg).sum(dim=-1)
            out.append(torch.stack([true, lse, g.float(), has[c:c + chunk], entropy], dim=-1))
        return torch.cat(out)
    return logits
