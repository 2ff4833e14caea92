"""``python -m mechclaims.calibrate [--runs N] [--only NAME ...] [--out DIR]`` (``make calibrate``): every decision
rule's rejection rate at the alpha where it decides, under structured nulls, with its Clopper-Pearson bound.

Each ``mechclaims/calibrate/<claim>.py`` with a ``sizes(n_runs=None, seed=0)`` function contributes rows
(:class:`mechclaims.calibrate.bound.Size`); without ``--runs`` each uses its full count (enough runs that a rule
rejecting at exactly its alpha can show a Clopper-Pearson bound <= 1.5 x alpha: about 20,000 at 0.05/30); the small
versions in ``make test`` use their own counts. Writes ``calibration.json``
and ``calibration.md`` (the committed table) and exits 1 when some bound exceeds 1.5 x its alpha.
"""
from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

import mechclaims.calibrate as pkg
from mechclaims.calibrate.bound import Size

SKIP = {"bound", "__main__"}


def modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name not in SKIP)


def table(rows: list[dict]) -> str:
    head = ("| claim / component | alpha (deciding) | runs | rejections | rate | CP 95% upper | limit (1.5 x alpha) "
            "| ok |\n|---|---|---|---|---|---|---|---|")
    lines = [f"| {r['name']} | {r['alpha']:.4g} | {r['n']:,} | {r['k']} | {r['rate']:.5f} | {r['cp_upper']:.5f} | "
             f"{r['limit']:.5f} | {'yes' if r['ok'] else '**no**'} |" for r in rows]
    return "\n".join([head, *lines])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mechclaims.calibrate")
    ap.add_argument("--only", action="append", default=None, help=f"one of {', '.join(modules())}")
    ap.add_argument("--runs", type=int, default=None, help="runs per rate (default: each module's full count)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="calibration", help="folder for calibration.json and calibration.md")
    a = ap.parse_args(argv)
    rows, timing = [], {}
    for name in a.only or modules():
        mod = importlib.import_module(f"mechclaims.calibrate.{name}")
        if not hasattr(mod, "sizes"):
            continue
        t = time.perf_counter()
        sizes: list[Size] = mod.sizes(n_runs=a.runs, seed=a.seed)
        timing[name] = round(time.perf_counter() - t, 1)
        for s in sizes:
            rows.append(s.row())
            print(s.explain(), flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps({"rows": rows, "seconds": timing, "runs": a.runs}, indent=1))
    (out / "calibration.md").write_text(f"# Calibration at the deciding alpha (seed {a.seed}, runs {a.runs or 'full'})\n\n"
                                        + table(rows) + "\n\nSeconds per claim: " + json.dumps(timing) + "\n")
    bad = [r["name"] for r in rows if not r["ok"]]
    print(f"{len(rows)} rates; {len(bad)} above 1.5 x alpha" + (f": {bad}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
