"""The plugin's own contract, without a model: inert in a suite without claims, prefixed options, validation of
the hub options, the front door's lazy imports, and expected outcomes that apply only to their own stimuli."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from claimrun import ROOT, env

PLAIN = '''
import sys

def test_plain():
    assert "torch" not in sys.modules and "transformers" not in sys.modules
'''


def _pytest(cwd: Path, *args: str, aliases: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "-p", "mechclaims.plugin", *(["-p", "mechclaims.harness.aliases"] if aliases
                                                                       else []), "-p", "no:cacheprovider", *args]
    return subprocess.run(cmd, cwd=cwd, env=env(MECHCLAIMS_CACHE=str(cwd / "no-cache")), capture_output=True,
                          text=True, timeout=300)


def test_inert_without_claims(tmp_path):
    """No torch, no model resolution (the cache does not exist), no folder, no header, for a suite of its own."""
    (tmp_path / "test_plain.py").write_text(PLAIN)
    r = _pytest(tmp_path, "-v")
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "1 passed" in out and "mechclaims:" not in out and "mechclaims models" not in out, out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["test_plain.py"]


def test_options_are_prefixed_and_aliases_are_this_repos_only(tmp_path):
    help_ = _pytest(tmp_path, "--help").stdout
    for opt in ("--mc-model", "--mc-seed", "--mc-revision", "--mc-trust-remote-code", "--mc-batch-size",
                "--mc-offline", "--mc-stimuli", "mechclaims_models"):
        assert opt in help_, opt
    assert "\n  --model" not in help_ and "\n  --seed" not in help_
    assert "\n  --model" in _pytest(tmp_path, "--help", aliases=True).stdout


@pytest.mark.parametrize("args,msg", [
    (("--mc-batch-size", "0"), "--mc-batch-size 0: at least 1"),
    (("--mc-batch-size", "eight"), "--mc-batch-size 'eight': not an integer"),
    (("--mc-revision", "two words"), "--mc-revision 'two words': pass a branch, tag or commit"),
    (("--mc-device", "tpu"), "--mc-device 'tpu' is not understood"),
])
def test_hub_options_are_checked(tmp_path, args, msg):
    (tmp_path / "test_plain.py").write_text(PLAIN)
    r = _pytest(tmp_path, *args)
    out = r.stdout + r.stderr
    assert r.returncode == 4 and msg in out and "Traceback" not in out, out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["test_plain.py"]


def test_local_files_only_only_when_asked(monkeypatch):
    from mechclaims.model.registry import hub_kwargs
    from mechclaims.harness.settings import _env_offline

    assert hub_kwargs() == {}
    assert hub_kwargs("step143000", True, True) == {"revision": "step143000", "trust_remote_code": True,
                                                     "local_files_only": True}
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not _env_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _env_offline()


def test_front_door_is_lazy():
    code = ("import sys, mechclaims as mc; assert 'torch' not in sys.modules; "
            "assert set(mc.__all__) >= {'load_model', 'capture', 'intervene', 'Verdict', 'run'}; "
            "assert all(callable(getattr(mc, n)) for n in mc.__all__); print('ok')")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True)
    assert r.stdout.strip() == "ok", r.stderr
    import mechclaims

    with pytest.raises(AttributeError, match="the public API is"):
        mechclaims.no_such_thing  # noqa: B018


OWN = '''
import numpy as np
import pytest
from mechclaims.verdict.verdict import Verdict

EXPECTED_OUTCOMES = {"test_c[tiny-gpt2]": ("inconclusive", "measured on the default stimuli: x = 42")}
STIMULI = {"mine": "mine.txt"}


@pytest.mark.claim("c")
def test_c(mc_model, stimuli_path, record, expect):
    x = float(stimuli_path("mine").read_text())
    v = Verdict(claim="c", statistic_name="x", statistic=x, rule="x > 0", passed=x > 0, p=0.01)
    record(v)
    expect(v)
'''


def test_recorded_outcomes_apply_to_their_own_stimuli_only(tmp_path):
    """The recorded 'failed' (and its reason, which quotes the default stimuli) holds on the declared default;
    with the user's own file the run gets its own outcome, and the reason is not quoted."""
    d = tmp_path / "claims"
    d.mkdir()
    (d / "test_own.py").write_text(OWN)
    (d / "mine.txt").write_text("-1")
    (tmp_path / "other.txt").write_text("5")
    art = tmp_path / "art"
    r = _pytest(tmp_path, str(d), "--mc-model", "tiny-gpt2", "--mc-artifacts-dir", str(art), "-rxX")
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "1 xfailed" in out and "x = 42" in out, out
    r = _pytest(tmp_path, str(d), "--mc-model", "tiny-gpt2", "--mc-artifacts-dir", str(art), "--mc-stimuli",
                f"mine={tmp_path / 'other.txt'}", "-rxX")
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "1 passed" in out and "x = 42" not in out, out


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_random_copy_on_meta_matches_a_fresh_init(tiny, name):
    """The meta-device random copy (used off the CPU/float32 path, so a big model never needs a float32 CPU copy)
    is a proper fresh init: finite, the model's buffers, and each weight's spread as in a CPU-built copy."""
    import torch

    from mechclaims.forward.capture import capture, encode
    from mechclaims.model.random_copy import random_weight_copy

    lm = tiny(name)
    cpu, meta = random_weight_copy(lm, 0, on_meta=False), random_weight_copy(lm, 0, on_meta=True)
    ps_cpu, ps_meta = dict(cpu.model.named_parameters()), dict(meta.model.named_parameters())
    assert ps_cpu.keys() == ps_meta.keys()
    for k, p in ps_meta.items():
        assert torch.isfinite(p).all(), k
        s_cpu, s_meta = float(ps_cpu[k].float().std()), float(p.float().std()) if p.numel() > 1 else 0.0
        assert abs(s_cpu - s_meta) <= 0.2 * s_cpu + 1e-6, (k, s_cpu, s_meta)
    for k, b in lm.model.named_buffers():
        assert torch.equal(meta.model.get_buffer(k), b), k
    ids = encode(lm, ["The cat sat on the mat."])
    acts = capture(meta, ids, ["blocks.0.hook_resid_post"])
    assert np.isfinite(acts["blocks.0.hook_resid_post"]).all()


def test_pool_call_keys_on_every_argument():
    from types import SimpleNamespace

    from mechclaims.harness.pool import ModelPool

    pool, calls = ModelPool(SimpleNamespace()), []

    def stat(lm, n_boot, seed=0):
        calls.append((n_boot, seed))
        return n_boot * 10 + seed

    lm = SimpleNamespace(name="m", fingerprint="f1")
    assert pool.call(stat, lm, 100) == 1000 and pool.call(stat, lm, 100) == 1000 and len(calls) == 1
    assert pool.call(stat, lm, 200) == 2000 and pool.call(stat, lm, 100, seed=1) == 1001 and len(calls) == 3
    assert pool.call(stat, SimpleNamespace(name="m", fingerprint="f2"), 100) == 1000 and len(calls) == 4
