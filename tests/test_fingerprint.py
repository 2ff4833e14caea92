"""Weight fingerprints from safetensors files (mechclaims.model.fingerprint) and the built-in models' state-dict ones.

Claims: a local or cached HF model with ``*.safetensors`` files is fingerprinted from the files (``st-`` prefix),
the same files give the same fingerprint and one changed weight a different one; a model saved without safetensors
and every built-in model keep the state-dict fingerprint (so no committed baseline or activation-cache key moves);
the end-of-session mutation check still sees a changed weight on a file-fingerprinted model. Falsified by any of
these comparisons going the other way.
"""
from __future__ import annotations

import shutil

import pytest
import torch

from mechclaims.model import fingerprint as F
from mechclaims.model.load import load_model
from mechclaims.model.fingerprint import weight_fingerprint


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    lm = load_model("tiny-gpt2")
    root = tmp_path_factory.mktemp("fp")
    st, pt = root / "st", root / "pt"
    lm.model.save_pretrained(st, safe_serialization=True)
    lm.tokenizer.save_pretrained(st)
    lm.model.save_pretrained(pt)
    lm.tokenizer.save_pretrained(pt)
    for f in pt.glob("*.safetensors"):  # transformers 5 writes safetensors only: make a .bin-only model by hand
        f.unlink()
    torch.save(lm.model.state_dict(), pt / "pytorch_model.bin")
    return lm, st, pt


def test_builtin_models_keep_the_state_dict_fingerprint(saved):
    lm, _, _ = saved
    assert not lm.fingerprint.startswith(F.PREFIX) and lm.fingerprint == weight_fingerprint(lm.model)
    assert "state_fingerprint" not in lm.extra


def test_safetensors_directory_is_fingerprinted_from_its_files(saved, tmp_path):
    lm, st, pt = saved
    a = load_model(str(st))
    files = F.safetensors_files(st)
    assert files and a.fingerprint == F.files_fingerprint(files, st / "config.json")
    assert a.fingerprint.startswith(F.PREFIX) and load_model(str(st)).fingerprint == a.fingerprint
    assert a.extra["state_fingerprint"] == weight_fingerprint(a.model)  # small: the mutation check stays on
    changed = tmp_path / "changed"
    shutil.copytree(st, changed)
    m = load_model(str(st)).model
    with torch.no_grad():
        next(m.parameters()).view(-1)[0] += 1.0
    m.save_pretrained(changed, safe_serialization=True)
    assert load_model(str(changed)).fingerprint != a.fingerprint
    b = load_model(str(pt))  # pytorch_model.bin only: the state-dict fingerprint, as before
    assert not b.fingerprint.startswith(F.PREFIX) and b.fingerprint == weight_fingerprint(b.model)
    with torch.no_grad():  # the end-of-session check compares the tensors with the hash taken at load
        next(a.model.parameters()).view(-1)[0] += 1.0
    assert weight_fingerprint(a.model) != a.extra["state_fingerprint"]


def test_hub_cache_snapshot_is_found_offline(saved, tmp_path, monkeypatch):
    import huggingface_hub.constants as C

    _, st, _ = saved
    repo = tmp_path / "hub" / "models--someone--tiny"
    snap = repo / "snapshots" / ("a" * 40)
    shutil.copytree(st, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(C, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert F.snapshot_dir("someone/tiny") == snap
    assert F.hub_fingerprint("someone/tiny") == F.files_fingerprint(F.safetensors_files(st), st / "config.json")
    assert F.hub_fingerprint("someone/absent") is None
