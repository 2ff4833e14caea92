"""Machine-checked pre-registration: each claim's design (its pass rule, smallest effect of interest, thresholds,
alpha) has a content hash, recorded with its recorded outcomes together with the date and commit of the data run.

A claim module declares ``DESIGNS = {claim name: Design(...)}``. ``mechclaims record-outcomes`` writes each recorded
claim's design hash, with the date and commit of the data run, to ``<claims dir>/expected/<module>.designs.yml``.
``tests/test_preregistration.py`` fails when a design's hash differs from the one its outcomes were recorded under
(:func:`unrecorded_changes`): a changed rule, threshold or alpha is a new design, recorded deliberately
(``mechclaims record-outcomes --new-design``), never a silent edit. A design stated after a run of an earlier design
on the same stimuli says so in ``post_hoc``, and summary.json marks it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml


@dataclass(frozen=True)
class Design:
    rule: str  # the pass rule in words, as the module docstring states it
    alpha: float | None  # the family-wise level (per-layer claims decide at alpha / n_layers); None: no test
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


def designs_file(module_file: str | Path) -> Path:
    """``<claims dir>/expected/<module>.designs.yml``: the design hashes the module's outcomes were recorded under."""
    p = Path(module_file)
    return p.parent / "expected" / f"{p.stem}.designs.yml"


def recorded_designs(module_file: str | Path) -> dict[str, dict[str, Any]]:
    f = designs_file(module_file)
    return (yaml.safe_load(f.read_text(encoding="utf-8")) or {}) if f.exists() else {}


def unrecorded_changes(designs: Mapping[str, Design], recorded: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per claim whose declared design is not the one its outcomes were recorded under (or never was)."""
    out = []
    for claim, d in sorted(designs.items()):
        r = recorded.get(claim)
        if r is None:
            out.append(f"{claim}: design {d.hash()} has no recorded outcomes; run the claim and record them "
                       f"(mechclaims record-outcomes <run>/summary.json)")
        elif r.get("hash") != d.hash():
            out.append(f"{claim}: the design changed since its outcomes were recorded (hash {r.get('hash')} on "
                       f"{r.get('recorded', '?')}, commit {r.get('commit', '?')}; now {d.hash()}). A changed rule, "
                       f"threshold, SESOI or alpha is a new design: give it a new claim name, or rerun and record it "
                       f"deliberately with `mechclaims record-outcomes <run>/summary.json --new-design`, saying why "
                       f"in its post_hoc field if it follows a run on the same stimuli")
    return out
