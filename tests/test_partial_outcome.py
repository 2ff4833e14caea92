"""A run that did not cover every layer of a model reports ``partial`` at model level (issue 27, item 6).

Claim: summary.json's model-level outcome of a claim whose model-level test did not run is the aggregate of its
per-layer outcomes only when every layer of the model (the records' ``model_layers``) ran; a ``-k`` slice of 2 of 30
layers says ``partial``. Falsified by a model-level outcome built from a slice (before the fix: ``refuted`` from
layers 4 and 12 alone, against ``inconclusive`` for the full run on smollm2-135m), or by a full run that says
``partial``.
"""
from __future__ import annotations

from mechclaims.report.summary import build_outcomes


def _rec(layer: int, outcome: str, depth: int | None = 30) -> dict:
    return {"claim": "mlp_lesion_contribution", "model": "m", "role": "claim", "layer": layer, "outcome": outcome,
            "aggregate": "all", "model_layers": depth}


def test_a_slice_of_layers_is_partial():
    recs = [_rec(4, "refuted"), _rec(12, "refuted")]
    assert build_outcomes(recs)[0]["outcome"] == "partial"


def test_every_layer_gives_the_aggregate():
    recs = [_rec(l, "refuted") for l in range(30)]
    assert build_outcomes(recs)[0]["outcome"] == "refuted"


def test_negligible_layers_are_decided_layers():
    recs = [_rec(l, "negligible" if l == 3 else "refuted", depth=4) for l in range(4)]
    assert build_outcomes(recs)[0]["outcome"] != "partial"


def test_unknown_depth_is_partial():
    recs = [_rec(l, "refuted", depth=None) for l in range(30)]
    assert build_outcomes(recs)[0]["outcome"] == "partial"
