"""Compare claim runs across environments: ``python -m mechclaims.report.matrix DIR [DIR ...]``.

Each DIR holds a ``summary.json`` (and optionally a ``status.json`` written by the nox matrix). The first DIR is
the reference. Prints a claims x environments table, then every number that moved beyond tolerance (by how much,
against which tolerance, whether the verdict flipped), writes ``comparison.html`` next to the first DIR, and exits
1 when a verdict flips or a number moves past its tolerance. Rows of a model whose weights differ between the
environments (different weight fingerprint, e.g. a tiny random model initialised differently by another
transformers version) are reported as not comparable and never counted as regressions.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import sys
from pathlib import Path
from typing import Any


def load_env(d: Path) -> dict[str, Any]:
    status = {}
    if (d / "status.json").exists():
        status = json.loads((d / "status.json").read_text())
    env = {"name": status.get("env", d.name), "dir": str(d), "supported": status.get("supported", True),
           "reason": status.get("reason", ""), "records": {}, "environment": {}, "fingerprints": {}}
    s = d / "summary.json"
    if not s.exists():
        env.update(supported=False, reason=env["reason"] or f"no summary.json in {d}")
        return env
    summary = json.loads(s.read_text())
    env["environment"] = summary.get("environment", {})
    env["fingerprints"] = summary.get("model_fingerprints", {})
    env["records"] = {r["test_id"]: r for r in summary.get("records", [])}
    return env


def numbers(rec: dict[str, Any]) -> dict[str, float]:
    """Every reported number of a record, flat (verdict i -> ``v{i}.name``)."""
    out: dict[str, float] = {}
    for i, v in enumerate(rec.get("verdicts", [])):
        pre = f"v{i}." if i else ""
        vals = {v.get("statistic_name", "statistic"): v.get("statistic"), "p": v.get("p")}
        if v.get("effect_name"):
            vals[v["effect_name"]] = v.get("effect")
        vals.update({f"null_{k}": x for k, x in (v.get("null") or {}).items()})
        vals.update(v.get("details") or {})
        out.update({pre + k: x for k, x in vals.items() if isinstance(x, (int, float))})
    return out


def verdict(rec: dict[str, Any] | None) -> str:
    """The test's outcome (supported / confounded / refuted / inconclusive; a control's passed / failed): a change
    between any two of them is a flip, also refuted -> inconclusive, where every verdict "fails" in both. A record
    from before outcomes existed falls back to holds / fails."""
    if rec is None:
        return "absent"
    if rec.get("outcome"):
        return str(rec["outcome"])
    vs = rec.get("verdicts") or []
    if not vs:
        return rec.get("outcome", "?")
    return "holds" if all(v.get("passed") for v in vs) else "fails"


def compare(envs: list[dict[str, Any]], rtol: float = 1e-3, atol: float = 1e-5) -> dict[str, Any]:
    ref = envs[0]
    moved, flips, incomparable = [], [], set()
    for other in envs[1:]:
        if not (ref["supported"] and other["supported"]):
            continue
        for tid, r0 in ref["records"].items():
            r1 = other["records"].get(tid)
            if r1 is None:
                continue
            model = r0.get("model")
            f0, f1 = ref["fingerprints"].get(model), other["fingerprints"].get(model)
            if f0 and f1 and f0 != f1:
                incomparable.add((model, ref["name"], other["name"]))
                continue
            v0, v1 = verdict(r0), verdict(r1)
            if v0 != v1:
                flips.append({"test_id": tid, "claim": r0["claim"], "from_env": ref["name"], "to_env": other["name"],
                              "from": v0, "to": v1})
            n0, n1 = numbers(r0), numbers(r1)
            for k in sorted(set(n0) & set(n1)):
                a, b = n0[k], n1[k]
                if a is None or b is None or (math.isnan(a) and math.isnan(b)):
                    continue
                diff = abs(b - a)
                if not diff <= atol + rtol * abs(a):
                    moved.append({"test_id": tid, "claim": r0["claim"], "number": k, "from_env": ref["name"],
                                  "to_env": other["name"], "from": a, "to": b, "abs": diff, "rtol": rtol, "atol": atol,
                                  "verdict_changed": v0 != v1})
    return {"moved": moved, "flips": flips, "incomparable": sorted(incomparable)}


def table(envs: list[dict[str, Any]]) -> list[str]:
    claims: dict[tuple[str, str], None] = {}
    for e in envs:
        for r in e["records"].values():
            claims[(r["claim"], str(r.get("model")))] = None
    head = f"{'claim':<34} {'model':<14} " + " ".join(f"{e['name'][:18]:>18}" for e in envs)
    lines = [head]
    for claim, model in claims:
        cells = []
        for e in envs:
            if not e["supported"]:
                cells.append("unsupported")
                continue
            rs = [r for r in e["records"].values() if r["claim"] == claim and str(r.get("model")) == model]
            top = [r for r in rs if r.get("layer") is None]  # the claim's model-level test, when it has one
            cells.append(verdict(top[0]) if len(top) == 1 else f"{len(rs)} tests" if rs else "-")
        lines.append(f"{claim[:34]:<34} {model[:14]:<14} " + " ".join(f"{c:>18}" for c in cells))
    for e in envs:
        if not e["supported"]:
            lines.append(f"unsupported {e['name']}: {e['reason']}")
    return lines


def report_lines(envs: list[dict[str, Any]], result: dict[str, Any], limit: int = 40) -> list[str]:
    lines = table(envs)
    for model, a, b in result["incomparable"]:
        lines.append(f"not comparable: {model} has different weights in {a} and {b} (weight fingerprint differs)")
    for f in result["flips"]:
        lines.append(f"VERDICT FLIP: {f['claim']} {f['test_id']}: {f['from']} in {f['from_env']} -> {f['to']} in {f['to_env']}")
    if result["moved"]:
        lines.append(f"{len(result['moved'])} number(s) moved beyond tolerance:")
        for m in result["moved"][:limit]:
            lines.append(f"  {m['claim']} {m['test_id'].split('::')[-1]} {m['number']}: {m['from']:.6g} ({m['from_env']}) -> "
                         f"{m['to']:.6g} ({m['to_env']}), |diff| {m['abs']:.3g} > atol {m['atol']:g} + rtol {m['rtol']:g}*|ref|"
                         f"{'  [verdict changed]' if m['verdict_changed'] else ''}")
        if len(result["moved"]) > limit:
            lines.append(f"  ... and {len(result['moved']) - limit} more (see comparison.json)")
    else:
        lines.append("no number moved beyond tolerance between comparable environments")
    return lines


def write_html(path: Path, lines: list[str]) -> None:
    body = "\n".join(html.escape(l) for l in lines)
    path.write_text(f"<!doctype html><meta charset=utf-8><title>mechclaims version matrix</title>"
                    f"<h1>mechclaims version matrix</h1><pre>{body}</pre>")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mechclaims.report.matrix", description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--atol", type=float, default=1e-5)
    args = ap.parse_args(argv)
    if len(args.dirs) < 2:
        print("mechclaims.report.matrix: need at least two environment directories to compare", file=sys.stderr)
        return 2
    envs = [load_env(d) for d in args.dirs]
    result = compare(envs, args.rtol, args.atol)
    lines = report_lines(envs, result)
    print("\n".join(lines))
    out = args.dirs[0].parent
    (out / "comparison.json").write_text(json.dumps({"envs": [{k: e[k] for k in ("name", "supported", "reason",
                                                                                 "environment")} for e in envs],
                                                     **result}, indent=1, default=str))
    write_html(out / "comparison.html", lines)
    return 1 if result["flips"] or result["moved"] else 0


if __name__ == "__main__":
    sys.exit(main())
