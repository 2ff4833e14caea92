"""Activations: what a capture returns, and the readings of the residual stream a claim needs from it.

Per-position captures are ``[n_seq, ...]``. With ``positions="all"`` every real token is kept, flattened to
``[n_tokens, ...]``, with ``seq`` (sequence index) and ``pos`` (token index). The readings (TransformerLens's
``ActivationCache`` is the model, without its string shorthands) are pure numpy over the captured arrays, plus the
model's norm parameters where a reading needs them:

- :meth:`Activations.decompose`: the terms of the residual identity at a layer (claim 1's input);
- :meth:`Activations.norm_scale`: the final norm's 1/scale per row (the direct-logit path's linearisation);
- :meth:`Activations.path_steps`: the norm of each step of the residual stream between consecutive sites.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from mechclaims.forward import readings


@dataclass
class Activations:
    sites: dict[str, np.ndarray]
    seq: np.ndarray | None = None
    pos: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.sites:
            raise KeyError(f"{name!r} was not captured; captured sites: {sorted(self.sites)}")
        return self.sites[name]

    def __contains__(self, name: object) -> bool:
        return name in self.sites

    def decompose(self, lm: Any, layer: int, *, drop: str | None = None, offset: int = 0,
                  sitemap: Any = None) -> dict[str, Any]:
        """The residual identity's terms at ``layer`` (keyword arguments of
        :func:`mechclaims.stats.additivity.additivity_verdict`); ``drop``/``offset`` give the wrong decompositions
        that claim 1's controls check (see :func:`mechclaims.forward.readings.layer_terms`)."""
        return readings.layer_terms(lm, self.sites, layer, sitemap=sitemap, drop=drop, offset=offset)

    def norm_scale(self, lm: Any, site_name: str = "ln_final.hook_in") -> np.ndarray:
        """1 / the final norm's scale per row (RMS for RMSNorm, SD for LayerNorm, with its eps)."""
        return readings.inverse_norm_scale(lm, self[site_name])

    def path_steps(self, chain: Sequence[str]) -> np.ndarray:
        """``[n, len(chain) - 1]``: ``||x[chain[i+1]] - x[chain[i]]||`` per row (steps of the residual stream)."""
        return np.column_stack([np.linalg.norm(self[b].astype(float) - self[a].astype(float), axis=-1)
                                for a, b in zip(chain[:-1], chain[1:])])
