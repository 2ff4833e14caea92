"""Markdown table of claim outcomes from one or more summary.json files (for docs/results.md and the README).

    python scripts/results_table.py artifacts/summary.json [more summaries...]

One row per claim and model: outcome, effect with its interval, each control's outcome, and the per-layer outcome
counts. Controls are listed with their claim.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def _f(x) -> str:
    return "–" if x is None else (f"{x:.3g}" if isinstance(x, (int, float)) else str(x))


def rows(paths: list[str]) -> list[str]:
    out = ["| claim | model | outcome | effect [interval] | controls | layers |", "|---|---|---|---|---|---|"]
    for p in paths:
        s = json.loads(Path(p).read_text())
        recs = {(r["claim"], str(r["model"])): r for r in s["records"] if r.get("layer") is None and
                r.get("role", "claim") == "claim"}
        for o in s.get("outcomes", []):
            r = recs.get((o["claim"], o["model"]))
            v = (r or {}).get("verdicts", [{}])[0] if r else {}
            eff = "–"
            if v.get("effect") is not None:
                ci = v.get("effect_ci")
                eff = f"{v.get('effect_name')} {_f(v['effect'])}" + (f" [{_f(ci[0])}, {_f(ci[1])}]" if ci else "")
            ctl = ", ".join(f"{k}: {c}" for k, c in o["controls"].items()) or "–"
            lay = ", ".join(f"{k} {n}" for k, n in Counter(o["layers"].values()).most_common()) or "–"
            out.append(f"| {o['claim']} | {o['model']} | **{o['outcome']}** | {eff} | {ctl} | {lay} |")
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print("\n".join(rows(sys.argv[1:])))
