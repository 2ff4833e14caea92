"""Q/K RSA statistics on synthetic data with known answers, plus the word-categories loader."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics.pairwise import cosine_similarity as sk_cos

from mechclaims.datasets.categories import (DEFAULT_PATH, load_categories, make_category_set, n_tokens,
                                            word_positions)
from mechclaims.errors import StimuliError
from mechclaims.stats import rsa

N_CAT, PER = 4, 12
LABELS = np.repeat(np.arange(N_CAT), PER)


def anisotropic(rng, n_units=3, d=64, signal=0.0, mean_scale=4.0, labels=LABELS):
    """Rows share a large common mean (anisotropy: every cosine is high) plus ``signal`` x category centroid."""
    mean = rng.standard_normal(d) * mean_scale
    cent = rng.standard_normal((labels.max() + 1, d))
    return mean + signal * cent[labels] + rng.standard_normal((n_units, len(labels), d))


def test_cosine_matches_sklearn():
    X = np.random.default_rng(0).standard_normal((10, 7))
    np.testing.assert_allclose(rsa.cosine_similarity(X), sk_cos(X), atol=1e-12)
    Xc = X - X.mean(0)
    np.testing.assert_allclose(rsa.cosine_similarity(X, center=True), sk_cos(Xc), atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_label_permutation_equals_row_and_column_permutation(seed):
    rng = np.random.default_rng(seed)
    S = rsa.cosine_similarity(rng.standard_normal((24, 5)))
    lab = rng.integers(0, 3, 24)
    lab[:3] = [0, 1, 2]  # every group non-empty
    pi = rng.permutation(24)
    w1, a1 = rsa.within_across(S[pi][:, pi][None], lab)
    moved = np.empty_like(lab)
    moved[pi] = lab  # word pi[i] now carries label lab[i]
    w2, a2 = rsa.within_across(S[None], moved)
    np.testing.assert_allclose([w1, a1], [w2, a2], atol=1e-12)
    off = ~np.eye(24, dtype=bool)
    same = lab[:, None] == lab[None]
    Sp = S[pi][:, pi]
    np.testing.assert_allclose(w1[0, 0], Sp[same & off].mean(), atol=1e-12)
    np.testing.assert_allclose(a1[0, 0], Sp[~same].mean(), atol=1e-12)


def test_random_projection_shortcut_matches_explicit_weights():
    rng = np.random.default_rng(4)
    X = anisotropic(rng, n_units=1, d=40, signal=0.3)[0]
    short = rsa.random_projection_rho(X, 32, 16, n_draws=300, seed=1)
    explicit = [stats.spearmanr(rsa.upper(rsa.cosine_similarity(X @ rng.standard_normal((40, 32)))),
                                rsa.upper(rsa.cosine_similarity(X @ rng.standard_normal((40, 16)))))[0]
                for _ in range(300)]
    se = np.sqrt(short.var() / 300 + np.var(explicit) / 300)
    assert abs(short.mean() - np.mean(explicit)) < 4 * se
    assert 0.7 < short.std() / np.std(explicit) < 1.4


def _signal_and_nuisance(rng, n_units=3):
    """X = strong isotropic nuisance dims + weak category dims. Projections that read only the category dims
    share structure beyond what any random projection of X shows."""
    sig = np.repeat(rng.standard_normal((N_CAT, 8)), PER, 0) + 0.5 * rng.standard_normal((N_CAT * PER, 8))
    X = np.concatenate([np.broadcast_to(sig, (n_units,) + sig.shape),
                        3 * rng.standard_normal((n_units, N_CAT * PER, 56))], -1)
    return X


# --- loader ---------------------------------------------------------------------------------------------


def test_default_fixture_is_valid():
    cs = load_categories()
    assert len(cs.names) >= 3 and all(len(v) >= 10 for v in cs.categories.values())
    assert cs.template == "The next word is {word}" and len(cs.templates) >= 2
    assert cs.texts()[0] == f"The next word is {cs.words[0]}"
    assert len(cs.labels) == len(cs.words) and cs.hash() == load_categories(DEFAULT_PATH).hash()
    assert load_categories(template="I saw a {word}").texts()[0] == f"I saw a {cs.words[0]}"


@pytest.mark.parametrize("obj, msg", [
    ({"categories": {"a": ["x", "y", "z"]}}, "at least 2"),
    ({"categories": {"a": ["x", "y"], "b": ["u", "v", "w"]}}, "needs at least 3"),
    ({"categories": {"a": ["x", "y", "z"], "b": ["x", "v", "w"]}}, "'x' appears in both"),
    ({"categories": {"a": ["x", "y", "z z"], "b": ["u", "v", "w"]}}, "not a single word"),
    ({"template": "no slot", "categories": {"a": ["x", "y", "z"], "b": ["u", "v", "w"]}}, "exactly once"),
    ({"template": "{word} {x}", "categories": {"a": ["x", "y", "z"], "b": ["u", "v", "w"]}}, "brace"),
    ([1, 2], "JSON object"),
])
def test_bad_files_name_the_problem(tmp_path, obj, msg):
    p = tmp_path / "cats.json"
    p.write_text(json.dumps(obj))
    with pytest.raises(StimuliError, match=msg) as e:
        load_categories(p)
    assert str(p) in str(e.value)


def test_malformed_json_names_the_line(tmp_path):
    p = tmp_path / "cats.json"
    p.write_text('{"categories":\n {"a": [}')
    with pytest.raises(StimuliError, match="line 2"):
        load_categories(p)


class CharTok:
    """Fake fast tokenizer: words of up to 5 characters are one token, longer words split every 5 chars."""

    def __call__(self, text, add_special_tokens=True, return_offsets_mapping=False):
        offs, i = [(0, 0)], 0  # a BOS-like special token
        for w in text.split(" "):
            for s in range(0, len(w), 5):
                offs.append((i + s, i + min(s + 5, len(w))))
            i += len(w) + 1
        return {"input_ids": list(range(len(offs))), "offset_mapping": offs}


def test_multi_token_words_are_rejected_or_take_last_token():
    cs = make_category_set({"a": ["cat", "dog", "elephant"], "b": ["x", "y", "z"]}, "I saw {word} here")
    with pytest.raises(StimuliError, match=r"'elephant'.*model fake.*2 tokens"):
        word_positions(cs, CharTok(), "fake")
    _, pos = word_positions(cs, CharTok(), "fake", multi_token="last")
    assert pos[0] == 3 and pos[2] == 4  # [BOS, I, saw, cat] ; [BOS, I, saw, eleph, ant]
    assert list(n_tokens(cs, CharTok())) == [1, 1, 2, 1, 1, 1]


def test_default_words_are_single_tokens_for_the_shipped_tokenizers():
    from mechclaims.errors import ModelError
    from mechclaims.model.sources import minilm_dir
    from mechclaims.model.gguf import gguf_dir
    transformers = pytest.importorskip("transformers")
    cs = load_categories()
    try:
        toks = {"minilm-l6": transformers.AutoTokenizer.from_pretrained(minilm_dir()),
                "smollm2-135m": transformers.AutoTokenizer.from_pretrained(gguf_dir("smollm2-135m", tokenizer_only=True))}
    except ModelError as e:
        pytest.skip(str(e))
    for name, tok in toks.items():
        for t in cs.templates:
            ids, pos = word_positions(cs, tok, name, template=t)
            assert all(0 < p < len(i) for p, i in zip(pos, ids))
    with pytest.raises(StimuliError, match="smollm2-135m"):
        word_positions(make_category_set({"a": ["sofa", "x", "y"], "b": ["u", "v", "w"]}), toks["smollm2-135m"],
                       "smollm2-135m")
