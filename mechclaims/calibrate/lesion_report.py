"""The lesion calibration's full count: ``python -m mechclaims.calibrate.lesion [n_testable]`` (under the heavy lock).

Writes ``calibration/lesion.json`` and ``calibration/lesion.md``: per rule, side and decider the claimed-direction and
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
    argv = sys.argv[1:] if argv is None else argv
    n = int(argv[0]) if argv else C.runs_for(C.ALPHA)
    small = max(min(n, 1000), n // 10)  # the pair-ablation sizes and the budget agreement
    n_old, n_pow, n_pow_sel = max(50, min(2000, n // 20)), max(20, min(400, n // 100)), max(10, min(60, n // 600))
    t0, out = time.time(), {"alpha": C.ALPHA, "n_testable": n, "structure": {
        "D": LD.D, "N_TRAIN": LD.N_TRAIN, "N_TEST": LD.N_TEST, "K": LD.K, "NORM_GAP": LD.NORM_GAP, "PRIOR": LD.PRIOR,
        "THETA_LFC": C.THETA_LFC, "N_LFC": C.N_LFC, "N_PLANTED": LD.N_PLANTED, "DELTA": LD.DELTA}}

    def stamp(key: str, value) -> None:
        out[key] = value
        out.setdefault("seconds", {})[key] = round(time.time() - t0, 1)
        print(f"[{time.time() - t0:7.0f} s] {key}: {json.dumps(value)[:400]}", flush=True)

    # 1. the recommended decider at full count, the claim's mean ablation
    raw: list = []
    stamp("sizes_pairflip", [_row(s) for s in C.sizes(n, 0, rates=raw, decider="pairflip")])
    stamp("counts_pairflip", raw)
    # 2. main's random-set rule and the per-side precondition on the same null (reported: the defects)
    stamp("old_rule", [C.side_rates(r, s, n_old, 1, decider="pairflip", with_old=True) for r in C.RULES for s in LD.SIDES])
    # 3. pair-mean ablation, the training-label selection null (fewer runs: documented, not recommended)
    raw = []
    stamp("sizes_pairflip_pair_ablation", [_row(s) for s in C.sizes(small, 2, rates=raw, decider="pairflip",
                                                                      ablation="pair")])
    raw = []
    stamp("sizes_selection", [_row(s) for s in C.sizes(max(min(n, 1000), n // 20), 3, rates=raw, decider="selection")])
    stamp("counts_selection", raw)
    # 4. power and the minimum detectable effect (80%), both deciders
    for d, runs in (("pairflip", n_pow), ("selection", n_pow_sel)):
        rows = [C.power(t, r, runs, 4, decider=d) for r in C.RULES for t in GRID]
        stamp(f"power_{d}", rows)
        stamp(f"mde_{d}", {r: C.mde([x for x in rows if x["rule"] == r]) for r in C.RULES})
    # 5. two draw budgets: null runs and planted runs near the MDE
    stamp("agreement_null", [C.agreement(r, "her", small, (C.N_MAX[d], 2 * C.N_MAX[d] + 1), 5, decider=d)
                             for d in C.DECIDERS for r in C.RULES])
    stamp("agreement_planted", [C.power(out["mde_pairflip"][r] if out["mde_pairflip"][r] == out["mde_pairflip"][r]
                                        else 1.0, r, n_pow, 6, budgets=(2 * C.N_MAX["pairflip"] + 1,))
                                for r in C.RULES])
    out["seconds_total"] = round(time.time() - t0, 1)
    OUT.mkdir(exist_ok=True)
    (OUT / "lesion.json").write_text(json.dumps(out, indent=1, default=float) + "\n", encoding="utf-8")
    (OUT / "lesion.md").write_text(markdown(out), encoding="utf-8")
    print(markdown(out))
    return out


def markdown(out: dict) -> str:
    lines = [f"# Lesion calibration (alpha {out['alpha']:.5g}; {out['seconds_total']:.0f} s)", "",
             "| decider | rate | k / testable | rate | CP 95% upper | limit | ok |", "|---|---|---|---|---|---|---|"]
    for key in ("sizes_pairflip", "sizes_pairflip_pair_ablation", "sizes_selection"):
        for r in out.get(key, []):
            lines.append(f"| {key} | {r['name']} | {r['k']} / {r['n']} | {r['rate']:.5f} | {r['cp_upper']:.5f} | "
                         f"{r['limit']:.5f} | {r['ok']} |")
    for d in C.DECIDERS:
        lines += ["", f"Power ({d}), layer supported with both sides planted at theta logits:", "",
                  "| rule | theta | supported / n | power | 95% CI |", "|---|---|---|---|---|"]
        for r in out.get(f"power_{d}", []):
            lines.append(f"| {r['rule']} | {r['theta']:g} | {r['supported']} / {r['n']} | {r['power']:.3f} | "
                         f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] |")
        lines.append(f"\nMDE (80%): {out.get(f'mde_{d}')}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
