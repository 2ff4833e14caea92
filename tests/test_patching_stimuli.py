"""The patching pairs file: the bundled fixture loads and fits the models; each bad input fails with the file, the
record and the fix; ``--stimuli patching_pairs=PATH`` is a known override name; the split keeps groups whole."""
from __future__ import annotations

import json

import pytest

from mechclaims.datasets.patching import PAIRS_PATH, load_pairs, split_by_group, tokenize_pairs
from mechclaims.errors import OptionError, StimuliError
from mechclaims.datasets.io import check_stimuli_overrides

GOOD = {"id": "a", "clean": "Mary was cold, so the teacher lent", "corrupt": "John was cold, so the teacher lent",
        "target": " her", "foil": " him"}


def _write(tmp_path, rows, name="pairs.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _many(**over):
    return [{**GOOD, "id": f"p{i}", "clean": f"{GOOD['clean']} {i}", "corrupt": f"{GOOD['corrupt']} {i}", **over}
            for i in range(12)]


def test_bundled_pairs_fit_the_default_tokenizer(tiny):
    pairs = load_pairs(PAIRS_PATH)
    assert len(pairs) >= 100 and len({p.group for p in pairs}) == 9
    tp = tokenize_pairs(tiny("tiny-llama"), pairs, PAIRS_PATH)  # SmolLM2's tokenizer
    assert all(len(s) == 1 for s in tp.swap)  # one token differs: the name
    assert {(p.target, p.foil) for p in pairs} == {(" her", " him"), (" him", " her")}


@pytest.mark.parametrize("bad, match", [
    ({"target": " him"}, "target and foil are both"),
    ({"corrupt": "SAME"}, "same text"),
    ({"clean": "Mary was cold, so the teacher lent "}, "ends in whitespace"),
])
def test_bad_records_name_the_line_and_the_fix(tmp_path, bad, match):
    rows = _many()
    rows[3] = {**rows[3], **bad}
    if bad.get("corrupt") == "SAME":
        rows[3]["corrupt"] = rows[3]["clean"]
    with pytest.raises(StimuliError, match=match) as e:
        load_pairs(_write(tmp_path, rows))
    assert "line 4" in str(e.value) and "'p3'" in str(e.value)


def test_missing_field_duplicate_id_and_too_few(tmp_path):
    rows = _many()
    del rows[2]["foil"]
    with pytest.raises(StimuliError, match="missing field 'foil'"):
        load_pairs(_write(tmp_path, rows))
    with pytest.raises(StimuliError, match="ids must be unique"):
        load_pairs(_write(tmp_path, _many()[:3] + [{**_many()[5], "id": "p0"}] + _many()[6:]))
    with pytest.raises(StimuliError, match="at least 10"):
        load_pairs(_write(tmp_path, _many()[:4]))


def test_per_model_rules(tmp_path, tiny):
    lm = tiny("tiny-gpt2")
    rows = _many()
    rows[1]["corrupt"] = rows[1]["corrupt"].replace("John", "Bartholomew-Smythe")
    with pytest.raises(StimuliError, match="same length"):
        tokenize_pairs(lm, load_pairs(p := _write(tmp_path, rows)), p)
    rows = _many(target=" herself and")
    with pytest.raises(StimuliError, match="single token"):
        tokenize_pairs(lm, load_pairs(p := _write(tmp_path, rows)), p)


def test_split_keeps_groups_whole():
    pairs = load_pairs(PAIRS_PATH)
    tr, te = split_by_group(pairs, 0.5, seed=0)
    assert sorted(tr + te) == list(range(len(pairs)))
    assert not {pairs[i].group for i in tr} & {pairs[i].group for i in te}
    assert split_by_group(pairs, 0.5, seed=0) == (tr, te)


def test_override_name_is_known_and_a_typo_is_a_usage_error(tmp_path):
    p = _write(tmp_path, _many())
    check_stimuli_overrides({"patching_pairs": str(p)})
    with pytest.raises(OptionError, match="Did you mean 'patching_pairs'"):
        check_stimuli_overrides({"patching_pair": str(p)})
