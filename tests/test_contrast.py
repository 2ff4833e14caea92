"""A stimuli file's own contrast (``#!`` directive) for the GED and lesion claims, and ``--mc-ged-heldout-n``.

Claims: the bundled files read exactly as before (same classes, same hashes, so the same cache keys and numbers);
two arbitrary classes of words load for GED and any two single-token words for the lesion claim; a bad
declaration, or a declared word that is not one token of the model, is an error naming the file and the word; both
claims run end to end on tiny-gpt2 with a contrast other than him/her and give an outcome. Falsified by: a changed
hash of a bundled file, a silent drop of a bad word, or a claim run that errors on a valid own contrast.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mechclaims.datasets import lesion as LS
from mechclaims.datasets import pronouns as P
from mechclaims.errors import OptionError, StimuliError
from mechclaims.datasets.io import stimuli_hash

from claimrun import ROOT, run, synthetic

ANIMAL, TOOL = ["dog", "cat", "horse"], ["hammer", "drill", "wrench"]


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip() and not x.startswith("#")]


def word_class_files(tmp: Path, n_held: int = 120) -> tuple[Path, Path]:
    """GED pairs and windows of two word classes (animal vs tool), made from the bundled frames."""
    bad = re.compile(r"\b(" + "|".join(ANIMAL + TOOL) + r")\b", re.I)
    lines = ["#! " + json.dumps({"classes": {"animal": ANIMAL, "tool": TOOL}})]
    for i, r in enumerate(_rows(ROOT / "fixtures/ged_pairs.jsonl")):
        if not bad.search(r["him"]):
            lines.append(json.dumps({"id": r["id"], "frame": r["frame"],
                                     "animal": r["him"].replace("him", f"the {ANIMAL[i % 3]}"),
                                     "tool": r["him"].replace("him", f"the {TOOL[i % 3]}")}))
    pairs = tmp / "pairs_words.jsonl"
    pairs.write_text("\n".join(lines) + "\n")
    held = []
    for i, r in enumerate(_rows(ROOT / "fixtures/ged_heldout.jsonl")):
        if not bad.search(r["text"]):
            cls, ws = ("animal", ANIMAL) if i % 2 else ("tool", TOOL)
            held.append(json.dumps({"id": r["id"], "label": cls, "text": re.sub(
                rf"(?<![\w']){r['label']}(?![\w'])", f"the {ws[i % 3]}", r["text"], count=1)}))
    windows = tmp / "heldout_words.jsonl"
    windows.write_text("\n".join(held[:n_held]) + "\n")
    return pairs, windows


def she_he_file(tmp: Path, first: str = "she") -> Path:
    """Lesion prompts whose next token is " she" / " he" (from the bundled frames)."""
    lines = ["#! " + json.dumps({"classes": [first, "he"]})]
    for r in _rows(ROOT / "fixtures/lesion_causal.jsonl"):
        lines.append(json.dumps({"id": r["id"], first: r["her"] + " her, because", "he": r["him"] + " him, because"}))
    f = tmp / f"lesion_{first}_he.jsonl"
    f.write_text("\n".join(lines) + "\n")
    return f


def test_bundled_files_keep_their_classes_and_hashes():
    pairs = P.load_pairs(ROOT / "fixtures/ged_pairs.jsonl")
    held = P.load_heldout(ROOT / "fixtures/ged_heldout.jsonl", contrast=pairs.contrast)
    assert pairs.contrast.names == ("him", "her") and not pairs.contrast.declared
    assert pairs.hash() == stimuli_hash([pairs.ids, pairs.him, pairs.her])
    assert held.hash() == stimuli_hash([held.ids, held.labels, held.texts])
    assert held.swapped() == [P.swap_pronoun(t, lab) for t, lab in zip(held.texts, held.labels)]
    causal = LS.load_causal_pairs()
    assert LS.pair_sides(causal) == ("her", "him")
    assert LS.pairs_hash(causal) == stimuli_hash([[p.id, p.her, p.him] for p in causal])


def test_word_classes_load(tmp_path):
    pf, hf = word_class_files(tmp_path)
    pairs = P.load_pairs(pf)
    held = P.load_heldout(hf, contrast=pairs.contrast)
    assert pairs.contrast.names == ("animal", "tool") and pairs.contrast.token("tool") == "hammer"
    assert all(w in ANIMAL for w in pairs.word_list("animal")) and all(w in TOOL for w in pairs.word_list("tool"))
    assert set(held.labels) == {"animal", "tool"}
    sw = held.swapped()
    assert all(f"the {pairs.contrast.token(pairs.contrast.other(lab))}" in t for t, lab in zip(sw, held.labels))
    few = P.load_heldout(hf, n_per_label=10, seed=3, contrast=pairs.contrast)
    assert len(few.of("animal")) == len(few.of("tool")) == 10
    assert pairs.hash() != stimuli_hash([pairs.ids, pairs.first, pairs.second])  # the classes key the cache


@pytest.mark.parametrize("directive, msg", [
    ('{"classes": ["a", "b", "c"]}', "exactly two"),
    ('{"classes": {"x": ["dog"], "y": ["dog"]}}', "belong to both"),
    ('{"classes": ["label", "b"]}', "record fields"),
    ('{"clases": ["he", "she"]}', "one key"),
    ('{"classes": ["he", "she"]', "not JSON"),
])
def test_bad_directive_names_the_file(tmp_path, directive, msg):
    f = tmp_path / "p.jsonl"
    f.write_text(f"#! {directive}\n" + "\n".join(json.dumps({"id": f"g{i}", "a": "x", "b": "y"}) for i in range(9)))
    with pytest.raises(StimuliError, match=msg) as e:
        P.load_pairs(f)
    assert str(f) in str(e.value) and "line 1" in str(e.value)


def test_mismatched_or_corpus_heldout_is_an_error(tmp_path):
    pf, hf = word_class_files(tmp_path)
    pairs = P.load_pairs(pf)
    other = tmp_path / "h2.jsonl"
    other.write_text('#! {"classes": ["he", "she"]}\n' + hf.read_text())
    with pytest.raises(StimuliError, match="declares the classes"):
        P.load_heldout(other, contrast=pairs.contrast)
    txt = tmp_path / "c.txt"
    txt.write_text("We met the dog.\n\nWe met the hammer.")
    with pytest.raises(StimuliError, match="object-position rule only"):
        P.load_heldout(txt, contrast=pairs.contrast)
    bad = tmp_path / "h3.jsonl"
    bad.write_text(json.dumps({"id": "x", "label": "animal", "text": "the dog and the drill"}) + "\n")
    with pytest.raises(StimuliError, match="and not"):
        P.load_heldout(bad, contrast=pairs.contrast)


def test_lesion_sides_from_the_file(tmp_path):
    f = she_he_file(tmp_path)
    pairs = LS.load_causal_pairs(f)
    assert LS.pair_sides(pairs) == ("she", "he") and pairs[0].text("she").endswith("her, because")
    assert LS.pairs_hash(pairs) != stimuli_hash([[p.id, p.her, p.him] for p in pairs])
    words = tmp_path / "w.jsonl"
    words.write_text('#! {"classes": {"she": ["she", "her"], "he": ["he"]}}\n' + f.read_text().split("\n", 1)[1])
    with pytest.raises(StimuliError, match="two single tokens") as e:
        LS.load_causal_pairs(words)
    assert str(words) in str(e.value)
    missing = tmp_path / "m.jsonl"
    missing.write_text('#! {"classes": ["she", "he"]}\n' + json.dumps({"id": "a", "her": "x", "him": "y"}) + "\n")
    with pytest.raises(StimuliError, match="'she'"):
        LS.load_causal_pairs(missing, min_pairs=1)


def test_heldout_n_option_values():
    from mechclaims.harness import options

    assert options.ged_heldout_n("all") is None and options.ged_heldout_n(None) is None
    assert options.ged_heldout_n("40") == 40
    for bad in ("3", "x", "-1"):
        with pytest.raises(OptionError, match="--mc-ged-heldout-n"):
            options.ged_heldout_n(bad)


def test_heldout_n_bad_value_is_a_usage_error(tmp_path):
    r = run(str(synthetic(tmp_path)), "--mc-ged-heldout-n", "2", "--mc-artifacts-dir", str(tmp_path / "a"),
            cwd=tmp_path, timeout=120)
    assert r.returncode == 4 and "--mc-ged-heldout-n" in r.stderr + r.stdout
    assert not (tmp_path / "a").exists()


def _claims(tmp: Path, *args: str) -> tuple[str, dict]:
    art = tmp / "art"
    r = run(str(ROOT / "claims" / args[0]), "--mc-model", "tiny-gpt2", "--mc-artifacts-dir", str(art), *args[1:],
            cwd=tmp, timeout=900)
    out = r.stdout + r.stderr
    summary = json.loads((art / "summary.json").read_text()) if (art / "summary.json").exists() else {}
    return out, summary


def test_ged_runs_on_two_word_classes(tmp_path):
    pf, hf = word_class_files(tmp_path)
    out, s = _claims(tmp_path, "test_ged.py", "--mc-stimuli", f"ged_pairs={pf}", "--mc-stimuli", f"ged_heldout={hf}",
                     "--mc-permutations", "20", "--mc-ged-heldout-n", "40", "-k", "L0 or rule")
    recs = [r for r in s.get("records", []) if r.get("claim") in ("ged_heldout_specific", "ged_context_beyond_token")]
    assert recs, out[-3000:]
    assert all(r["outcome"] in ("supported", "refuted", "inconclusive", "confounded") for r in recs), out[-3000:]
    keys = json.dumps(recs)
    assert "animal>tool" in keys and "him>her" not in keys  # the directions carry the user's class names
    assert " failed" not in out.splitlines()[-1], out[-3000:]


def test_lesion_runs_on_she_he_and_names_a_bad_token(tmp_path):
    out, s = _claims(tmp_path, "test_lesion.py", "--mc-stimuli", f"lesion_causal={she_he_file(tmp_path)}",
                     "--mc-lesion-null-sets", "20", "-k", "clean or L0 or rule")
    recs = [r for r in s.get("records", []) if r.get("claim", "").startswith(("mlp_lesion", "lesion_clean"))]
    assert recs and all(r["outcome"] in ("supported", "refuted", "inconclusive", "confounded") for r in recs), \
        out[-3000:]
    assert "she." in json.dumps(recs) and "her." not in json.dumps(recs)
    bad = tmp_path / "bad"
    bad.mkdir()
    f = she_he_file(bad, first="xylophone")
    out, _ = _claims(bad, "test_lesion.py", "--mc-stimuli", f"lesion_causal={f}", "-k", "clean")
    assert str(f) in out and "'xylophone'" in out and "single token" in out, out[-3000:]


def test_ged_names_a_class_word_that_is_not_one_token(tmp_path):
    pf, hf = word_class_files(tmp_path)
    bad, held = tmp_path / "pairs_xylophone.jsonl", tmp_path / "heldout_xylophone.jsonl"
    bad.write_text(pf.read_text().replace('"dog"', '"xylophone"').replace("the dog", "the xylophone"))
    held.write_text(hf.read_text().replace("the dog", "the xylophone"))
    out, _ = _claims(tmp_path, "test_ged.py", "--mc-stimuli", f"ged_pairs={bad}", "--mc-stimuli",
                     f"ged_heldout={held}", "--mc-permutations", "20", "-k", "heldout_specific and L0 and not rule")
    assert str(bad) in out and "'xylophone'" in out and "single token" in out, out[-3000:]
