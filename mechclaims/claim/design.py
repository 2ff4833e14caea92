"""Machine-checked pre-registration: each claim's design (its pass rule, smallest effect of interest, thresholds,
alpha) has a content hash, recorded with its recorded outcomes together with the date and commit of the data run.

A claim module declares ``DESIGNS = {claim name: Design(...)}``. ``tests/test_preregistration.py`` fails when a
design's hash differs from the one its recorded outcomes were recorded under: a changed rule, threshold or alpha is
a new design, recorded deliberately (``mechclaims record-outcomes --new-design``), never a silent edit. A design
stated after a run of an earlier design on the same stimuli says so in ``post_hoc``, and summary.json marks it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Design:
    rule: str  # the pass rule in words, as the module docstring states it
    alpha: float  # the family-wise level; per-layer claims decide at alpha / n_layers
    sesoi: float | None  # the smallest effect of interest, in the effect's own units (None: no equivalence test)
    thresholds: Mapping[str, Any] = field(default_factory=dict)  # every other number the decision reads
    stated: str = ""  # the date the design was stated (ISO)
    post_hoc: str = ""  # why the design came after a run on the same stimuli ("" = stated before any run)

    def hash(self) -> str:
        """12 hex digits over what decides (the rule, alpha, the SESOI, the thresholds); dates and notes excluded."""
        core = {"rule": self.rule, "alpha": self.alpha, "sesoi": self.sesoi, "thresholds": dict(self.thresholds)}
        return hashlib.sha256(json.dumps(core, sort_keys=True, default=repr).encode()).hexdigest()[:12]

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "thresholds": dict(self.thresholds), "hash": self.hash()}


def designs_of(module: Any) -> dict[str, Design]:
    return dict(getattr(module, "DESIGNS", None) or {})
