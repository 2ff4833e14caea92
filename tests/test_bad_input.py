"""Bad options and odd inputs, round two: each is caught at the boundary with a message naming it and the fix.

Claim under test: every case of issue 22's table that is an input or an option (layers, seeds, permutations,
directories, model names as paths, over-long sequences, non-string ids, tokenizers without pad/eos, a BOM, a
corrupt weights file, a very large stimuli file) ends in a usage error or a StimuliError/ModelError naming the
option or file and the fix, or in a documented handling; never a traceback from torch, numpy or sklearn, and never
a file outside the directories it belongs in. Falsified by any case below that raises something else.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from claimrun import ROOT, run
from mechclaims.harness import options
from mechclaims.errors import ModelError, OptionError, StimuliError
from mechclaims.store.paths import inside, safe_component

# ---------- options: syntax, order, range, upper bounds ----------


@pytest.mark.parametrize("spec,models,msg", [
    ("99", {"tiny-gpt2": 4}, "layer 99 does not exist: tiny-gpt2 has 4 (0-3)"),
    ("3-1", {"tiny-gpt2": 4}, "the range 3-1 runs backwards; write it low-high, e.g. '1-3'"),
    ("-1", {"tiny-gpt2": 4}, "cannot read a negative layer (layers count from 0)"),
    ("1,,2", {"tiny-gpt2": 4}, "cannot read an empty item"),
    ("0-99999999999", {"tiny-gpt2": 4}, "cannot read a number too long to be a layer"),
    ("0-999999999", {"tiny-gpt2": 4}, "layer 999999999 does not exist"),
    ("10", {"tiny-gpt2": 4, "smollm2-135m": 30}, "selects no layer of tiny-gpt2"),
])
def test_layers_are_checked_against_syntax_order_and_depth(spec, models, msg):
    with pytest.raises(OptionError, match=None) as e:
        options.check_layers(spec, models)
    assert msg in str(e.value) and f"--mc-layers {spec!r}" in str(e.value)


def test_layers_never_expand_past_the_model():
    assert options.layers_for("2-999999999", 4) == [2, 3]
    assert options.layers_for("all", 3) == [0, 1, 2] and options.layers_for("0, 2", 4) == [0, 2]
    options.check_layers("2-10", {"tiny-gpt2": 4, "smollm2-135m": 30})  # layers some model has: fine


@pytest.mark.parametrize("fn,value,msg", [
    (options.seed, "-1", "--mc-seed -1: at least 0"),
    (options.seed, "100000000000000000000000", "--mc-seed 100000000000000000000000: at most 4,294,967,295"),
    (options.seed, "1.5", "--mc-seed '1.5': not an integer"),
    (options.permutations, "1000000000", "--mc-permutations 1000000000: at most 20,000"),
    (options.permutations, "1e9", "--mc-permutations '1e9': not an integer"),
    (options.lesion_null_sets, "1000000000", "--mc-lesion-null-sets 1000000000: at most 10,000"),
    (options.keep_runs, "-3", "--mc-keep-runs -3: at least 0"),
])
def test_integer_options_have_bounds(fn, value, msg):
    with pytest.raises(OptionError) as e:
        fn(value)
    assert msg in str(e.value) and "pass a whole number from" in str(e.value)


def test_bounds_are_what_numpy_and_torch_accept():
    import torch
    from sklearn.utils import check_random_state

    for s in (0, options.SEED_MAX):
        np.random.default_rng(s), np.random.RandomState(s), check_random_state(s), torch.manual_seed(s)


def _usage(*args: str, tmp: Path) -> str:
    r = run("claims", "--collect-only", "--model", "tiny-gpt2", "--artifacts-dir", str(tmp / "art"), *args, cwd=ROOT,
            timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 4, out
    assert "Traceback" not in out and "NotSetType" not in out and "MemoryError" not in out, out
    assert not (tmp / "art").exists() or not any((tmp / "art").iterdir())  # nothing ran, nothing written
    return out


@pytest.mark.parametrize("args,msg", [
    (("--layers", "99"), "--mc-layers '99': layer 99 does not exist: tiny-gpt2 has 4 (0-3)"),
    (("--layers=-1",), "--mc-layers '-1': cannot read a negative layer"),
    (("--layers", "0-99999999999"), "--mc-layers '0-99999999999': cannot read a number too long"),
    (("--seed=-1",), "--mc-seed -1: at least 0"),
    (("--permutations", "1000000000"), "--mc-permutations 1000000000: at most 20,000"),
])
def test_bad_options_are_usage_errors_end_to_end(tmp_path, args, msg):
    assert msg in _usage(*args, tmp=tmp_path)


def test_unwritable_baselines_dir_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = _usage("--baselines-dir", str(blocker / "baselines"), tmp=tmp_path)
    assert "--mc-baselines-dir" in out and "cannot be written" in out and "holds no baselines yet" in out


# ---------- names as paths: one sanitizer, everything stays inside its directory ----------


@pytest.mark.parametrize("name", ["..", ".", "", "../x", "a/b", "/abs/path", "..\\x", "x/../../y", "a" * 400])
def test_safe_component_is_one_component(tmp_path, name):
    c = safe_component(name)
    assert c not in ("", ".", "..") and "/" not in c and "\\" not in c and len(c.encode()) <= 160
    assert (tmp_path / c).resolve().parent == tmp_path.resolve()
    assert inside(tmp_path, name, name).resolve().is_relative_to(tmp_path.resolve())


def test_clean_names_keep_their_paths_and_changed_ones_never_collide():
    for clean in ("smollm2-135m", "tiny-gpt2-L3", "test_qk_category_control_fails", "tiny-gpt2-random_labels"):
        assert safe_component(clean) == clean  # committed baselines keep their paths
    assert safe_component("a/b") != safe_component("a_b") and safe_component("..") != safe_component("_..")


MODEL_CLAIM = '''
import pytest

from mechclaims.verdict.verdict import Verdict


@pytest.mark.claim("paths")
@pytest.mark.parametrize("part", ["plain", pytest.param("p", id="sub/../../dir")])
def test_paths(lm, part, artifacts, baseline, record):
    artifacts.path("figure.txt").write_text("x")
    v = Verdict(claim="paths", statistic_name="x", statistic=1.0, rule="x > 0", passed=True)
    record(v)
    baseline.check(v.numbers(), lm)
'''


@pytest.mark.parametrize("model,cwd", [("..", "x/work"), ("../x", "work")])
def test_relative_model_names_stay_inside(tmp_path, tiny, model, cwd):
    """`--model ..` and `--model ../x` (a model directory) and a test id with `/`: figures and baselines stay
    inside --artifacts-dir and --baselines-dir."""
    lm = tiny("tiny-gpt2")
    models = tmp_path / "models"
    lm.model.save_pretrained(models / "x")
    lm.tokenizer.save_pretrained(models / "x")
    work = models / cwd
    (work / "claims").mkdir(parents=True)
    (work / "claims" / "test_paths.py").write_text(MODEL_CLAIM)
    before = {p for p in models.rglob("*") if work not in p.parents and p != work}
    r = run("claims", "--model", model, "--artifacts-dir", "art", "--baselines-dir", "base", cwd=work)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "2 passed" in out and "2 baseline(s) created" in out, out  # first baselines
    after = {p for p in models.rglob("*") if work not in p.parents and p != work}
    assert after == before, sorted(map(str, after - before))
    figs, ymls = list((work / "art").rglob("figure.txt")), list((work / "base").rglob("*.yml"))
    assert len(figs) == 2 and len(ymls) == 2
    for p in figs + ymls:
        assert p.resolve().is_relative_to(work.resolve())
        assert ".." not in p.relative_to(work).parts


# ---------- stimuli ----------


def test_sequence_longer_than_the_context(tiny):
    from mechclaims.forward.capture import capture, encode, locate_word

    gpt2, bert = tiny("tiny-gpt2"), tiny("tiny-bert")
    long = "word " * 6000 + "and then she thanked him."
    with pytest.raises(StimuliError) as e:
        locate_word(gpt2, long, "him", source="my_held.jsonl (nat 3)")
    s = str(e.value)
    assert "my_held.jsonl (nat 3)" in s and "past model tiny-gpt2's context of 512 tokens" in s and "Shorten" in s
    early = "She thanked him. " + "word " * 6000
    assert locate_word(gpt2, early, "him") == 2  # causal: only the prefix up to the target must fit
    with pytest.raises(StimuliError, match="it is 6,0.. tokens, past model tiny-bert's context of 512 tokens. Shorten the sentence to"):
        locate_word(bert, early, "him", source="my_held.jsonl (nat 4)")
    with pytest.raises(StimuliError, match=r"sequence 2 of 2 .* past model tiny-gpt2's context of 512 tokens"):
        capture(gpt2, encode(gpt2, ["short one", long]), ["blocks.0.hook_resid_pre"])


def test_long_ged_sentence_end_to_end(tmp_path):
    """The table's case: a GED window of 6,000 tokens with the pronoun at the end, on tiny-gpt2 and tiny-bert
    (an IndexError from torch and a RuntimeError from transformers before): the claim fails with the message."""
    rows = [{"id": f"m{i}", "label": "him", "text": f"Story {i}: we met him at dawn."} for i in range(6)]
    rows += [{"id": f"f{i}", "label": "her", "text": f"Tale {i}: they thanked her for it."} for i in range(6)]
    rows[0]["text"] = "word " * 6000 + "and then we met him."
    f = tmp_path / "held.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = run("claims/test_ged.py", "--model", "tiny-gpt2", "--model", "tiny-bert", "-k", "ged and L0", "--stimuli",
            f"ged_heldout={f}", "--permutations", "20", "--artifacts-dir", str(tmp_path / "art"), cwd=ROOT)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in out and "IndexError" not in out, out[-3000:]
    for m in ("tiny-gpt2", "tiny-bert"):
        assert f"held.jsonl" in out and "sentence 'word word" in out and f"past model {m}'s context of 512" in out


@pytest.mark.parametrize("loader,rows,where", [
    ("pairs", [{"id": ["p", 1], "him": "We met him.", "her": "We met her."}], "line 1 (record 1)"),
    ("heldout", [{"id": {"k": 1}, "label": "him", "text": "We met him."}], "line 1 (record 1)"),
    ("lesion", [{"id": 1.5, "her": "Mary fell, so I helped", "him": "John fell, so I helped"}], "line 1 (record 1)"),
])
def test_non_string_ids_are_named(tmp_path, loader, rows, where):
    from mechclaims.datasets.lesion import load_causal_pairs
    from mechclaims.datasets.pronouns import load_heldout, load_pairs

    f = tmp_path / "s.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fn = {"pairs": load_pairs, "heldout": load_heldout, "lesion": lambda p: load_causal_pairs(p, min_pairs=1)}
    with pytest.raises(StimuliError, match="an id must be a string") as e:
        fn[loader](f)
    assert str(f) in str(e.value) and where in str(e.value)


def test_tokenizer_without_pad_or_eos_pads_under_the_mask(tiny):
    from mechclaims.forward.capture import capture, encode
    from mechclaims.model.load import ensure_pad

    lm = tiny("tiny-gpt2")
    tok = copy.deepcopy(lm.tokenizer)
    tok.pad_token, tok.eos_token = None, None
    assert tok.pad_token_id is None and tok.eos_token_id is None
    ensure_pad(tok)
    bare = dataclasses.replace(lm, tokenizer=tok)
    texts = ["A short one.", "A much longer sentence that forces padding of the short one."]
    site = "blocks.3.hook_resid_post"
    got, ref = capture(bare, encode(bare, texts), [site], "all"), capture(lm, encode(lm, texts), [site], "all")
    np.testing.assert_array_equal(got[site], ref[site])  # the pad id never reaches a kept position


def test_bom_in_txt_passages_is_stripped(tmp_path):
    from mechclaims.datasets.passages import load_passages

    text = ("First document has more than ten words in it, as it should.\n\n"
            "The second one also has more than ten words in it, as it should.")
    plain, bom = tmp_path / "p.txt", tmp_path / "bom.txt"
    plain.write_text(text, encoding="utf-8")
    bom.write_text(text, encoding="utf-8-sig")
    assert bom.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert [p.text for p in load_passages(bom)] == [p.text for p in load_passages(plain)]
    j = tmp_path / "bom.jsonl"
    j.write_text(json.dumps({"doc_id": "d", "source": "s", "text": text}) + "\n", encoding="utf-8-sig")
    assert load_passages(j)[0].doc_id == "d"  # JSON Lines: the same rule (it used to be 'malformed JSON')


def test_truncated_safetensors_has_its_own_message(tmp_path, tiny):
    from mechclaims.model.load import load_model, resolve_config

    lm = tiny("tiny-gpt2")
    d = tmp_path / "m"
    lm.model.save_pretrained(d)
    lm.tokenizer.save_pretrained(d)
    f = d / "model.safetensors"
    whole = f.read_bytes()
    f.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ModelError) as e:
        load_model(str(d))
    s = str(e.value)
    assert "model.safetensors" in s and "truncated or corrupt" in s and "Copy it again" in s
    assert "cannot be had offline" not in s and "huggingface-cli download" not in s
    f.write_bytes(whole)
    (d / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="model directory .* cannot be loaded") as e:
        resolve_config(str(d))
    assert "cannot be had offline" not in str(e.value)


def test_large_stimuli_file_warns_once(tmp_path, monkeypatch, caplog):
    from mechclaims.datasets import io as stimuli
    from mechclaims.datasets.passages import load_passages

    assert stimuli.LARGE_STIMULI_BYTES == 2_000_000  # the size the README states
    monkeypatch.setattr(stimuli, "LARGE_STIMULI_BYTES", 1000)
    f = tmp_path / "big.txt"
    f.write_text("\n\n".join(f"Document {i} has more than ten words in it, as every one should." for i in range(40)))
    with pytest.warns(stimuli.StimuliSizeWarning, match=r"big.txt is 0.0 MB, past 0 MB.*minutes and gigabytes"):
        load_passages(f)
    load_passages(f)  # once per file
    # on the mechclaims logger (which a plugin session writes to the terminal at once): one record per file
    assert sum("big.txt is 0.0 MB, past 0 MB" in r.getMessage() for r in caplog.records
               if r.name == "mechclaims") == 1
