"""The HTML report: structure (pure Python) and rendering in a real headless browser (Debian's chromium).

Claim under test: one self-contained file shows every claim test as one verdict row, every figure embedded and
decodable, controls inside the section of the claim they control, a cross-model panel when several models ran,
and the drift table when the summary carries one. Falsified by: a row count different from the records, an
image that does not load, or any external resource.
"""
from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest

from mechclaims.report.html import fmt, write_html
from mechclaims.plots import save_figure

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=5000"]


@pytest.fixture(scope="module")
def source_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real matplotlib PNG (a savefig takes ~0.3 s here), copied wherever a record needs a figure."""
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [0, 1, 4])
    ax.set_title("layer profile")
    return save_figure(fig, tmp_path_factory.mktemp("png") / "profile.png", dpi=60)


def _verdict(claim: str, stat: float, passed: bool, p: float | None = None, null: bool = False,
             reason: str = "") -> dict[str, Any]:
    return {"claim": claim, "statistic_name": "z", "statistic": stat, "rule": f"{claim}: z > 3 at alpha 0.05",
            "passed": passed, "p": p, "effect_name": "d" if p is not None else None,
            "effect": 0.8 if p is not None else None, "effect_ci": [0.5, 1.1] if p is not None else None,
            "null": {"mean": 0.0, "sd": 1.0, "q05": -1.6, "q50": 0.0, "q95": 1.6, "n": 1000.0} if null else None,
            "details": {"n_items": 40.0}, "reason": reason}


def _record(claim: str, model: str, layer: int | None, outcome: str, verdicts: list[dict], arts: list[str],
            family: str = "observational", control_of: str | None = None, test_outcome: str = "passed",
            expected: str | None = None) -> dict[str, Any]:
    pid = model if layer is None else f"{model}-L{layer}"
    return {"test_id": f"claims/test_{claim}.py::test_{claim}[{pid}]", "claim": claim, "family": family,
            "model": model, "layer": layer, "outcome": outcome, "test_outcome": test_outcome,
            "expected": expected or outcome, "role": "control" if control_of else "claim", "control_of": control_of,
            "controls": {}, "duration_s": 0.12, "verdicts": verdicts, "artifacts": arts}


def _between(a: str, b: str) -> dict[str, Any]:
    """A claim test over two models (no single ``model``; its verdict names them), like path length across sizes."""
    v = {**_verdict("path_length_differs_across_sizes", -0.167, True, p=0.0023), "effect_name": "delta_partial_rho",
         "effect": -0.167, "effect_ci": [-0.26, -0.0737], "models": [a, b],
         "rule": "two-sided: the 95% paired document-jackknife t-interval of delta excludes 0",
         "details": {f"supported_{a}": 0.0, f"supported_{b}": 1.0, "n_docs": 12.0}}
    r = _record("path_length_differs_across_sizes", "x", None, "supported", [v], [])
    r.update(model=None, test_id=f"claims/test_pathlength_sizes.py::test_path_length_differs_across_sizes[{a}-vs-{b}]")
    return r


@pytest.fixture
def summary(tmp_path: Path, source_png: Path) -> dict[str, Any]:
    """Two models; a layered claim with one recorded refutation, its control, a failed claim with a NaN verdict,
    a skipped test, a missing figure and an oversized one (linked, never embedded)."""
    art = tmp_path / "artifacts"

    def _png(path: Path) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_png, path)
        return str(path)

    recs = []
    for m in ("tiny-a", "tiny-b"):
        for layer in range(3):
            png = _png(art / m / f"L{layer}" / "profile.png")
            out = "refuted" if (m, layer) == ("tiny-b", 2) else "supported"
            recs.append(_record("ged_separation", m, layer, out,
                                [_verdict("ged_separation", 4.2 - layer, out == "supported", p=0.001 * (layer + 1),
                                          null=True)], [png]))
        recs.append(_record("shuffled_labels", m, None, "failed",
                            [_verdict("shuffled_labels", 0.3, False, p=0.6, null=True)],
                            [_png(art / m / "ctl" / "null.png")], control_of="ged_separation"))
        recs.append(_record("rsa_category", m, None, "inconclusive",
                            [_verdict("rsa_category", float("nan"), False, reason="non-finite statistic")],
                            [str(art / m / "never_written.png")], test_outcome="failed", expected="supported"))
    big = art / "huge.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 2_100_000)
    recs.append(_record("ablation_logit_diff", "tiny-a", None, "skipped", [], [str(big)], family="causal",
                        test_outcome="skipped"))
    recs.append(_between("tiny-a", "tiny-b"))
    drift = [{"test_id": recs[0]["test_id"], "key": "z", "baseline": 4.2, "obtained": 4.5, "abs": 0.3,
              "tol": {"rtol": 0.001, "atol": 1e-6}, "env_from": {"torch": "2.12"}, "env_to": {"torch": "2.13"}}]
    return {"environment": {"torch": "2.13.0", "device": "cpu", "dtype": "float32", "seed": 0},
            "models": ["tiny-a", "tiny-b"], "records": recs, "drift": drift,
            "claims": {"ged_separation": {"statement": "GED separates the conditions on held-out data.",
                                          "falsified_by": "top eigenvalue within the label-shuffle null"}}}


class _Counter(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows, self.imgs, self.external, self.stack = 0, [], [], []
        self.sections: dict[str, tuple[int, int]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "verdict" in (a.get("class") or "").split():
            self.rows += 1
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        if tag in ("link", "iframe") or (tag == "script" and a.get("src")):
            self.external.append(tag)
        if (a.get("src") or "").startswith(("http:", "https:", "//")):
            self.external.append(a["src"])
        if a.get("id", "").startswith("c-"):
            self.sections[a["id"]] = self.getpos()


def _parse(text: str) -> _Counter:
    c = _Counter()
    c.feed(text)
    return c


def test_structure(summary: dict[str, Any], tmp_path: Path) -> None:
    """One verdict row per record, every existing small figure embedded as a decodable PNG, no external
    resources, controls inside their claim's section, cross-model panel and drift table present."""
    out = write_html(summary, tmp_path / "out" / "report.html")
    text = out.read_text(encoding="utf-8")
    c = _parse(text)
    assert c.rows == len(summary["records"])
    assert len(c.imgs) == 8  # 6 layer figures + 2 control figures; the missing and the >2 MB one are not <img>
    for src in c.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert c.external == []
    assert "not embedded (over 2 MB)" in text and "missing figure" in text
    # the control is rendered after its claim's heading and before the next claim's section
    s = text.index('id="c-ged_separation"')
    assert s < text.index('id="c-shuffled_labels"') < text.index("</section>", s)  # linked by control_of
    assert "(recorded supported)" in text and "test failed" in text
    assert "Cross-model panel" in text and "Drift against baselines" in text and "torch 2.12" in text
    assert "GED separates the conditions" in text and "top eigenvalue within" in text
    assert "non-finite statistic" in text and ">NaN<" in text
    assert text.count('<tr class="xmodel">') == 1 and "Between models" in text and "tiny-a vs tiny-b" in text
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # atomic: no temp file left behind


def test_cross_model_panel_gives_outcome_effect_ci_per_model(tmp_path: Path) -> None:
    """The issue-21 panel: smollm2-135m, gemma3-270m and minilm-l6 side by side. Per claim and model: the outcome,
    the effect with its CI and p, the per-layer counts; "–" where a claim does not apply to a model (a causal claim
    on the encoder). The claim over two models (path length across sizes) is a row of its own under the panel with
    its effect, CI, p, each model's outcome and its stated test, never a column of dashes or a model called None."""
    models = ["smollm2-135m", "gemma3-270m", "minilm-l6"]
    eff = {"smollm2-135m": (0.0107, [-0.0927, 0.114], 0.553, "refuted"),
           "gemma3-270m": (-0.156, [-0.206, -0.106], 0.000999, "supported")}
    recs = []
    for m, (e, ci, p, out) in eff.items():
        v = {**_verdict("path_length_confidence", e, out == "supported", p=p), "effect_name": "partial_rho",
             "effect": e, "effect_ci": ci}
        recs.append(_record("path_length_confidence", m, None, out, [v], [], expected=out))
        recs.append(_record("pathlength_shuffled_targets", m, None, "failed", [_verdict("pathlength_shuffled_targets",
                            0.1, False, p=0.5)], [], control_of="path_length_confidence"))
    for m, (n, auc) in {"smollm2-135m": (30, 0.295), "gemma3-270m": (18, 0.338), "minilm-l6": (6, 0.21)}.items():
        v = {**_verdict("qk_category_selectivity", auc, True, p=0.001), "effect_name": "auc_minus_0.5", "effect": auc,
             "effect_ci": [auc - 0.04, auc + 0.04], "layers": {str(i): "supported" for i in range(n)}}
        recs.append(_record("qk_category_selectivity", m, None, "supported", [v], []))
    recs.append(_between("smollm2-135m", "gemma3-270m"))
    s = {"environment": {}, "models": models, "records": recs}
    text = write_html(s, tmp_path / "x.html").read_text()
    panel = text[text.index("Cross-model panel"):text.index("Between models")]
    assert [h for h in re.findall(r"<th>([^<]+)</th>", panel)] == ["claim", *models]
    row = lambda claim: re.search(rf'<tr><td><a href="#c-{claim}">.*?</tr>', panel).group(0)  # noqa: E731
    pl, qk = row("path_length_confidence"), row("qk_category_selectivity")
    assert "partial_rho 0.0107 [-0.0927, 0.114], p 0.553" in pl and "partial_rho -0.156 [-0.206, -0.106]" in pl
    assert pl.count('class="o o-') == 2 and pl.endswith('<td class="meta">–</td></tr>')  # not on minilm-l6
    assert qk.count("o-supported") == 3 and "auc_minus_0.5 0.338 [0.298, 0.378], p 0.001" in qk
    assert "layers: " in qk and "path_length_differs_across_sizes" not in panel
    between = re.search(r'<tr class="xmodel">.*?</tr>', text).group(0)
    for want in ("smollm2-135m vs gemma3-270m", "o-supported", "delta_partial_rho -0.167 [-0.26, -0.0737], p 0.0023",
                 "smollm2-135m not supported", "gemma3-270m supported", "paired document-jackknife"):
        assert want in between, want
    assert ">None<" not in text and _parse(text).rows == len(recs)
    # one model only: the two-model claim is skipped; it is listed under "Between models" with the reason, no row of "–"
    one = {"environment": {}, "models": ["smollm2-135m"], "records": [recs[0], {
        **_between("smollm2-135m", "gemma3-270m"), "outcome": "skipped", "verdicts": [],
        "reason": "this session lacks gemma3-270m"}]}
    text = write_html(one, tmp_path / "one.html").read_text()
    assert "path_length_differs_across_sizes</a></td><td" not in text.split("Between models")[0]
    between = re.search(r'<tr class="xmodel">.*?</tr>', text).group(0)
    assert "o-skipped" in between and "this session lacks gemma3-270m" in between


def test_single_model_and_empty(tmp_path: Path) -> None:
    one = {"environment": {}, "models": ["m"], "records": [
        _record("c", "m", 0, "supported", [_verdict("c", 5.0, True)], [])]}
    text = write_html(one, tmp_path / "one.html").read_text()
    assert "Cross-model panel" not in text and _parse(text).rows == 1 and "Drift" not in text
    empty = write_html({"environment": {}, "models": [], "records": []}, tmp_path / "empty.html").read_text()
    assert "No claim tests ran" in empty and _parse(empty).rows == 0


def test_fmt() -> None:
    assert fmt(None) == "–" and fmt(0.000123) == "0.000123" and fmt(1234.5) == "1234" and "NaN" in fmt(float("nan"))
    assert fmt(3.97e-8) == "3.97e-08" and fmt("<b>") == "&lt;b&gt;"


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("chromium is not installed, so the report cannot be checked in a real browser. Install it "
                    "with `apt-get install -y chromium` (Debian/Ubuntu), then rerun.", pytrace=False)
    return exe


def test_renders_in_headless_chromium(summary: dict[str, Any], tmp_path: Path) -> None:
    """Chromium opens the file with no network: every <img> decodes, the verdict rows match the records,
    and a screenshot is produced."""
    exe = _chromium()
    out = write_html(summary, tmp_path / "report.html")
    url = out.resolve().as_uri()
    flags = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, f"no <body> in chromium's DOM dump: {dom.stdout[:500]!r} {dom.stderr[-1000:]}"
    data = dict(re.findall(r'data-([\w-]+)="(\d+)"', body.group(0)))
    assert data.get("images-total") == "8", data
    assert data.get("images-loaded") == data["images-total"], f"some figures did not load: {data}"
    assert data.get("verdict-rows") == str(len(summary["records"])), data
    assert 'class="xmodel"' in dom.stdout and "tiny-a vs tiny-b" in dom.stdout  # the between-models row rendered
    assert _parse(dom.stdout).rows == len(summary["records"])
    shot = tmp_path / "shot.png"
    r = subprocess.run([*flags, "--window-size=1200,1600", f"--screenshot={shot}", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_cross_model_report_from_separate_runs(tmp_path: Path) -> None:
    """scripts/cross_model_report.py: runs made one model at a time (and the two-model comparison run) give the same
    panel as one session over all models: models in file order, outcomes recomputed per claim and model, a test id
    present twice keeps the later file's record, a differing environment value shows both."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    runs = []
    for i, (m, out) in enumerate([("smollm2-135m", "refuted"), ("gemma3-270m", "supported")]):
        v = {**_verdict("path_length_confidence", 0.1, out == "supported", p=0.01), "effect_name": "partial_rho"}
        runs.append({"environment": {"transformers": f"5.2{4 + i}.0"}, "models": [m],
                     "records": [_record("path_length_confidence", m, None, out, [v], [])]})
    # the third run repeats gemma's test id with a newer result: the later file's record is kept
    again = _record("path_length_confidence", "gemma3-270m", None, "inconclusive", [_verdict("p", 0.1, False)], [])
    runs.append({"environment": {"transformers": "5.26.0"}, "models": ["smollm2-135m", "gemma3-270m"],
                 "records": [_between("smollm2-135m", "gemma3-270m"), again]})
    skipped = {**_between("smollm2-135m", "gemma3-270m"), "outcome": "skipped", "verdicts": [],
               "reason": "this session lacks gemma3-270m"}  # a later one-model run: its skip must not hide the result
    runs.append({"environment": {"transformers": "5.26.0"}, "models": ["smollm2-135m"], "records": [skipped]})
    paths = []
    for i, s in enumerate(runs):
        paths.append(tmp_path / f"s{i}.json")
        paths[-1].write_text(json.dumps(s))
    out, merged = tmp_path / "r" / "report.html", tmp_path / "merged.json"
    r = subprocess.run([sys.executable, str(root / "scripts" / "cross_model_report.py"), "-o", str(out),
                        "--summary-out", str(merged), *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    m = json.loads(merged.read_text())
    assert m["models"] == ["smollm2-135m", "gemma3-270m"] and len(m["records"]) == 3
    assert {(o["model"], o["outcome"]) for o in m["outcomes"] if o["claim"] == "path_length_confidence"} == {
        ("smollm2-135m", "refuted"), ("gemma3-270m", "inconclusive")}
    assert m["environment"]["transformers"] == "5.24.0 / 5.25.0 / 5.26.0"
    text = out.read_text()
    assert "Cross-model panel" in text and text.count('<tr class="xmodel">') == 1 and _parse(text).rows == 3
    assert "delta_partial_rho -0.167" in text and "this session lacks" not in text
    bad = subprocess.run([sys.executable, str(root / "scripts" / "cross_model_report.py"), "-o", str(out),
                          str(tmp_path / "missing.json")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "missing.json is not a readable mechclaims summary.json" in bad.stderr


def test_cross_model_table_markdown(tmp_path: Path) -> None:
    """scripts/cross_model_table.py: models in the summaries' order, "differs" where outcomes differ, a claim over
    two models in a table of its own (not a model called None), and a "|" inside a stated test escaped."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    recs = [_record("path_length_confidence", m, None, o, [_verdict("path_length_confidence", 0.1, o == "supported",
                                                                    p=0.01)], [])
            for m, o in [("smollm2-135m", "refuted"), ("gemma3-270m", "supported")]]
    b = _between("smollm2-135m", "gemma3-270m")
    b["verdicts"][0]["rule"] = "rho(path, log p | position)"
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"models": ["smollm2-135m", "gemma3-270m"], "records": [*recs, b]}))
    r = subprocess.run([sys.executable, str(root / "scripts" / "cross_model_table.py"), str(f)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "| claim (test) | smollm2-135m | gemma3-270m | differs |"
    assert lines[2].endswith("| **yes** |") and "None" not in r.stdout
    assert any(l.startswith("| path_length_differs_across_sizes") and "smollm2-135m vs gemma3-270m" in l
               and "log p \\| position" in l and "delta_partial_rho -0.167" in l for l in lines)
