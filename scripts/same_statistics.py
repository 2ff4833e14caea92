"""Are two runs' statistics byte-identical? ``python scripts/same_statistics.py RUN_A/summary.json RUN_B/summary.json``

Compares, test by test, the outcome and every recorded verdict (statistic, p, effect, CI, null summary, details),
serialized as JSON, so a difference in the last bit of a float counts. Timings, artifact paths and drift notes are
left out. Exits 1 and lists the first differences when anything differs; this is how the README's repeatability
claims (two runs, serial vs xdist) were checked.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def statistics(path: str) -> dict[str, str]:
    recs = json.loads(Path(path).read_text())["records"]
    return {r["test_id"]: json.dumps({"outcome": r["outcome"], "verdicts": r["verdicts"]}, sort_keys=True)
            for r in recs}


def main(a: str, b: str) -> int:
    sa, sb = statistics(a), statistics(b)
    only = sorted(set(sa) ^ set(sb))
    diff = [t for t in sorted(set(sa) & set(sb)) if sa[t] != sb[t]]
    print(f"{len(set(sa) & set(sb))} tests in both; {len(diff)} differ; {len(only)} in one run only")
    for t in diff[:10]:
        x, y = json.loads(sa[t]), json.loads(sb[t])
        print(f"  {t}:\n    A {json.dumps(x)[:300]}\n    B {json.dumps(y)[:300]}")
    for t in only[:10]:
        print(f"  only in {'A' if t in sa else 'B'}: {t}")
    return 1 if diff or only else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
