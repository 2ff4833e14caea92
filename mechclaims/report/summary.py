"""Session outputs: summary.json (one record per claim test) and the compact terminal table."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from mechclaims.verdict.outcome import aggregate, counts
from mechclaims.versions import library_versions


def _key_stat(rec: dict[str, Any]) -> str:
    vs = rec.get("verdicts") or []
    if not vs:
        return "-"
    v = vs[0]
    s = f"{v['statistic_name']}={v['statistic']:.3g}" if isinstance(v.get("statistic"), (int, float)) else "-"
    if v.get("p") is not None:
        s += f" p={v['p']:.3g}"
    return s


def _layer_key(layer: Any) -> Any:
    return int(layer) if isinstance(layer, (int, float)) or str(layer).lstrip("-").isdigit() else str(layer)


MDE_TABLE = Path(__file__).resolve().parent / "mde.json"  # made by python -m mechclaims.calibrate.mde


@functools.lru_cache(maxsize=1)
def _mde_rows() -> dict[str, dict[str, Any]]:
    """claim -> its row of the committed MDE table (read once; empty when the table is absent)."""
    if not MDE_TABLE.exists():
        return {}
    table = json.loads(MDE_TABLE.read_text(encoding="utf-8"))
    return {r["claim"]: {**r, "power": table["target_power"]} for r in table["rows"]}


def mde_entry(claim: str) -> dict[str, Any] | None:
    """The claim's minimum detectable effect at 80% power on its calibration stand-in: value (None: not measured),
    unit, power, alpha, source. None when the claim has no row (e.g. a user's own claim)."""
    r = _mde_rows().get(claim)
    if r is None:
        return None
    return {"value": r["mde"], "unit": r["unit"], "power": r["power"], "alpha": r["alpha"], "source": r["source"]}


DECIDED = ("supported", "confounded", "negligible", "refuted", "inconclusive")


def build_outcomes(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """summary.json ``outcomes``: one entry per claim and model.

    ``outcome``/``expected`` come from the claim's model-level test; ``layers`` holds the per-layer tests'
    outcomes; ``controls`` the outcome of each control the claim declares (from the claim test's gating, else from
    the control tests linked to it by ``control_of``). A claim whose model-level test did not run (``-k`` picked
    layers only) gets the aggregate of its layers only when its ``aggregate`` mode is declared and every layer of the model ran
    (the records' ``model_layers``);
    otherwise its outcome says ``partial``. Claims not applicable to a model (skipped for its kind) are left out.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        if r.get("role", "claim") == "claim" and r.get("outcome") != "skipped":
            groups.setdefault((str(r.get("claim")), str(r.get("model"))), []).append(r)
    ctl_recs: dict[tuple[str, str], dict[str, str]] = {}
    for r in records:
        if r.get("role") == "control" and r.get("control_of") and r.get("layer") is None:
            ctl_recs.setdefault((str(r["control_of"]), str(r.get("model"))), {})[str(r.get("claim"))] = r.get("outcome")
    out = []
    for (claim, model), rs in sorted(groups.items()):
        top = [r for r in rs if r.get("layer") is None]
        per = {_layer_key(r["layer"]): r.get("outcome") for r in rs if r.get("layer") is not None}
        controls = dict(ctl_recs.get((claim, model), {}))
        for r in top:
            controls.update(r.get("controls") or {})
            v0 = (r.get("verdicts") or [{}])[0]
            # the model-level verdict knows every layer's outcome; per-layer tests that ran say the same
            per = {**{_layer_key(k): o for k, o in (v0.get("layers") or {}).items()}, **per}
        if top:
            outcome, expected = top[0].get("outcome"), top[0].get("expected")
        else:
            agg = next((r.get("aggregate") for r in rs if r.get("aggregate")), None)
            layer_outcomes = list(per.values())
            known = all(o in DECIDED for o in layer_outcomes)
            depth = next((r.get("model_layers") for r in rs if r.get("model_layers")), None)
            # every layer of the model must have run: a -k slice of 2 of 30 layers is not the model's outcome
            every = depth is not None and set(per) == set(range(int(depth)))
            outcome = aggregate(layer_outcomes, agg) if agg and known and every else "partial"
            expected = None
        design = next((r.get("design") for r in rs if r.get("design")), None)
        out.append({"claim": claim, "model": model, "outcome": outcome, "expected": expected, "design": design,
                    "mde": mde_entry(claim), "controls": controls, "layers": {str(k): v for k, v in sorted(per.items(), key=lambda kv: (str(type(kv[0])), kv[0]))}})
    return out


def terminal_table(records: list[dict[str, Any]]) -> list[str]:
    """Claim x model rows: outcome (and the recorded one if it differs), controls, per-layer outcome counts."""
    lines = [f"{'claim':<40} {'model':<14} {'outcome':<13} {'controls':<34} layers"]
    for o in build_outcomes(records):
        flag = "" if o["expected"] in (None, o["outcome"]) else f" (recorded {o['expected']}!)"
        c = o["controls"]
        odd = [f"{k} {v}" for k, v in c.items() if v != "failed"]
        ctl = ("; ".join(odd) if odd else f"all {len(c)} failed") if c else "-"
        layers = counts(o["layers"].values()) if o["layers"] else "-"
        lines.append(f"{o['claim'][:40]:<40} {o['model'][:14]:<14} {o['outcome'] + flag:<13} {ctl[:34]:<34} {layers}")
    bad = [r for r in records if r.get("test_outcome") in ("failed", "xpassed", "error")]
    if bad:
        lines.append(f"{len(bad)} test(s) failed: " + ", ".join(r["test_id"].split("::")[-1] for r in bad[:8])
                     + (" ..." if len(bad) > 8 else ""))
    return lines


def build_summary(records: list[dict[str, Any]], settings: Any, pool: Any, commit: str | None = None) -> dict[str, Any]:
    """summary.json's content: records sorted by test id (so serial and xdist runs match), the outcomes per claim
    and model, the environment and the drift rows. The run folder (mechclaims.store.runs) adds how the run ended."""
    recs = sorted(records, key=lambda r: str(r["test_id"]))
    return {"environment": {**library_versions(), "device": settings.device, "dtype": settings.dtype,
                            "seed": settings.seed, "permutations": settings.permutations,
                            "commit": commit},
            "models": settings.models, "records": recs, "outcomes": build_outcomes(recs),
            "model_fingerprints": {n: m.fingerprint for n, m in pool.loaded().items()},
            "claims": {r["claim"]: r.get("statement", {}) for r in recs if r.get("statement")},
            "drift": [{"test_id": r["test_id"], **d} for r in recs for d in r.get("drift", [])],
            "baselines_dir": str(getattr(settings, "baselines", "")),
            "baselines_created": [r["test_id"] for r in recs if r.get("baseline") == "created"]}
