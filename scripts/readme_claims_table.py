"""The README's claims table: one row per claim, with its controls and its outcome on one model.

    python scripts/readme_claims_table.py artifacts/summary.json [model]

Each row: the claim's ``-k`` name, its file, each control with its outcome, and the claim's outcome with its effect,
interval and per-layer outcome counts on the model (default: smollm2-135m), and its minimum detectable effect at 80%
power (summary.json ``mde``, from mechclaims/report/mde.json).
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def _f(x) -> str:
    return f"{x:.3g}" if isinstance(x, (int, float)) else str(x)


def mde_cell(m: dict | None) -> str:
    """The MDE column: value and unit at 80% power on the claim's calibration stand-in (summary.json ``mde``)."""
    if not m:
        return "–"
    if m.get("value") is None:
        return "not measured"
    return f"{_f(m['value'])} ({m['unit'].split(' (')[0]})"


def table(path: str, model: str = "smollm2-135m") -> list[str]:
    s = json.loads(Path(path).read_text())
    recs = {}
    for r in s["records"]:
        if r.get("role", "claim") == "claim" and str(r.get("model")) == model and r.get("layer") is None:
            recs.setdefault(r["claim"], r)
    files = {r["claim"]: r["test_id"].split("::")[0] for r in s["records"]}
    out = []
    for o in s.get("outcomes", []):
        if o["model"] != model:
            continue
        r = recs.get(o["claim"])
        v = (r or {}).get("verdicts", [{}])[0] if r else {}
        eff = ""
        if v.get("effect") is not None:
            ci = v.get("effect_ci")
            eff = f"; {v.get('effect_name')} {_f(v['effect'])}" + (f" [{_f(ci[0])}, {_f(ci[1])}]" if ci else "")
        lay = Counter(o["layers"].values())
        lay_s = ("; layers: " + ", ".join(f"{k} {n}" for k, n in lay.most_common())) if lay else ""
        ctl = "; ".join(f"`{k}` {c}" for k, c in o["controls"].items()) or "–"
        out.append(f"| `{o['claim']}` | `{files.get(o['claim'], '')}` | {ctl} | **{o['outcome']}**{eff}{lay_s} | "
                   f"{mde_cell(o.get('mde'))} |")
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print("\n".join(table(sys.argv[1], *(sys.argv[2:3]))))
