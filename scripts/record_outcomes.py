"""Record the outcomes of a run as the expected ones: ``claims/expected/<module>.yml``, one entry per test id whose
outcome is not the default (a claim: supported; a control: failed), with the reason and its numbers.

Deliberate, like ``--force-regen`` for baselines: run the claims, read the outcomes in the summary, then

    python scripts/record_outcomes.py artifacts/summary.json [more summaries...]

and review the diff. Entries of the test ids in the summaries are replaced (a test id now at its default outcome
is removed); entries of other test ids (other models) are kept.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = {"claim": "supported", "control": "failed"}


def _fmt(x) -> str:
    return f"{x:.3g}" if isinstance(x, (int, float)) else str(x)


def reason(rec: dict) -> str:
    """The numbers that decided: the key statistic and p, the effect and its interval, then why."""
    v = (rec.get("verdicts") or [{}])[0]
    parts = [f"{v.get('statistic_name')} = {_fmt(v.get('statistic'))}"]
    if v.get("p") is not None:
        parts.append(f"p = {_fmt(v['p'])}")
    if v.get("effect") is not None:
        ci = v.get("effect_ci")
        parts.append(f"{v.get('effect_name')} = {_fmt(v['effect'])}" + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""))
    ctl = {k: c.get("outcome") for k, c in (v.get("controls") or {}).items() if c.get("outcome") != "failed"}
    if ctl:
        parts.append("controls: " + ", ".join(f"{k} {o}" for k, o in ctl.items()))
    why = v.get("absence") if rec["outcome"] == "refuted" else (v.get("reason") or v.get("absence") or "")
    if why:
        parts.append(why)
    if v.get("layers"):
        from collections import Counter
        c = Counter(v["layers"].values())
        parts.append("layers: " + ", ".join(f"{k} {n}" for k, n in c.most_common()))
    return "; ".join(parts)[:600]


def main(paths: list[str]) -> None:
    by_module: dict[str, dict[str, dict]] = {}
    seen: dict[str, set[str]] = {}
    for p in paths:
        for rec in json.loads(Path(p).read_text())["records"]:
            if rec.get("outcome") in (None, "skipped", "error"):
                continue
            module = rec["test_id"].split("::")[0]
            name = rec["test_id"].split("::")[-1]
            seen.setdefault(module, set()).add(name)
            if rec["outcome"] != DEFAULT[rec.get("role", "claim")]:
                by_module.setdefault(module, {})[name] = {"outcome": rec["outcome"], "reason": reason(rec)}
    for module, names in seen.items():
        f = ROOT / Path(module).parent / "expected" / (Path(module).stem + ".yml")
        old = yaml.safe_load(f.read_text()) if f.exists() else {}
        old = {k: v for k, v in (old or {}).items() if k not in names}
        new = {**old, **by_module.get(module, {})}
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(yaml.safe_dump(dict(sorted(new.items())), width=120, sort_keys=False, allow_unicode=True))
        print(f"{f.relative_to(ROOT)}: {len(by_module.get(module, {}))} recorded of {len(names)} test ids")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
