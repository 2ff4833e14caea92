"""Per claim, each model's outcome with its effect, CI and p, from one or more runs' summary.json (a Markdown table).

Usage: ``python scripts/cross_model_table.py RUN1/summary.json [RUN2/summary.json ...] > table.md``

Rows are model-level claim tests (per-layer tests are summarised by their model-level test); a claim whose outcome
differs between models is marked "differs" (a finding to name). Claims over several models (path length across sizes)
follow in a table of their own, with their stated test. A summary file that does not exist or is not a
mechclaims summary is a usage error naming the file.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


ORDER: list[str] = []  # the models in the order the summaries list them


def load(paths: list[str]) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = []
    for p in paths:
        f = Path(p)
        try:
            d = json.loads(f.read_text())
            recs += d["records"]
            ORDER.extend(str(m) for m in d.get("models") or [] if str(m) not in ORDER)
        except (OSError, ValueError, KeyError, TypeError) as e:
            sys.exit(f"cross_model_table: {f} is not a readable mechclaims summary.json ({e!r}); pass "
                     f"<artifacts>/runs/<run>/summary.json or <artifacts>/latest/summary.json.")
    return recs


def _md(text: Any) -> str:
    """Text for a Markdown table cell: a "|" (as in "rho(x, y | z)") would end the cell."""
    return str(text).replace("|", "\\|")


def _num(x: Any) -> str:
    return "" if x is None else f"{x:.3g}" if isinstance(x, (int, float)) else str(x)


def cell(rec: dict[str, Any]) -> str:
    v = rec["verdicts"][0] if rec.get("verdicts") else {}
    eff, ci, p = v.get("effect"), v.get("effect_ci"), v.get("p")
    stat = v.get("statistic")
    parts = [f"**{rec['outcome']}**"]
    if eff is not None:
        parts.append(f"{v.get('effect_name')} {_num(eff)}" + (f" [{_num(ci[0])}, {_num(ci[1])}]" if ci else ""))
    elif stat is not None:
        parts.append(f"{v.get('statistic_name')} {_num(stat)}")
    if p is not None:
        parts.append(f"p {_num(p)}")
    ctl = rec.get("controls") or {}
    if ctl:
        parts.append("controls: " + ", ".join(f"{k} {o}" for k, o in sorted(ctl.items())))
    return "; ".join(parts)


def between(recs: list[dict[str, Any]]) -> str:
    """Claims over several models (no single model; the verdict names them): one row each."""
    rows = []
    for r in recs:
        if r.get("model") is not None or r.get("role") != "claim" or r.get("outcome") == "skipped":
            continue
        v = r["verdicts"][0] if r.get("verdicts") else {}
        rows.append(f"| {r['claim']} (`{r['test_id'].split('::')[-1]}`) | {' vs '.join(v.get('models') or [])} | "
                    f"{cell(r)} | {_md(v.get('rule', ''))} |")
    if not rows:
        return ""
    return ("\n| claim over models (test) | models | outcome; effect [95% CI]; p | stated test |\n|---|---|---|---|\n"
            + "\n".join(rows) + "\n")


def table(recs: list[dict[str, Any]]) -> str:
    present = {r["model"] for r in recs if r.get("model") is not None}
    models = [m for m in ORDER if m in present] + sorted(present - set(ORDER))
    rows: dict[tuple[str, str], dict[str, dict]] = {}
    for r in recs:
        if r.get("layer") is not None or r.get("role") != "claim" or r.get("model") is None:
            continue
        test = r["test_id"].split("::")[-1].split("[")[0]
        param = r["test_id"].split("[", 1)[1].rstrip("]") if "[" in r["test_id"] else ""
        for m in models:  # the parameter id minus the model name: e.g. "contrast"
            param = param.replace(m, "").strip("-")
        rows.setdefault((r["claim"], f"{test}[{param}]" if param else test), {})[r["model"]] = r
    out = ["| claim (test) | " + " | ".join(models) + " | differs |", "|---" * (len(models) + 2) + "|"]
    for (claim, test), by in sorted(rows.items()):
        outs = {by[m]["outcome"] for m in models if m in by and by[m]["outcome"] != "skipped"}
        diff = "**yes**" if len(outs) > 1 else ""
        out.append(f"| {claim} (`{test}`) | " + " | ".join(cell(by[m]) if m in by else "n/a" for m in models)
                   + f" | {diff} |")
    return "\n".join(out) + "\n" + between(recs)


def main(argv: list[str]) -> int:
    if not argv:
        sys.exit(__doc__)
    sys.stdout.write(table(load(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
