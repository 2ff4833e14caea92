"""Across layers: the model-level verdict of a per-layer claim, and each of its controls summarised across layers.

A per-layer claim decides every layer under a correction over all of the model's layers; the model-level verdict
aggregates the layers' outcomes by the claim's declared mode (``all``: every layer must hold; ``any``: some layer
must) and is gated on its controls as well (mechclaims.verdict.outcome.aggregate). A control passes at model level
when it passes at some layer where it was evaluated; it is inconclusive when some layer could not evaluate it.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from mechclaims.verdict.outcome import counts
from mechclaims.verdict.verdict import Verdict


def control_across_layers(name: str, per: Mapping[int, Verdict]) -> Verdict:
    """Control ``name`` at model level, from the controls attached to each layer's verdict."""
    cs = {l: v.controls[name] for l, v in sorted(per.items()) if isinstance(v.controls.get(name), Verdict)}
    passing = [l for l, c in cs.items() if c.passed]
    untestable = [l for l, c in cs.items() if not c.testable]
    why = [f"passes at layers {passing}"] if passing else []
    if untestable:  # say why in plain words: an inconclusive control with no reason sends users hunting
        first = next((cs[l].reason for l in untestable if cs[l].reason), "")
        why.append(f"could not be evaluated at {len(untestable)} layer(s) {untestable}" + (f": {first}" if first else ""))
    return Verdict(claim=name, statistic_name="n_layers_passing", statistic=float(len(passing)), role="control",
                   rule="passes at some layer", passed=bool(passing), testable=bool(cs) and not untestable,
                   details={"n_layers_evaluated": float(len(cs))}, reason="; ".join(why))


def across_layers(claim: str, per: Mapping[int, Verdict], aggregate: str, controls: Sequence[str] = (), *,
                  details: Mapping[str, float] | None = None, reason: str = "",
                  statistic: tuple[str, float] | None = None) -> Verdict:
    """The model-level verdict: ``per`` maps every layer of the model to its gated verdict; ``controls`` names the
    controls each layer carries (summarised by :func:`control_across_layers`) and gates this verdict too."""
    if aggregate not in ("all", "any"):
        raise ValueError(f"aggregate must be 'all' or 'any', not {aggregate!r}")
    vs = [per[l] for l in sorted(per)]
    passes = [v.passed for v in vs]
    name, value = statistic or ("n_layers_supported", float(sum(v.outcome == "supported" for v in vs)))
    v = Verdict(claim=claim, statistic_name=name, statistic=value,
                rule=f"{'every' if aggregate == 'all' else 'some'} layer supported (each layer decided under a "
                     f"correction over all {len(vs)} layers)",
                passed=all(passes) if aggregate == "all" else any(passes),
                layers={l: per[l].outcome for l in sorted(per)}, aggregate=aggregate,
                details={"n_layers_rule_passes": float(sum(passes)), **(details or {})},
                reason=reason or f"layers: {counts(v.outcome for v in vs)}")
    return v.gate({c: control_across_layers(c, per) for c in controls})
