"""The on-disk statistics cache (mechclaims.store.statcache): a stored result equals a recomputed one, and any changed input
misses.

Claims: (1) Verdicts (nested controls, NaN, int-keyed layers), GED layers and RSA profiles round-trip exactly through
the store, whose manifests are strict JSON (a non-finite float is stored as a string: no NaN token); (2) a second run of the lesion and GED claims on tiny-gpt2 reads every per-layer result from the cache
and gives the same records as the first; a changed seed, a changed stimuli file or ``--statistics-cache refresh``
recomputes; (3) the key holds the code: editing the claim module's file changes it. Falsified by a cached record
that differs from the computed one, or a hit on a changed input.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_results_round_trip_exactly(tmp_path):
    from mechclaims.store.actcache import ActivationStore
    from mechclaims.stats.rsa import SelectivityProfile
    from mechclaims.verdict.verdict import Verdict

    ctl = Verdict(claim="c", statistic_name="x", statistic=float("nan"), rule="r", passed=False, role="control")
    v = Verdict(claim="a", statistic_name="s", statistic=1.5, rule="r", passed=True, p=0.01, effect_name="e",
                effect=0.2, effect_ci=(0.1, 0.3), details={"k": 2.0}, layers={0: "supported", 3: "refuted"},
                aggregate="all").gate({"c": ctl})
    prof = SelectivityProfile(*(np.arange(3.0) for _ in range(10)), mean_ci=(0.0, 1.0))
    value = {"verdicts": {(0, "her"): v}, "profile": prof, "arr": np.ones((2, 2), np.float32)}
    store = ActivationStore(tmp_path, what="statistic")
    store.get({"model": "m", "tag": "t"}, lambda: value)
    got = ActivationStore(tmp_path, what="statistic").get({"model": "m", "tag": "t"}, lambda: pytest.fail("miss"))
    w = got["verdicts"][(0, "her")]
    # JSON text, not ==: the control's NaN statistic never equals itself
    assert json.dumps(w.to_record(), sort_keys=True) == json.dumps(v.to_record(), sort_keys=True)
    assert w.layers == {0: "supported", 3: "refuted"} and w.effect_ci == (0.1, 0.3) and w.outcome == v.outcome
    assert math.isnan(w.controls["c"].statistic) and w.controls["c"].reason == ctl.reason  # not re-annotated
    np.testing.assert_array_equal(got["profile"].null, prof.null)
    assert got["arr"].dtype == np.float32
    for man in tmp_path.glob("*.json"):  # valid JSON by its standard: no NaN/Infinity tokens (issue 29 note)
        json.loads(man.read_text(), parse_constant=lambda c: pytest.fail(f"{man.name} holds {c}"))
    inf = {"x": float("inf"), "y": -float("inf"), "z": np.float32("nan")}
    ActivationStore(tmp_path, what="statistic").get({"model": "m", "tag": "inf"}, lambda: inf)
    back = ActivationStore(tmp_path, what="statistic").get({"model": "m", "tag": "inf"}, lambda: pytest.fail("miss"))
    assert back["x"] == float("inf") and back["y"] == -float("inf") and math.isnan(back["z"])


def test_code_version_follows_the_claim_file(tmp_path):
    from mechclaims.store.statcache import code_version

    f = tmp_path / "test_claim.py"
    f.write_text("X = 1\n")
    a = code_version(str(f))
    f.write_text("X = 2\n")
    code_version.cache_clear()
    assert code_version(str(f)) != a


def _run(tmp: Path, art: str, *extra: str, check: bool = True) -> tuple[dict, str]:
    cmd = [sys.executable, "-m", "pytest", "claims/test_lesion.py", "claims/test_ged.py", "--model", "tiny-gpt2",
           "-q", "-p", "no:randomly", "--statistics-cache", "on", "--cache-dir", str(tmp / "cache"),
           "--artifacts-dir", str(tmp / art), "-k", "L1 or rule or preference", *extra]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={**__import__("os").environ, "CI": "1", "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0 or not check, r.stdout[-3000:] + r.stderr[-2000:]
    s = json.loads((tmp / art / "summary.json").read_text())
    return {x["test_id"]: (x["outcome"], x["verdicts"]) for x in s["records"]}, r.stdout


def test_second_run_reads_the_cache_and_changed_inputs_miss(tmp_path):
    first, out1 = _run(tmp_path, "a")
    assert "statistics reused for 0 result" in out1
    second, out2 = _run(tmp_path, "b")
    assert "statistics reused for" in out2 and "statistics reused for 0 " not in out2 and "computed for 0" in out2, out2[-1500:]
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    # another seed: every statistic is recomputed (nothing read)
    _, out3 = _run(tmp_path, "c", "--seed", "1", "-o", "xfail_strict=false", "--baselines-dir", str(tmp_path / "bl"),
                   check=False)  # another seed may give other outcomes: only the cache's behaviour is tested here
    assert "statistics reused for 0 result" in out3
    # another stimuli file (same pairs, one removed): recomputed
    src = (ROOT / "fixtures/lesion_causal.jsonl").read_text().splitlines()
    rows = [l for l in src if l.strip() and not l.startswith("#")]
    f = tmp_path / "lesion.jsonl"
    f.write_text("\n".join(rows[:-1]) + "\n")
    _, out4 = _run(tmp_path, "d", "-k", "lesion and (L1 or rule)", "--stimuli", f"lesion_causal={f}",
                   "-o", "xfail_strict=false", check=False)
    assert "statistics reused for 0 result" in out4
    # refresh recomputes and overwrites
    _, out5 = _run(tmp_path, "e", "--statistics-cache", "refresh")
    assert "statistics reused for 0 result" in out5
