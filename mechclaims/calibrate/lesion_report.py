"""The lesion calibration's full count: ``python -m mechclaims.calibrate.lesion_report [n_testable]`` (under the heavy lock).

Writes ``calibration/lesion_<part>.json`` and ``.md``: per rule, side and decider the claimed-direction and
opposite-direction rates at 0.05 / 30 with their Clopper-Pearson bounds and testable counts (other side planted); main's
random-set rule on the same null (the defect, reported); the power curve and the minimum detectable effect; outcome
agreement at two draw budgets; the time taken. Every number in the lesion note comes from this file.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from . import lesion as C
from . import lesion_data as LD
from .bound import Size

OUT = Path(__file__).resolve().parents[2] / "calibration"
GRID = (0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 2.0, 3.0)


def _row(s: Size) -> dict:
    return s.row() | {"explain": s.explain()}


def main(argv: list[str] | None = None) -> dict:
    """``[n_testable] [part]``: part "sizes-contrast" / "sizes-contribution" (the recommended decider at full count),
    "extras" (main's rule beside it, power, two budgets), "pairflip" (the three), "selection" (the training-label
    null and the pair-mean ablation, fewer runs) or "all" (default). Each part writes
    ``calibration/lesion_<part>.json`` and ``.md``; :func:`merge` joins them into ``calibration/lesion.md``."""
    argv = sys.argv[1:] if argv is None else argv
    n = int(argv[0]) if argv else C.runs_for(C.ALPHA)
    part = argv[1] if len(argv) > 1 else "all"
    abl = argv[2] if len(argv) > 2 else C.ABLATION  # the pair-flip decider's ablation: "pair" (the claim's) or "mean"
    small = max(min(n, 1000), n // 10)  # the pair-ablation sizes and the pair-flip budget agreement
    n_old, n_pow = max(50, min(2000, n // 20)), max(20, min(400, n // 100))
    n_sel, n_pow_sel = max(min(n, 500), n // 40), max(10, min(30, n // 1000))
    t0, out = time.time(), {"alpha": C.ALPHA, "n_testable": n, "part": f"{part}_{abl}", "structure": {
        "D": LD.D, "N_TRAIN": LD.N_TRAIN, "N_TEST": LD.N_TEST, "K": LD.K, "NORM_GAP": LD.NORM_GAP, "PRIOR": LD.PRIOR,
        "THETA_LFC": C.THETA_LFC, "N_LFC": C.N_LFC, "N_PLANTED": LD.N_PLANTED, "DELTA": LD.DELTA}}

    def stamp(key: str, value) -> None:
        out[key] = value
        out.setdefault("seconds", {})[key] = round(time.time() - t0, 1)
        print(f"[{time.time() - t0:7.0f} s] {key}: {json.dumps(value, default=float)[:600]}", flush=True)

    for rule in C.RULES:  # the full count, one rule per part so that the heavy lock is held for less at a time
        if part in (f"sizes-{rule}", "pairflip", "all"):
            raw: list = []
            stamp(f"sizes_pairflip_{rule}_{abl}", [_row(s) for s in C.sizes(n, 0, rates=raw, decider="pairflip",
                                                                              rules=(rule,), ablation=abl)])
            stamp(f"counts_pairflip_{rule}_{abl}", raw)
    if part in ("extras", "pairflip", "all"):
        if abl == "mean":  # main's rule and precondition beside ours (once)
            stamp("old_rule", [C.side_rates(r, s, n_old, 1, decider="pairflip", with_old=True)
                               for r in C.RULES for s in LD.SIDES])
        rows = [C.power(t, r, n_pow, 4, decider="pairflip", ablation=abl) for r in C.RULES for t in GRID]
        stamp(f"power_pairflip_{abl}", rows)
        stamp(f"mde_pairflip_{abl}", {r: C.mde([x for x in rows if x["rule"] == r]) for r in C.RULES})
        stamp(f"agreement_null_pairflip_{abl}", [C.agreement(r, "her", small, (C.N_MAX["pairflip"],
                                                                                2 * C.N_MAX["pairflip"] + 1), 5,
                                                             ablation=abl) for r in C.RULES])
        mde = {r: (v if v == v else 1.0) for r, v in out[f"mde_pairflip_{abl}"].items()}
        stamp(f"agreement_planted_pairflip_{abl}", [C.power(mde[r], r, n_pow, 6, ablation=abl,
                                                            budgets=(2 * C.N_MAX["pairflip"] + 1,)) for r in C.RULES])
    if part in ("selection", "all"):
        raw = []
        stamp("sizes_selection", [_row(s) for s in C.sizes(n_sel, 3, rates=raw, decider="selection")])
        stamp("counts_selection", raw)
        rows = [C.power(t, r, n_pow_sel, 4, decider="selection") for r in C.RULES for t in GRID]
        stamp("power_selection", rows)
        stamp("mde_selection", {r: C.mde([x for x in rows if x["rule"] == r]) for r in C.RULES})
        stamp("agreement_null_selection", [C.agreement(r, "her", n_sel, (C.N_MAX["selection"],
                                                                          2 * C.N_MAX["selection"] + 1), 5,
                                                       decider="selection") for r in C.RULES])
    out["seconds_total"] = round(time.time() - t0, 1)
    OUT.mkdir(exist_ok=True)
    (OUT / f"lesion_{part}_{abl}.json").write_text(json.dumps(out, indent=1, default=float) + "\n", encoding="utf-8")
    (OUT / f"lesion_{part}_{abl}.md").write_text(markdown(out), encoding="utf-8")
    print(markdown(out))
    return out


def markdown(out: dict) -> str:
    lines = [f"# Lesion calibration (alpha {out['alpha']:.5g}; {out.get('seconds_total', 0):.0f} s)", "",
             "| table | rate | k / testable | rate | CP 95% upper | limit | ok |", "|---|---|---|---|---|---|---|"]
    for key in sorted(k for k in out if k.startswith("sizes_")):
        for r in out[key]:
            lines.append(f"| {key} | {r['name']} | {r['k']} / {r['n']} | {r['rate']:.5f} | {r['cp_upper']:.5f} | "
                         f"{r['limit']:.5f} | {r['ok']} |")
    for key in sorted(k for k in out if k.startswith("power_")):
        lines += ["", f"{key}: layer supported with both sides planted at theta logits:", "",
                  "| rule | theta | supported / n | power | 95% CI | outcomes |", "|---|---|---|---|---|---|"]
        for r in out[key]:
            lines.append(f"| {r['rule']} | {r['theta']:g} | {r['supported']} / {r['n']} | {r['power']:.3f} | "
                         f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | {r['outcomes']} |")
        lines.append(f"\nMDE (80%): {out.get(key.replace('power_', 'mde_'))}")
    for key in sorted(k for k in out if k.startswith("agreement_")):
        lines += ["", f"{key}: {json.dumps(out[key], default=float)}"]
    if "old_rule" in out:
        lines += ["", "main's random-set rule and per-side precondition on the same null (testable runs):", ""]
        lines += [f"- {r['rule']} {r['side']}: lowers {r['old_significant']}/{r['testable']}, opposite "
                  f"{r['old_opposite']}/{r['testable']}; per-side precondition failed {r['old_precondition_failed']}, "
                  f"paired sign test failed {r['precondition_failed']}" for r in out["old_rule"]]
    return "\n".join(lines) + "\n"


def merge() -> dict:
    """Join every ``calibration/lesion_<part>.json`` into ``calibration/lesion.json`` and ``lesion.md``."""
    out: dict = {"seconds_total": 0.0}
    for f in sorted(p for p in OUT.glob("lesion_*.json") if not p.name.startswith("lesion_model")):
        part = json.loads(f.read_text(encoding="utf-8"))
        out["seconds_total"] += part.pop("seconds_total", 0.0)
        out.setdefault("seconds_by_part", {})[part.get("part", f.stem)] = part.pop("seconds", {})
        out.update(part)
    (OUT / "lesion.json").write_text(json.dumps(out, indent=1, default=float) + "\n", encoding="utf-8")
    (OUT / "lesion.md").write_text(markdown(out), encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
