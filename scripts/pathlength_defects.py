"""Reproduce the review's path-length defects on the OLD rule (mechclaims.stats.pathlength.path_length_claim):
the within-document-permutation Freedman-Lane p under AR(1) tokens, and the whole rule under a shared non-linear
position trend. Prints one line per cell: rejections / runs, rate, Clopper-Pearson 95% upper bound.

    OMP_NUM_THREADS=1 python scripts/pathlength_defects.py [runs]
"""
from __future__ import annotations

import sys
import time

import numpy as np

from mechclaims.calibrate.bound import clopper_pearson
from mechclaims.calibrate.pathlength_null import simulate
from mechclaims.stats.pathlength import path_length_claim


def cell(runs: int, seed: int, **kw) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    fl = jk = rule = 0
    for i in range(runs):
        d = simulate(rng, **kw)
        v = path_length_claim(d.x[:, None], d.y, d.y, d.pos, d.doc, n_perm=199, seed=i)
        fl += v.p < 0.05
        jk += not (v.effect_ci[0] <= 0 <= v.effect_ci[1])
        rule += v.passed
    return fl, jk, rule


def main(runs: int) -> None:
    print(f"old rule, {runs} runs per cell, 199 permutations, alpha 0.05; k/n rate [CP 95% upper]")
    grid = [dict(trend="none", G=12, min_len=150, max_len=150, amplitude=0.0)]  # test_calibration's documents()
    grid += [dict(trend="none"), dict(trend="exp8", amplitude=1.0), dict(trend="exp8"), dict(trend="rise60")]
    for j, g in enumerate(grid):
        for phi in (0.0, 0.5, 0.9):
            t = time.perf_counter()
            res = cell(runs, 1000 * j + int(10 * phi), phi=phi, **g)
            s = "  ".join(f"{name} {k}/{runs} {k / runs:.3f} [{clopper_pearson(k, runs)[1]:.3f}]"
                          for name, k in zip(("FL", "JK", "rule"), res))
            print(f"{g} phi {phi}: {s}  ({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 400)
