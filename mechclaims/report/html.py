"""The HTML report: one self-contained file that reads the whole run.

Layout: run header (environment, outcome counts), an overview of claims (claim x model: the outcome, the effect with
its CI and p, the per-layer counts; it is the cross-model panel when several models ran, followed by the claims that
compare models, e.g. path length across sizes, with their stated test), drift against baselines when the summary
carries it, then one section
per claim: statement, falsification rule, a table with one row per claim test (key statistic, p, effect [CI], null
quantiles), its figures, and its controls next to it. Every claim test is one ``tr.verdict`` row, exactly once.
Figures are embedded as base64 PNG: nothing is fetched, so the file can be mailed or archived as is.
"""
from __future__ import annotations

import base64
import math
import re
from html import escape
from pathlib import Path
from typing import Any

from mechclaims.report.summary import build_outcomes
from mechclaims.store.diskio import atomic_write
from mechclaims.verdict.outcome import counts

MAX_IMAGE_BYTES = 2_000_000      # one figure above this is linked, not embedded
MAX_TOTAL_BYTES = 25_000_000     # keeps a many-layer, many-model run openable in a browser
MAIN_FIGURES = 6                 # figures (or cross-model figure rows) shown per claim before "more figures"
OUTCOMES = ("supported", "confounded", "refuted", "inconclusive", "failed", "passed", "partial", "skipped", "error")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;
 padding:18px 24px;color:#1d232b;background:#fafbfc}
h1{font-size:22px;margin:4px 0}h2{font-size:18px;margin:28px 0 6px;border-bottom:2px solid #dde3ea;padding-bottom:3px}
h3{font-size:15px;margin:14px 0 4px}code,.mono{font:12.5px ui-monospace,Menlo,Consolas,monospace}
table{border-collapse:collapse;margin:6px 0 10px;background:#fff;font-size:13px}
th,td{border:1px solid #dde3ea;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eef2f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.o{display:inline-block;border-radius:3px;padding:0 6px;font-weight:600;font-size:12px}
.o-supported{background:#d8f3dc;color:#1b5e20}.o-error,.o-broken{background:#fbd5d5;color:#8a1c1c}
.o-confounded{background:#f6c6f0;color:#6d1361}.o-refuted{background:#ffe8b3;color:#7a4b00}
.o-inconclusive,.o-partial{background:#e3ecf7;color:#2d4a6b}.o-failed{background:#e8f1e9;color:#2f5d34}
.o-passed{background:#f6c6f0;color:#6d1361}.o-skipped{background:#e6e8eb;color:#4a525c}.claim{background:#fff;border:1px solid #e2e7ed;border-radius:6px;
 padding:4px 16px 12px;margin:18px 0}.control{border-left:4px solid #9db4cf;padding-left:12px;margin-top:14px}
.meta{color:#56606b}.rule{background:#f3f6f9;border-left:3px solid #9db4cf;padding:4px 10px;margin:4px 0}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:10px}
.xrow{display:grid;gap:10px;margin-bottom:10px}figure{margin:0;background:#fff;border:1px solid #e2e7ed;padding:4px}
figure img{max-width:100%;height:auto;display:block}figcaption{font-size:12px;color:#56606b}
.reason{color:#8a1c1c;font-size:12px}details>summary{cursor:pointer;color:#2d5d8a}
.badges span{margin-right:10px}.warn{color:#8a1c1c}
"""
# Lets a headless browser (tests/test_report.py) check that every figure decoded.
SCRIPT = """window.addEventListener('load',function(){var im=document.images,n=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)n++;}
document.body.dataset.imagesLoaded=n;document.body.dataset.imagesTotal=im.length;
document.body.dataset.verdictRows=document.querySelectorAll('tr.verdict').length;});"""


def fmt(x: Any) -> str:
    """A number as a person reads it: 4 significant digits, NaN and missing shown as such."""
    if x is None:
        return "–"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return escape(str(x))
    if math.isnan(x):
        return '<b class="warn">NaN</b>'
    return f"{x:.4g}" if x == 0 or 1e-3 <= abs(x) < 1e5 else f"{x:.3g}"


def _outcome(o: str) -> str:
    o = o if o in OUTCOMES else "error"
    return f'<span class="o o-{o}">{o}</span>'


def _test_flag(r: dict[str, Any]) -> str:
    """The pytest side: a failed test (outcome changed, baseline moved, crash) is flagged beside the outcome."""
    t = r.get("test_outcome")
    if t in ("failed", "error", "xpassed"):
        return ' <span class="o o-broken">test failed</span>'
    return ""


def _rkey(r: dict[str, Any]) -> tuple:
    layer = r.get("layer")
    return (str(r.get("model")), -1 if layer is None else int(layer), r.get("test_id", ""))


def _slug(s: str) -> str:
    return re.sub(r"[^\w-]+", "-", s).strip("-") or "x"


class _Images:
    """Embeds PNGs under one byte budget; anything over it is linked by path instead."""

    def __init__(self, base: Path):
        self.base, self.used = base, 0

    def figure(self, path: str, caption: str) -> str:
        p = Path(path)
        p = p if p.is_absolute() or p.exists() else self.base / p
        cap = f"<figcaption>{escape(caption)}</figcaption>"
        try:
            data = p.read_bytes()
        except OSError:
            return f'<figure><p class="warn">missing figure {escape(str(p))}</p>{cap}</figure>'
        if len(data) > MAX_IMAGE_BYTES or self.used + len(data) > MAX_TOTAL_BYTES:
            why = "over 2 MB" if len(data) > MAX_IMAGE_BYTES else "report size budget reached"
            return (f'<figure><p class="warn">not embedded ({why}): <a href="{escape(p.as_uri())}">'
                    f'{escape(p.name)}</a></p>{cap}</figure>')
        self.used += len(data)
        b64 = base64.b64encode(data).decode("ascii")
        return f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{b64}">{cap}</figure>'


def _models_of(r: dict[str, Any]) -> list[str]:
    """The models a claim test compared (its verdict's ``models``), for a test that spans several models (it has no
    single ``model``): e.g. path length across sizes. Empty for an ordinary one-model test."""
    if r.get("model") is not None:
        return []
    return list(dict.fromkeys(str(m) for v in (r.get("verdicts") or []) for m in (v.get("models") or [])))


def _model_label(r: dict[str, Any]) -> str:
    ms = _models_of(r)
    return " vs ".join(ms) if ms else str(r.get("model"))


def _where(r: dict[str, Any]) -> str:
    return _model_label(r) + ("" if r.get("layer") is None else f" L{r.get('layer')}")


def _effect(v: dict[str, Any]) -> str:
    """A verdict's effect with its CI and p (or its key statistic when it has no effect), as one short line."""
    if not v:
        return ""
    if v.get("effect") is not None:
        ci = v.get("effect_ci")
        out = f'{escape(str(v.get("effect_name") or "effect"))} {fmt(v["effect"])}' + (
            f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")
    elif v.get("statistic") is not None:
        out = f'{escape(str(v.get("statistic_name") or "statistic"))} {fmt(v["statistic"])}'
    else:
        return ""
    return out + ("" if v.get("p") is None else f", p {fmt(v['p'])}")


def verdict_rows(records: list[dict[str, Any]]) -> str:
    """One ``tr.verdict`` per claim test; extra verdicts and every detail number fold into the last cell.
    Columns no verdict of this claim fills (p, effect, null) are left out."""
    heads = ["model", "layer", "outcome", "key statistic", "p", "effect [95% CI]", "null q05 / q50 / q95", "numbers"]
    rows, ids = [], []
    for r in sorted(records, key=_rkey):
        vs = r.get("verdicts") or []
        v = vs[0] if vs else {}
        stat = f'{escape(str(v.get("statistic_name", "")))} = {fmt(v.get("statistic"))}' if v else "–"
        eff = "–"
        if v.get("effect") is not None:
            ci = v.get("effect_ci")
            eff = (f'{escape(str(v.get("effect_name") or "effect"))} = {fmt(v["effect"])}'
                   + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else ""))
        nl = v.get("null") or {}
        null = " / ".join(fmt(nl.get(k)) for k in ("q05", "q50", "q95")) if nl else "–"
        # a record-level "reason" (skip/xfail reason, failure summary) comes first when the plugin gives one
        reasons = [escape(str(t)) for t in [r.get("reason")] + [x.get("reason") for x in vs] if t]
        extra, n = [], 0
        for i, x in enumerate(vs):
            nums = {**{f"null_{k}": val for k, val in (x.get("null") or {}).items()}, **(x.get("details") or {})}
            n += len(nums)
            lab = "" if i == 0 else (f"<div><b>{escape(str(x.get('claim', '')))}</b>: {escape(str(x.get('statistic_name')))}"
                                     f" = {fmt(x.get('statistic'))}, p = {fmt(x.get('p'))}</div>")
            extra.append(lab + "".join(f"<div class=mono>{escape(str(k))} = {fmt(val)}</div>" for k, val in nums.items()))
        more = (f"<details><summary>{n} numbers{'' if len(vs) < 2 else f', {len(vs)} verdicts'}</summary>"
                f"{''.join(extra)}</details>") if vs else "–"
        cls = "reason" if r.get("test_outcome") in ("failed", "error", "xpassed") else "meta"
        reason = f'<div class="{cls}">{"<br>".join(reasons)}</div>' if reasons else ""
        rows.append([escape(_model_label(r)), "–" if r.get("layer") is None else escape(str(r["layer"])),
                     f'{_outcome(r.get("outcome", ""))}{_test_flag(r)}{_expected_note(r)} '
                     f'<span class="meta">{fmt(r.get("duration_s"))} s</span>',
                     stat + reason, fmt(v.get("p")), eff, null, more])
        ids.append(str(r.get("test_id", "")))
    keep = [j for j in range(len(heads)) if j not in (4, 5, 6) or any(row[j] != "–" for row in rows)]
    num = {1, 3, 4, 5, 6}
    body = "".join(f'<tr class="verdict" id="t-{_slug(t)}" title="{escape(t)}">'
                   + "".join(f'<td{" class=num" if j in num else ""}>{row[j]}</td>' for j in keep) + "</tr>"
                   for t, row in zip(ids, rows))
    c = _counts(records)
    summ = ", ".join(f"{k} {v}" for k, v in c.items() if v)
    return (f"<details open><summary>{len(records)} claim test(s): {summ}</summary><table class=verdicts><thead><tr>"
            + "".join(f"<th>{heads[j]}</th>" for j in keep) + f"</tr></thead><tbody>{body}</tbody></table></details>")


def _expected_note(r: dict[str, Any]) -> str:
    e = r.get("expected")
    return "" if e in (None, r.get("outcome")) else f' <span class="warn">(recorded: {escape(str(e))})</span>'


def figures(records: list[dict[str, Any]], imgs: _Images, models: list[str]) -> str:
    """Per-model figures first, then per-layer ones spread over depth. With several models each row is a
    cross-model panel: one column per model, layers matched by relative depth (models differ in depth).
    Everything not in the main view folds under "more figures"."""
    fixed: dict[tuple, dict[str, tuple[str, dict]]] = {}
    layered: dict[tuple, dict[str, list[tuple[str, dict]]]] = {}
    for r in sorted(records, key=_rkey):
        for a in r.get("artifacts") or []:
            if str(a).lower().endswith(".png"):
                key, m = (str(r.get("test_id", "")).split("[")[0], Path(a).name), str(r.get("model"))
                if r.get("layer") is None:
                    fixed.setdefault(key, {})[m] = (a, r)
                else:
                    layered.setdefault(key, {}).setdefault(m, []).append((a, r))
    cols = [m for m in models if any(m in g for g in [*fixed.values(), *layered.values()])]
    if not cols:
        return ""
    rows: list[dict[str, tuple[str, dict]]] = list(fixed.values())
    budget = max(2, math.ceil(MAIN_FIGURES / len(cols)))
    k = max(1, (budget - len(rows)) // len(layered)) if layered else 0
    used: set[str] = set()
    for g in layered.values():
        for i in range(k):
            row = {}
            for m, lst in g.items():
                a, r = lst[round(i * (len(lst) - 1) / max(k - 1, 1))]
                if a not in used:
                    row[m] = (a, r)
                    used.add(a)
            if row:
                rows.append(row)
    rest = [(a, r) for g in layered.values() for lst in g.values() for a, r in lst if a not in used]

    def fig(a: str, r: dict) -> str:
        return imgs.figure(a, f"{_where(r)} · {Path(a).name}")

    if len(cols) < 2:
        html = '<div class="figs">' + "".join(fig(*row[m]) for row in rows for m in row) + "</div>"
    else:
        html = "".join(f'<div class="xrow" style="grid-template-columns:repeat({len(cols)},1fr)">'
                       + "".join(fig(*row[m]) if m in row else f"<figure><p class=meta>{escape(m)}: –</p></figure>"
                                 for m in cols) + "</div>" for row in rows)
    if rest:
        html += (f'<details><summary>{len(rest)} more figure(s)</summary><div class="figs">'
                 + "".join(fig(a, r) for a, r in rest) + "</div></details>")
    return html


def _claim_text(name: str, records: list[dict[str, Any]], claims_doc: dict[str, Any]) -> str:
    doc = claims_doc.get(name) or {}
    rules = list(dict.fromkeys(v.get("rule") for r in records for v in (r.get("verdicts") or []) if v.get("rule")))
    fam = ", ".join(sorted({str(r.get("family")) for r in records}))
    out = [f'<div class="meta">{fam} · {len(records)} test(s) · '
           f'{escape(", ".join(sorted({r.get("test_id", "").split("[")[0] for r in records})))}</div>']
    if doc.get("statement"):
        out.append(f"<p><b>Claim.</b> {escape(str(doc['statement']))}</p>")
    for rule in rules:
        out.append(f'<div class="rule"><b>Pass rule.</b> {escape(str(rule))}</div>')
    if doc.get("falsified_by"):
        out.append(f'<div class="rule"><b>Falsified by.</b> {escape(str(doc["falsified_by"]))}</div>')
    return "".join(out)


def _counts(records: list[dict[str, Any]]) -> dict[str, int]:
    c = {o: 0 for o in OUTCOMES}
    for r in records:
        c[r.get("outcome") if r.get("outcome") in c else "error"] += 1
    return c


def overview(outcomes: list[dict[str, Any]], order: list[tuple[str, bool]], by_claim: dict[str, list[dict[str, Any]]],
             models: list[str]) -> str:
    """Claim x model: the claim's outcome (with its per-layer counts); each control indented under the claim it
    controls (linked by the control test's ``control_of``), with its own outcome."""
    head = "".join(f"<th>{escape(m)}</th>" for m in models)
    by = {(o["claim"], o["model"]): o for o in outcomes}
    rows = []
    for claim, ctl in order:
        rs = by_claim[claim]
        if all(r.get("model") is None for r in rs):  # over several models: in between_models(), not in a cell
            continue
        cells = []
        for m in models:
            mr = [r for r in rs if str(r.get("model")) == m]
            o = by.get((claim, m))
            if not mr:
                cells.append('<td class="meta">–</td>')
                continue
            if o is not None:
                tail = f'<span class="meta"> layers: {counts(o["layers"].values())}</span>' if o["layers"] else ""
                exp = "" if o["expected"] in (None, o["outcome"]) else \
                    f' <span class="warn">(recorded {escape(str(o["expected"]))})</span>'
                top = next((r for r in mr if r.get("layer") is None and r.get("role", "claim") == "claim"), None)
                eff = _effect(((top or {}).get("verdicts") or [{}])[0])
                eff = f'<div class="meta eff">{eff}</div>' if eff else ""
                cells.append(f'<td>{_outcome(o["outcome"])}{exp}{tail}{eff}</td>')
            else:  # a control, or a claim that was skipped on this model
                top = [r for r in mr if r.get("layer") is None] or mr
                flag = "".join(_test_flag(r) for r in top[:1])
                cells.append(f'<td style="white-space:nowrap">{_outcome(top[0].get("outcome", ""))}{flag}</td>')
        pad = ' style="padding-left:22px"' if ctl else ""
        rows.append(f'<tr><td{pad}>{"↳ control: " if ctl else ""}<a href="#c-{_slug(claim)}">{escape(claim)}</a>'
                    f'</td>{"".join(cells)}</tr>')
    return f'<table class="overview"><thead><tr><th>claim</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def between_models(by_claim: dict[str, list[dict[str, Any]]]) -> str:
    """Claims that compare models (a test over several models, e.g. path length across sizes): one row each with the
    models compared, the outcome, the effect with its CI and p, each model's own outcome where the verdict gives it,
    and the test that was stated for it (its pass rule)."""
    rows = []
    for claim, rs in by_claim.items():
        for r in sorted(rs, key=_rkey):
            if r.get("model") is not None:
                continue
            ms = _models_of(r)  # empty for a test that was skipped (the session lacked a model): its reason says so
            v = (r.get("verdicts") or [{}])[0]
            det = v.get("details") or {}
            per = [f"{escape(m)} {'supported' if det[f'supported_{m}'] else 'not supported'}"
                   for m in ms if isinstance(det.get(f"supported_{m}"), (int, float))]
            reason = "" if ms else f'<div class="meta">{escape(str(r.get("reason") or ""))}</div>'
            rows.append(f'<tr class="xmodel"><td><a href="#c-{_slug(claim)}">{escape(claim)}</a></td>'
                        f'<td>{escape(" vs ".join(ms)) or "–"}</td><td>{_outcome(r.get("outcome", ""))}'
                        f'{_test_flag(r)}{_expected_note(r)}{reason}</td><td class="num">{_effect(v) or "–"}</td>'
                        f'<td>{"<br>".join(per) or "–"}</td><td class="meta">{escape(str(v.get("rule") or "–"))}</td>'
                        "</tr>")
    if not rows:
        return ""
    return ("<h3>Between models</h3><table class=between><thead><tr><th>claim</th><th>models</th><th>outcome</th>"
            "<th>effect [95% CI], p</th><th>each model's claim</th><th>stated test</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def drift_table(drift: list[dict[str, Any]]) -> str:
    if not drift:
        return "<p>No number moved beyond its tolerance against the committed baselines.</p>"

    def env(e: Any) -> str:
        return escape(", ".join(f"{k} {v}" for k, v in e.items()) if isinstance(e, dict) else str(e or "–"))

    def tol(t: Any) -> str:
        return escape(", ".join(f"{k}={v:g}" for k, v in t.items())) if isinstance(t, dict) else fmt(t)

    rows = "".join(f'<tr><td class="mono">{escape(str(d.get("test_id", "")))}</td><td>{escape(str(d.get("key", "")))}'
                   f'</td><td class="num">{fmt(d.get("baseline"))}</td><td class="num">{fmt(d.get("obtained"))}</td>'
                   f'<td class="num">{fmt(d.get("abs"))}</td><td>{tol(d.get("tol"))}</td>'
                   f'<td>{env(d.get("env_from"))} → {env(d.get("env_to"))}</td></tr>' for d in drift)
    return ("<table class=drift><thead><tr><th>test</th><th>number</th><th>baseline</th><th>obtained</th><th>abs diff"
            f"</th><th>tolerance</th><th>environment (baseline → now)</th></tr></thead><tbody>{rows}</tbody></table>")


def render(summary: dict[str, Any], base: Path) -> str:
    records = summary.get("records") or []
    env = summary.get("environment") or {}
    claims_doc = summary.get("claims") or {}
    models = [str(m) for m in dict.fromkeys(list(summary.get("models") or []) + [r.get("model") for r in records])
              if m is not None]
    by_claim: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: r.get("test_id", "")):
        by_claim.setdefault(str(r.get("claim")), []).append(r)
    # Controls sit beside the claim they control because the control test names it (control_of), never by name.
    controls: dict[str, list[str]] = {}
    for c, rs in by_claim.items():
        t = next((r.get("control_of") for r in rs if r.get("role") == "control" and r.get("control_of")), None)
        if t and t in by_claim:
            controls.setdefault(t, []).append(c)
    placed = {c for cs in controls.values() for c in cs}
    order = [(c, False) if i == 0 else (c, True) for main in by_claim if main not in placed
             for i, c in enumerate([main, *controls.get(main, [])])]
    outcomes = summary.get("outcomes")
    if outcomes is None:
        outcomes = build_outcomes(records)
    imgs, multi = _Images(base), len(models) > 1
    c = _counts(records)
    badges = "".join(f'<span>{_outcome(o)} {n}</span>' for o, n in c.items() if n)
    envs = " · ".join(f"{escape(str(k))} <b>{escape(str(v))}</b>" for k, v in env.items())
    parts = [f"<h1>mechclaims report</h1><div class=meta>{envs}</div>",
             f"<p class=badges><b>{len(records)} claim tests</b> on {len(models)} model(s) "
             f"({escape(', '.join(models))}), {fmt(sum(r.get('duration_s') or 0 for r in records))} s: {badges}</p>"
             + (f"<p class=warn>{n_bad} test(s) failed: an outcome changed, a baseline moved, or a test crashed.</p>"
                if (n_bad := sum(r.get("test_outcome") in ("failed", "error", "xpassed") for r in records)) else ""),
             f"<h2>{'Cross-model panel' if multi else 'Claims'}</h2>{overview(outcomes, order, by_claim, models)}"
             + between_models(by_claim)]
    if "drift" in summary:
        parts.append(f"<h2>Drift against baselines</h2>{drift_table(summary.get('drift') or [])}")
    for claim, rs in by_claim.items():
        if claim in placed:
            continue
        sec = [f'<section class="claim" id="c-{_slug(claim)}"><h2>{escape(claim)}</h2>',
               _claim_text(claim, rs, claims_doc), figures(rs, imgs, models), verdict_rows(rs)]
        for ctl in controls.get(claim, []):
            crs = by_claim[ctl]
            sec.append(f'<div class="control" id="c-{_slug(ctl)}"><h3>Control: {escape(ctl)}</h3>'
                       f'{_claim_text(ctl, crs, claims_doc)}{figures(crs, imgs, models)}{verdict_rows(crs)}</div>')
        parts.append("".join(sec) + "</section>")
    if not records:
        parts.append("<p>No claim tests ran.</p>")
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>mechclaims report</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style>'
            f'<script>{SCRIPT}</script></head><body>{"".join(parts)}</body></html>')


def write_html(summary: dict[str, Any], path: Path) -> Path:
    """Write the report atomically (temp file + rename, the temp removed on any failure) and return its path.
    Relative figure paths are read against the report's folder."""
    path = Path(path)
    return atomic_write(path, render(summary, path.parent))
