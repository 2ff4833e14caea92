"""One HTML report (with the cross-model panel) from the summary.json files of separate runs, offline.

    python scripts/cross_model_report.py -o report.html SMOLLM2/summary.json GEMMA/summary.json [MINILM/summary.json ...]

What ``--model smollm2-135m --model gemma3-270m`` writes in one session, built from runs made one model at a time
(or from a two-model run plus a third model's). The records are merged: a test id present in two summaries keeps the
later file's record, unless that one was skipped and the earlier one was not (the two-model claim is skipped in a
one-model run). The models are listed in file order, the outcomes per claim and model recomputed, and the report
rendered by the same code as a session's report.html. No model is loaded and nothing is recomputed: the numbers are
the summaries'. Figures are embedded from the paths the summaries name, where those files still exist (a missing one
shows as "missing figure"). An environment key whose value differs between the summaries shows every value.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mechclaims.report.html import write_html  # noqa: E402
from mechclaims.report.summary import build_outcomes  # noqa: E402


def merge(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    models: list[str] = []
    records: dict[str, dict[str, Any]] = {}
    claims: dict[str, Any] = {}
    env: dict[str, list[str]] = {}
    drift: list[dict[str, Any]] | None = None
    for s in summaries:
        models += [str(m) for m in s.get("models") or [] if str(m) not in models]
        for r in s.get("records") or []:
            tid, old = str(r.get("test_id")), records.get(str(r.get("test_id")))
            if old is None or r.get("outcome") != "skipped" or old.get("outcome") == "skipped":
                records[tid] = r  # a skip (e.g. the two-model claim in a one-model run) never hides a result
        claims.update(s.get("claims") or {})
        for k, v in (s.get("environment") or {}).items():
            if str(v) not in env.setdefault(k, []):
                env[k].append(str(v))
        if "drift" in s:
            drift = (drift or []) + list(s.get("drift") or [])
    recs = sorted(records.values(), key=lambda r: str(r.get("test_id")))
    out = {"environment": {k: " / ".join(v) for k, v in env.items()}, "models": models, "records": recs,
           "outcomes": build_outcomes(recs), "claims": claims}
    if drift is not None:
        out["drift"] = drift
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("summaries", nargs="+", help="summary.json files (<artifacts>/latest/summary.json)")
    ap.add_argument("-o", "--output", required=True, help="the report.html to write")
    ap.add_argument("--summary-out", help="also write the merged summary.json here")
    a = ap.parse_args(argv)
    loaded = []
    for p in a.summaries:
        try:
            d = json.loads(Path(p).read_text())
            if not isinstance(d.get("records"), list):
                raise KeyError("records")
        except (OSError, ValueError, KeyError, AttributeError) as e:
            ap.error(f"{p} is not a readable mechclaims summary.json ({e!r}); pass <artifacts>/latest/summary.json")
        loaded.append(d)
    merged = merge(loaded)
    if a.summary_out:
        Path(a.summary_out).write_text(json.dumps(merged, indent=1))
    out = write_html(merged, Path(a.output))
    print(f"{out}: {len(merged['records'])} claim tests on {', '.join(merged['models'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
