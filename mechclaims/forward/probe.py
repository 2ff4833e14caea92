"""The forward fingerprint: a hash of what a model's forward pass does, for keying statistics that read the model.

A statistic that runs the model (a lesion, a patch, a rotated-weights null) depends on the weights AND on how the
libraries compute the forward pass. Keying it on the torch/transformers versions recomputes it at every release,
although most releases leave every activation bit-identical. Instead it is keyed on this fingerprint: the sha256 of
the clean outputs at every residual, attention and MLP site (and the logits) on one fixed short probe text, plus the
logits under one fixed probe intervention (the middle layer's MLP output zero-ablated through :func:`intervene`, the
path every lesion and patch takes). A release that moves any of these bits gives another fingerprint (a miss); one
that moves nothing reuses the stored statistics, whose reuse is then checked by recomputing a sample
(:mod:`mechclaims.store.verify`).

Falsified by: a change of the forward (a patched MLP, a scaled weight, another kernel) that leaves the fingerprint
unchanged (tests/test_verified_reuse.py plants one).
"""
from __future__ import annotations

import hashlib
from typing import Any

from mechclaims.forward.capture import capture, encode, intervene
from mechclaims.model.sites import available_sites, site
from mechclaims.store.actcache import content_digest

# Plain ASCII, short (every tokenizer gives ~10-20 tokens), fixed forever: changing it changes every fingerprint.
PROBE_TEXT = "The quick brown fox jumps over the lazy dog, and 42 cats watch it."
KINDS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")
VERSION = 1  # bump when what is hashed changes


def probe_sites(lm: Any) -> list[str]:
    """Every residual, attention and MLP output site of ``lm``, then its logits (or final norm) if it has them."""
    names = available_sites(lm.model, lm.sitemap)
    out = [n for n in names if n.rsplit(".", 1)[-1] in KINDS]
    out += [n for n in ("hook_logits", "ln_final.hook_normalized") if n in names][:1]
    return out


def forward_fingerprint(lm: Any) -> str:
    """sha256 (hex) of ``lm``'s clean outputs at :func:`probe_sites` on :data:`PROBE_TEXT` and of its last site
    under a zero-ablated middle MLP. One small batch: two forward passes of one short sequence."""
    ids = encode(lm, [PROBE_TEXT])
    sites = probe_sites(lm)
    clean = capture(lm, ids, sites, "all", show=False)
    with intervene(lm, site("hook_mlp_out", lm.n_layers // 2), lambda x: x * 0):  # its hook comes off in finally
        ablated = capture(lm, ids, sites[-1:], "all", show=False)
    h = hashlib.sha256(f"probe-v{VERSION}|{PROBE_TEXT}|{ids}|{sites}".encode())
    h.update(content_digest({s: clean[s] for s in sites}).encode())
    h.update(content_digest(ablated[sites[-1]]).encode())
    return h.hexdigest()
