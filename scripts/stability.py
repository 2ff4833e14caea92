"""Outcome stability (issue 28, item 3): rerun the claims over seeds and draw budgets and compare each test id's
outcome with its recorded one.

    python scripts/stability.py --model smollm2-135m [--seeds 5] [--budgets 1000,2000] [-k EXPR] [--out docs/stability]

Each run is a real pytest process (``--mc-seed s --mc-permutations b``, statistics cache off, its own baselines and
artifacts under a temporary folder): the seed moves every split, shuffle, bootstrap and null draw; the budget moves
the number of null draws. For every test id: the share of runs whose outcome equals the recorded one
(``claims/expected``; default supported / failed). An outcome holding in fewer than 80% of the runs is ``unstable``,
listed with the proportions. Writes ``<out>/<model>.json`` and ``<out>/<model>.md``.
Falsified (for a claim) by a recorded outcome that holds in < 80% of the runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mechclaims.verdict.expected import expected_for, load_expected  # noqa: E402

THRESHOLD = 0.8


def run_once(model: str, seed: int, budget: int, k: str | None, tmp: Path) -> dict[str, str]:
    art = tmp / f"s{seed}-b{budget}"
    cmd = [sys.executable, "-m", "pytest", "claims", "--model", model, "--seed", str(seed), "--permutations",
           str(budget), "--statistics-cache", "off", "--artifacts-dir", str(art), "--baselines-dir",
           str(art / "baselines"), "-q", "-p", "no:randomly", *(["-k", k] if k else [])]
    print(f"[stability] {model} seed {seed} draws {budget} ...", flush=True)
    subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "CI": "1"})
    f = art / "summary.json"
    if not f.exists():
        print(f"[stability] no summary for seed {seed}, draws {budget}", flush=True)
        return {}
    recs = json.loads(f.read_text())["records"]
    return {r["test_id"]: r["outcome"] for r in recs if r.get("outcome") not in (None, "error", "skipped")}


def recorded(test_id: str, role: str) -> str:
    module = ROOT / test_id.split("::")[0]
    return expected_for(load_expected(str(module)), test_id.split("::")[-1], role)[0]


def write(a: argparse.Namespace, runs: list[dict[str, str]], plan: list[tuple[int, int]]) -> list[dict]:
    """The table over the runs so far (``docs/stability/<model>.{json,md}``); returns its rows."""
    ids = sorted({t for r in runs for t in r})
    rows = []
    for t in ids:
        got = [r[t] for r in runs if t in r]
        role = "control" if any(o in ("passed", "failed") for o in got) else "claim"
        rec = recorded(t, role)
        share = sum(o == rec for o in got) / len(got)
        rows.append({"test_id": t, "recorded": rec, "runs": len(got), "share_recorded": share,
                     "outcomes": dict(Counter(got)), "stable": share >= THRESHOLD})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    done = [f"seed {s} draws {b}" for s, b in plan[:len(runs)]]
    (out / f"{a.model}.json").write_text(json.dumps({"model": a.model, "seeds": a.seeds, "budgets": a.budgets,
                                                     "k": a.k, "threshold": THRESHOLD, "runs_done": done,
                                                     "runs_planned": len(plan), "rows": rows}, indent=1))
    lines = [f"# Outcome stability: {a.model} ({len(runs)} of {len(plan)} runs: {a.seeds} seeds x draws {a.budgets}"
             f"{', -k ' + a.k if a.k else ''})", "", f"Runs done: {', '.join(done)}.", "",
             "| test id | recorded | share of runs | outcomes | stable |", "|---|---|---|---|---|"]
    lines += [f"| `{r['test_id'].split('::')[-1]}` | {r['recorded']} | {r['share_recorded']:.2f} ({r['runs']}) | "
              f"{', '.join(f'{k} {v}' for k, v in r['outcomes'].items())} | {'yes' if r['stable'] else '**unstable**'} |"
              for r in rows]
    (out / f"{a.model}.md").write_text("\n".join(lines) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/stability.py")
    ap.add_argument("--model", required=True)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budgets", default="1000,2000")
    ap.add_argument("-k", default=None)
    ap.add_argument("--out", default=str(ROOT / "docs" / "stability"))
    a = ap.parse_args(argv)
    runs: list[dict[str, str]] = []
    plan = [(s, int(b)) for s in range(a.seeds) for b in a.budgets.split(",")]  # both budgets per seed first
    with tempfile.TemporaryDirectory() as tmp:
        for s, b in plan:
            runs.append(run_once(a.model, s, b, a.k, Path(tmp)))
            rows = write(a, runs, plan)  # after every run: a cut-short run still leaves its table
    bad = [r for r in rows if not r["stable"]]
    print(f"[stability] {len(rows)} test ids, {len(bad)} unstable; {Path(a.out) / (a.model + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
