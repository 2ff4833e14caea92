"""Benchmark: the claim suite against its floor and against the straightforward per-notebook way.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/bench.py``). Prints one table measured in one run:
cold start (GGUF conversion included), warm load, the floor (imports + warm load + one batched forward pass over
all stimuli), the whole claim suite (wall time and peak RSS), per-claim time (from summary.json), and the
straightforward way (each stimulus set its own process, loading the model and running unbatched forward passes
with output_hidden_states, as the original notebooks do). The straightforward column counts only imports, the load
and the forward passes, not the notebooks' statistics, so the suite/straightforward ratio is conservative. Timings live here, never in a timed test.
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


def run(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (GB) of one child process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out, _ = p.communicate()
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # max over children so far, in GB
    if p.returncode not in (0,):
        print(out[-2000:])
    return wall, rss, out


def all_texts() -> dict[str, list[str]]:
    """Every text the claims feed the model, per analysis."""
    sets: dict[str, list[str]] = {}
    for name in sorted(os.listdir(FIXTURES)):
        p = FIXTURES / name
        if p.suffix == ".jsonl":
            texts = []
            for line in p.read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    rec = json.loads(line)
                    texts += [v for v in rec.values() if isinstance(v, str) and len(v) > 15 and " " in v]
            sets[p.stem] = texts
        elif p.suffix == ".json" and "categories" in p.stem:
            d = json.loads(p.read_text())
            words = [w for ws in d.get("words", d.get("categories_words", {})).values() for w in ws] \
                if isinstance(d.get("words"), dict) else []
            sets[p.stem] = [d.get("template", "The next word is {word}").format(word=w) for w in words]
    return sets


FLOOR = """
import json, sys, time
t = time.perf_counter()
from mechclaims.models import load_model
from mechclaims.capture import encode, forward_batches
lm = load_model("smollm2-135m")
sets = json.loads(sys.stdin.read())
n = 0
for name, texts in sets.items():
    ids = [x[:256] for x in encode(lm, texts)]
    for _ in forward_batches(lm, ids, batch_size=32):
        n += 1
print("FLOOR", time.perf_counter() - t, n)
"""

NAIVE = """
import json, sys, time
t = time.perf_counter()
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from mechclaims.models import smollm2_dir
d = smollm2_dir()
tok = AutoTokenizer.from_pretrained(d); model = AutoModelForCausalLM.from_pretrained(d).eval()
texts = json.loads(sys.stdin.read())
with torch.no_grad():
    for s in texts:  # one prompt at a time, every hidden state kept, as a notebook does
        out = model(**tok(s, return_tensors="pt"), output_hidden_states=True)
        hs = torch.stack(out.hidden_states)
print("NAIVE", time.perf_counter() - t)
"""


def piped(code: str, payload: object) -> tuple[float, float]:
    t = time.perf_counter()
    p = subprocess.run([PY, "-c", code], cwd=ROOT, input=json.dumps(payload), capture_output=True, text=True)
    if p.returncode:
        print(p.stderr[-2000:])
    return time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as cold:
        w, _, _ = run([PY, "-m", "mechclaims", "prepare", "--cache-dir", cold])
        rows.append(("1 cold start (GGUF conversion, fresh cache)", w, None))
    w, _, _ = run([PY, "-c", "from mechclaims.models import load_model; load_model('smollm2-135m')"])
    rows.append(("2 warm load (imports + load)", w, None))
    sets = all_texts()
    floor, _ = piped(FLOOR, sets)
    rows.append((f"3 floor: imports + warm load + forward passes ({sum(map(len, sets.values()))} texts)", floor, None))
    art = Path(tempfile.mkdtemp())
    w, rss, out = run([PY, "-m", "pytest", "claims", "-q", "-p", "no:randomly", "--artifacts-dir", str(art)])
    suite = w
    rows.append(("4 whole claim suite (smollm2-135m)", w, rss))
    try:
        recs = json.loads((art / "summary.json").read_text())["records"]
        per: dict[str, float] = {}
        for r in recs:
            per[r["claim"]] = per.get(r["claim"], 0.0) + r["duration_s"]
        for c, s in sorted(per.items()):
            rows.append((f"5   claim {c} (sum of test durations)", s, None))
    except (OSError, KeyError, ValueError):
        pass
    naive_total = 0.0
    for name, texts in sets.items():
        w, _ = piped(NAIVE, texts)
        naive_total += w
        rows.append((f"6   straightforward: {name} ({len(texts)} texts, own process)", w, None))
    rows.append(("6 straightforward total", naive_total, None))
    print(f"\n{'measurement':<68} {'seconds':>8} {'peak RSS GB':>12}")
    for name, s, r in rows:
        print(f"{name:<68} {s:>8.1f} {'' if r is None else f'{r:.2f}':>12}")
    print(f"\nsuite/straightforward = {suite / naive_total:.2f}   suite/floor = {suite / floor:.2f}")
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
