"""Session outputs: summary.json (one record per claim test) and the compact terminal table."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _key_stat(rec: dict[str, Any]) -> str:
    vs = rec.get("verdicts") or []
    if not vs:
        return "-"
    v = vs[0]
    s = f"{v['statistic_name']}={v['statistic']:.3g}" if isinstance(v.get("statistic"), (int, float)) else "-"
    if v.get("p") is not None:
        s += f" p={v['p']:.3g}"
    return s


def terminal_table(records: list[dict[str, Any]]) -> list[str]:
    """Claim x model rows: layers passed out of tested, key statistic of the first layer, overall verdict."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["claim"], str(r["model"])), []).append(r)
    lines = [f"{'claim':<34} {'model':<16} {'passed':>8}  {'xfail':>5}  {'key statistic (first)':<34} verdict"]
    for (claim, model), rs in sorted(groups.items()):
        n = len(rs)
        ok = sum(r["outcome"] == "passed" for r in rs)
        xf = sum(r["outcome"] == "xfailed" for r in rs)
        bad = [r for r in rs if r["outcome"] in ("failed", "xpassed")]
        if bad:
            verdict = "FAILED"
        elif ok == n:
            verdict = "holds"
        elif ok + xf == 0:
            verdict = "skipped"
        elif ok == 0:
            verdict = "refuted (recorded, expected)"
        else:
            verdict = f"holds at {ok}, refuted at {xf} (recorded)"
        lines.append(f"{claim[:34]:<34} {model[:16]:<16} {ok:>3}/{n:<4}  {xf:>5}  {_key_stat(rs[0])[:34]:<34} {verdict}")
    return lines


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, allow_nan=True))
    os.replace(tmp, path)


def write_outputs(records: list[dict[str, Any]], settings: Any, pool: Any) -> dict[str, str]:
    """Write summary.json (records sorted by test id, so serial and xdist runs match) and the HTML report."""
    import numpy
    import torch
    import transformers

    recs = sorted(records, key=lambda r: r["test_id"])
    summary = {"environment": {"torch": str(torch.__version__), "transformers": str(transformers.__version__),
                               "numpy": numpy.__version__, "device": settings.device, "dtype": settings.dtype,
                               "seed": settings.seed, "permutations": settings.permutations},
               "models": settings.models, "records": recs,
               "model_fingerprints": {n: m.fingerprint for n, m in pool.loaded().items()},
               "claims": {r["claim"]: r.get("statement", {}) for r in recs if r.get("statement")},
               "drift": [{"test_id": r["test_id"], **d} for r in recs for d in r.get("drift", [])]}
    out = Path(settings.artifacts)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "summary.json", summary)
    paths = {"summary": str(out / "summary.json")}
    try:
        from .html import write_html
        paths["report"] = str(write_html(summary, out / "report.html"))
    except ImportError:
        pass
    return paths
