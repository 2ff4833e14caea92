"""Reproduce the reviewer's lesion defects (issue 27) on main's rule, before anything changes.

Uses main's own structured null (``tests/test_calibration.py::lesion_layer``: label-free activations, heavy-tailed output
weights, random size-matched sets, main's ``side_numbers`` with its Shapiro-switched tail) and reports:
1. the SD of the selected set's mean-ablation effect across null runs against the random-set null's SD within a run, and
   the per-side rejection rates at 0.05 and 0.05/30 (claimed direction) and the opposite direction at 0.05;
2. how the decision at 0.05/30 moves with the draw budget (100 / 200 / 600 random sets, same data and first draws),
   and how often the 1/(n+1) floor or the normal tail decided.
Run: ``flock /tmp/mechclaims-heavy.lock nice -n 5 python scripts/lesion_repro_defects.py [n_runs]``.
"""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

from mechclaims.calibrate.bound import clopper_pearson
from mechclaims.stats.lesion_decision import side_numbers

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("tc", ROOT / "tests" / "test_calibration.py")
tc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tc)
A, L = 0.05, 0.05 / 30


def run(rule: str, n_runs: int, n_max: int = 200) -> dict[str, np.ndarray]:
    rec: dict[str, list] = {k: [] for k in ("eff", "null_sd", "p", "p_opp", "normal", "n_sel")}
    for i in range(n_runs):
        sides = tc.lesion_layer(np.random.default_rng([7, i]), planted=False, rule=rule, n_max=n_max, seed=i)
        for s in sides.values():
            if s.n_selected == 0:
                for k in rec:
                    rec[k].append(np.nan)
                continue
            n = side_numbers(s, L, 0.1, 10)
            rec["eff"].append(n["effect"]), rec["null_sd"].append(float(np.std(s.null, ddof=1)))
            rec["p"].append(n["p"]), rec["p_opp"].append(n["p_opposite"]), rec["normal"].append(n["normal_tail"])
            rec["n_sel"].append(s.n_selected)
    return {k: np.asarray(v, float) for k, v in rec.items()}


def rate(k: int, n: int) -> str:
    lo, hi = clopper_pearson(k, n)
    return f"{k}/{n} = {k / n:.4f} [CP {lo:.4f}, {hi:.4f}]" if n else "0/0"


def main(n_runs: int) -> None:
    t0 = time.time()
    for rule in ("contribution", "contrast"):
        r = run(rule, n_runs)
        ok = np.isfinite(r["eff"])
        n = int(ok.sum())
        print(f"\n== rule {rule}: {n_runs} null layers, {2 * n_runs} sides, testable (non-empty) sides {n}")
        if not n:
            continue
        e, p, po = r["eff"][ok], r["p"][ok], r["p_opp"][ok]
        print(f"SD of the selected set's effect across runs: {np.std(e, ddof=1):.3f}; mean within-run random-set null "
              f"SD: {np.mean(r['null_sd'][ok]):.3f}")
        print(f"per side, lowers,  at 0.05:    {rate(int(np.sum((e < 0) & (p <= A))), n)}")
        print(f"per side, lowers,  at 0.05/30: {rate(int(np.sum((e < 0) & (p <= L))), n)}")
        print(f"per side, opposite at 0.05:    {rate(int(np.sum(po <= A)), n)}")
        print(f"per side, opposite at 0.05/30: {rate(int(np.sum(po <= L)), n)}")
        print(f"normal tail used: {np.mean(r['normal'][ok]):.3f}")
    # 2. the draw budget: same data and the same first draws, 100 / 200 / 600 random sets
    m = max(200, n_runs // 4)
    dec = {}
    for b in (100, 200, 600):
        r = run("contribution", m, n_max=b)
        dec[b] = (r["p"] <= L) | (r["p_opp"] <= L)
        print(f"budget {b}: sides decided at 0.05/30 (either tail) {np.nansum(dec[b])}/{np.isfinite(r['p']).sum()}; "
              f"normal tail used {np.nanmean(r['normal']):.3f}; p == 1/(n+1) floor and <= 0.05/30: "
              f"{int(np.sum(np.isclose(np.fmin(r['p'], r['p_opp']), 1 / (b + 1)) & (np.fmin(r['p'], r['p_opp']) <= L)))}")
    for a, b in ((100, 200), (200, 600), (100, 600)):
        print(f"decision differs between budgets {a} and {b}: {int(np.sum(dec[a] != dec[b]))} of {dec[a].size} sides")
    print(f"\ntime {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
