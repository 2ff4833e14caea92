"""Claim A's ``ged_same_word`` control can pass, and the stimuli format that states it (issue 27, round four).

Claims: (1) the format states a pair's class apart from its read word: a same-word file (``"read"`` directive, the
same pronoun on both sides) and a shuffled-label file (classes that share their words, and ``{"text", "word"}``
sides) load, read where they say, key the cache on their read words, and keep their hash whatever the record order;
a bad record is a StimuliError naming the file, the record and the fix. (2) The control is claim A's own rule on
``fixtures/ged_same_word.jsonl`` and it can pass: on tiny-gpt2 with a Monday/Friday feature planted at the pronoun
(``plant_ged_word`` at MLP 1, fitted on the control's own training pairs), ``claims/test_ged.py``'s ``same_word`` passes
at layer 2, where the unedited model's fails; with a him/her feature planted alone, claim A is ``supported`` at layer 2
with the control failing; with both, the layer is ``confounded``. Falsified by any of these outcomes.

Measured (seed 0 unless said; alpha 0.05/4 = 0.0125): unedited control p 0.016 at L2, 0.0575 at L3 (fails); planted
control p 0.001-0.003 at L2 and L3 (passes, seeds 0-2); him/her plant alone (size 3, mean/SD 8): claim A p 0.002 at
L2, supported; both plants, seed 1: claim A p 0.009, control p 0.001, confounded. With both plants the him/her rule's
margin is thin (p 0.0152-0.0168 at seeds 0 and 2): the same-word units add shared variance that the 33 held-out pairs
must see through, so the confounded case is asserted at the seed where the rule passes.
"""
from __future__ import annotations

import json
import random
import tempfile

import pytest

from mechclaims.datasets import pronouns as P
from mechclaims.errors import StimuliError
from mechclaims.model.plant_ged import input_contrast, plant_ged_word

from claimrun import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")
SAME = ROOT / "fixtures/ged_same_word.jsonl"
LAYER, READ = 1, 2  # the plants write in MLP 1; the rule reads mlp.hook_pre of layer 2


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip() and not x.startswith("#")]


def test_same_word_file_loads_and_reads_at_him():
    sw = P.load_pairs(SAME)
    assert len(sw) >= 100 and sw.contrast.names == ("monday", "friday") and sw.contrast.read == ("him",)
    assert set(sw.word_list("monday")) == set(sw.word_list("friday")) == {"him"}
    assert all(a.replace("Monday", "Friday") == b for a, b in zip(sw.texts("monday"), sw.texts("friday")))
    bundled = P.load_pairs(ROOT / "fixtures/ged_pairs.jsonl")  # the bundled file keeps its hash (no baseline moves)
    assert bundled.hash() == "96df4f9b67752176" and bundled.words is None and not bundled.stated


def test_shuffled_label_file_loads_and_order_changes_nothing(tmp_path):
    """Labels shuffled within pairs: classes that share their words (him and her on either side)."""
    rng, lines = random.Random(0), ["#! " + json.dumps({"classes": ["side_a", "side_b"], "read": ["him", "her"]})]
    for r in _rows(ROOT / "fixtures/ged_pairs.jsonl"):
        a, b = (r["him"], r["her"]) if rng.random() < 0.5 else (r["her"], r["him"])
        lines.append(json.dumps({"id": r["id"], "frame": r["frame"], "side_a": a, "side_b": b}))
    f = tmp_path / "shuffled.jsonl"
    f.write_text("\n".join(lines) + "\n")
    sh = P.load_pairs(f)
    assert {*sh.word_list("side_a")} == {*sh.word_list("side_b")} == {"him", "her"}
    body = lines[1:]
    random.Random(1).shuffle(body)
    g = tmp_path / "reordered.jsonl"
    g.write_text("\n".join(lines[:1] + body) + "\n")
    assert P.load_pairs(g).hash() == sh.hash()
    # The same labels as objects in a file without a directive: read where each side says.
    objs = tmp_path / "objects.jsonl"
    objs.write_text("\n".join(json.dumps({"id": r["id"], "him": {"text": r["her"], "word": "her"},
                                          "her": {"text": r["him"], "word": "him"}})
                              for r in _rows(ROOT / "fixtures/ged_pairs.jsonl")[:20]) + "\n")
    ob = P.load_pairs(objs)
    assert ob.stated and set(ob.word_list("him")) == {"her"} and ob.texts("him")[0].count(" her") == 1
    plain = P.load_pairs(ROOT / "fixtures/ged_pairs.jsonl")
    assert ob.hash() != P.PronounPairs(ob.ids, ob.frames, ob.first, ob.second, ob.source).hash()  # words key it
    assert plain.word_list("him")[:3] == ["him"] * 3


@pytest.mark.parametrize("directive, record, msg", [
    ({"classes": ["monday", "friday"], "read": "him"}, {"monday": "On Monday, I saw her.", "friday": "On Friday, "
     "I saw him."}, "must contain the word 'him' exactly once"),
    ({"classes": ["monday", "friday"], "read": "him"}, {"monday": "On Monday, I saw him.", "friday": "On Monday, "
     "I saw him."}, "identical"),
    ({"classes": {"monday": ["x"], "friday": ["y"]}, "read": "him"}, {"monday": "a him", "friday": "b him"},
     "list of two distinct class names"),
    ({"classes": ["monday", "friday"], "read": "two words"}, {"monday": "a him", "friday": "b him"},
     '"read" must be a word'),
    (None, {"him": {"text": "I saw him.", "token": "him"}, "her": "I saw her."}, 'exactly the keys "text"'),
    (None, {"him": {"text": "I saw him and him.", "word": "him"}, "her": "I saw her."}, "exactly once"),
])
def test_a_bad_stated_record_names_the_file_and_the_fix(tmp_path, directive, record, msg):
    f = tmp_path / "bad.jsonl"
    head = [f"#! {json.dumps(directive)}"] if directive else []
    good = [json.dumps({"id": f"ok{i}", **{k: (f"On Monday, I met him {i}." if j == 0 else f"On Friday, I met him "
                                               f"{i}.") if directive else (f"I met {k} {i}.")
                                           for j, k in enumerate(record)}}) for i in range(9)]
    f.write_text("\n".join(head + [json.dumps({"id": "bad", **record})] + good) + "\n")
    with pytest.raises(StimuliError, match=msg) as e:
        P.load_pairs(f)
    assert str(f) in str(e.value)


def _side(pairs, cls, rows):
    return [pairs.texts(cls)[i] for i in rows], [pairs.word_list(cls)[i] for i in rows]


def test_same_word_control_passes_where_planted_and_confounds_claim_a(tiny, claim_module, claim_context):
    mod, lm = claim_module("test_ged"), tiny("tiny-gpt2")
    sw, pairs = P.load_pairs(SAME), P.load_pairs(ROOT / "fixtures/ged_pairs.jsonl")
    tr_s, _ = sw.split(mod.TEST_FRACTION, 0)  # the control's own training pairs (its split at seed 0)
    tr, _ = pairs.split(mod.TEST_FRACTION, 0)
    him_her = (_side(pairs, "him", tr), _side(pairs, "her", tr))
    days = (_side(sw, "monday", tr_s), _side(sw, "friday", tr_s))
    category = {s: plant_ged_word(lm, LAYER, *him_her, 3.0, ratio=8.0, seed=s, tag="category") for s in (0, 1)}
    both = plant_ged_word(category[1], LAYER, *days, 0.3, seed=101, tag="same_word",
                          avoid=[input_contrast(category[1], LAYER, *him_her)])
    days_only = plant_ged_word(lm, LAYER, *days, 0.3, seed=100, tag="same_word")
    with tempfile.TemporaryDirectory() as tmp:
        ctl = {k: mod.same_word(claim_context(m, mod, tmp), READ) for k, m in
               (("unedited", lm), ("days", days_only), ("category", category[0]))}
        cat = mod.layer_outcome(claim_context(category[0], mod, tmp), READ, mod.A)
        conf = mod.layer_outcome(claim_context(both, mod, tmp), READ, mod.A)
    assert not ctl["unedited"].passed and ctl["unedited"].testable, ctl["unedited"].explain()
    assert ctl["days"].passed, ctl["days"].explain()
    assert not ctl["category"].passed, ctl["category"].explain()  # a him/her mechanism does not pass it
    assert cat.outcome == "supported", cat.explain()
    assert conf.controls["ged_same_word"].passed and conf.outcome == "confounded", conf.explain()
