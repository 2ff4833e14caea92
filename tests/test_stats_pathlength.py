"""Path-length statistics on synthetic data with known answers, the passages loader, and the figures."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mechclaims.datasets.passages import DEFAULT_PASSAGES, check_token_counts, load_passages, passages_hash
from mechclaims.errors import StimuliError
from mechclaims.plots.pathlength import plot_cross_model, plot_pathlength_panels
from mechclaims.stats.pathlength import (
    cluster_bootstrap_counts, clustered_partial_spearman, cumulative_path, layer_profile, path_length_claim,
    shuffle_within_documents, within_document_permutation)
from mechclaims.stats.within_doc import freedman_lane, jackknife, partial_rho

FAST = dict(n_perm=300)


def make_data(seed: int, effect: float = 0.0, n_docs: int = 10, n_tok: int = 120, n_layers: int = 6,
              doc_sd: float = 0.0, pos_effect: float = 0.0):
    """Steps with a per-token scale; log p = effect * standardized total path + noise (+ optional confounds)."""
    rng = np.random.default_rng(seed)
    docs = np.repeat(np.arange(n_docs), n_tok)
    pos = np.tile(np.arange(n_tok), n_docs)
    scale = rng.gamma(4, 0.25, len(docs)) * (1 + pos_effect * pos / n_tok)
    steps = rng.gamma(3, 1, (len(docs), n_layers)) * scale[:, None]
    t = steps.sum(1)
    tz = (t - t.mean()) / t.std()
    doc_shift = rng.normal(0, doc_sd, n_docs)[docs]
    logp = effect * tz + rng.normal(size=len(docs)) + doc_shift + pos_effect * pos / n_tok
    return steps, logp, logp + rng.normal(0, 0.1, len(docs)), pos, docs


def _resid_corr(x, y, z):
    rx, ry, rz = (stats.rankdata(a) for a in (x, y, z))
    a = np.column_stack([np.ones_like(rz), rz])
    res = [v - a @ np.linalg.lstsq(a, v, rcond=None)[0] for v in (rx, ry)]
    return np.corrcoef(*res)[0, 1]


# --- building blocks -------------------------------------------------------------------------------------------

def test_partial_spearman_matches_residual_correlation():
    rng = np.random.default_rng(1)
    x, y, z = rng.normal(size=(3, 300))
    y = y + 0.4 * x + z
    got = clustered_partial_spearman(x, y, z, np.arange(300) % 7)
    assert got[0] == pytest.approx(_resid_corr(x, y, z), abs=1e-10)


def test_counts_reweighting_equals_concatenated_resample():
    """A draw with document counts equals the weighted statistic on the explicitly concatenated documents."""
    steps, logp, _, pos, docs = make_data(2, effect=0.3, n_docs=6, n_tok=40)
    x = steps.sum(1)
    counts = cluster_bootstrap_counts(docs, 5, seed=3)
    assert np.all(counts.sum(1) == 6)
    boot = clustered_partial_spearman(x, logp, pos, docs, counts)[:, 0]
    rx, ry, rz = (stats.rankdata(a) for a in (x, logp, pos))  # ranks held fixed, as in the module
    for b in range(5):
        idx = np.concatenate([np.flatnonzero(docs == d) for d in range(6) for _ in range(int(counts[b, d]))])
        a = np.column_stack([np.ones(len(idx)), rz[idx]])
        res = [v[idx] - a @ np.linalg.lstsq(a, v[idx], rcond=None)[0] for v in (rx, ry)]
        assert boot[b] == pytest.approx(np.corrcoef(*res)[0, 1], abs=1e-9)


def test_fixed_rank_bootstrap_close_to_reranked():
    """Holding ranks fixed moves the CI by O(1/n) only: compare against re-ranking every resample."""
    steps, logp, _, pos, docs = make_data(4, effect=0.3, n_docs=10, n_tok=100)
    x = steps.sum(1)
    counts = cluster_bootstrap_counts(docs, 400, seed=5)
    fixed = clustered_partial_spearman(x, logp, pos, docs, counts)[:, 0]
    exact = []
    for c in counts:
        idx = np.concatenate([np.flatnonzero(docs == d) for d in range(10) for _ in range(int(c[d]))])
        exact.append(_resid_corr(x[idx], logp[idx], pos[idx]))
    assert np.quantile(fixed, [0.025, 0.975]) == pytest.approx(np.quantile(exact, [0.025, 0.975]), abs=0.02)


def test_within_document_permutation_keeps_documents():
    docs = np.array(list("aaabbbbcc"))
    perm = within_document_permutation(docs, 50, seed=0)
    assert perm.shape == (50, 9)
    for row in perm:
        assert sorted(row) == list(range(9))
        assert np.array_equal(docs[row], docs)
    assert len({tuple(r) for r in perm}) > 10  # it does shuffle
    vals = np.arange(9)
    sh = shuffle_within_documents(vals, docs, seed=1)
    for d in "abc":
        assert sorted(sh[docs == d]) == sorted(vals[docs == d])


def test_within_document_estimand_ignores_document_means():
    """Shifting every token of a document (in x, y or both) changes nothing: the estimand is within documents."""
    steps, logp, _, pos, docs = make_data(6, effect=0.5)
    x = steps.sum(1)
    r = partial_rho(x, logp, pos, docs)[0]
    bump = np.random.default_rng(0).normal(0, 5, docs.max() + 1)[docs]
    assert partial_rho(x + 100 * bump, logp + bump, pos, docs)[0] == pytest.approx(r, abs=0.05)
    assert r > 0.2


def test_freedman_lane_null_is_centred_and_permutes_residuals():
    steps, logp, _, pos, docs = make_data(7, effect=0.5)
    x = steps.sum(1)
    obs, null, p = freedman_lane(x, logp, pos, docs, 300, seed=7)
    assert abs(null.mean()) < 0.02 and p < 0.01 and obs == pytest.approx(partial_rho(x, logp, pos, docs)[0])
    # a pure position effect in y is in the reduced model: it never reaches the null's residuals
    _, null2, p2 = freedman_lane(x, pos * 1.0 + np.random.default_rng(1).normal(size=len(pos)), pos, docs, 300, 1)
    assert p2 > 0.01


def test_jackknife_interval():
    steps, logp, _, pos, docs = make_data(8, effect=0.5, n_docs=12)
    est, se, (lo, hi) = jackknife(steps.sum(1), logp, pos, docs)
    assert lo < est < hi and se > 0 and lo > 0


# --- the claim: known answers -----------------------------------------------------------------------------------

@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), effect=st.sampled_from([-0.6, -0.4, 0.4, 0.6]))
def test_planted_effect_passes_with_its_sign(seed, effect):
    steps, logp, logit, pos, docs = make_data(seed, effect=effect)
    v = path_length_claim(steps, logp, logit, pos, docs, seed=seed, **FAST)
    assert v.passed, v.explain()
    assert np.sign(v.effect) == np.sign(effect)
    assert v.effect_ci[0] <= v.effect <= v.effect_ci[1]


def test_no_effect_fails_at_about_alpha():
    passed = [path_length_claim(*make_data(s), seed=s, **FAST).passed for s in range(40)]
    assert np.mean(passed) <= 0.15, f"false-positive rate {np.mean(passed):.2f} at alpha 0.05"


def test_autocorrelated_null_stays_near_alpha():
    """Strong within-document autocorrelation (AR(1), phi 0.9) in both series, no association: the within-document
    permutation alone rejects about half the time, so the document-jackknife interval must hold the rule down
    (tests/test_calibration.py measures the rate over 100 runs)."""
    from scipy.signal import lfilter

    passed = []
    for s in range(30):
        rng = np.random.default_rng(s)
        e = lfilter([1], [1, -0.9], rng.normal(size=(2, 12, 150)), axis=2).reshape(2, -1)
        docs, pos = np.repeat(np.arange(12), 150), np.tile(np.arange(150), 12)
        steps = np.exp(0.2 * e[0])[:, None] * np.ones((1, 3))
        passed.append(path_length_claim(steps, e[1], e[1], pos, docs, seed=s, **FAST).passed)
    assert np.mean(passed) <= 0.2, f"false-positive rate {np.mean(passed):.2f} at alpha 0.05"


def test_shuffled_targets_fail():
    steps, logp, logit, pos, docs = make_data(11, effect=0.6)
    assert path_length_claim(steps, logp, logit, pos, docs, **FAST).passed
    v = path_length_claim(steps, shuffle_within_documents(logp, docs, 0), shuffle_within_documents(logit, docs, 0),
                          pos, docs, **FAST)
    assert not v.passed, v.explain()


def test_document_level_confound_does_not_pass():
    """Documents differ in both mean path and mean log p, with nothing inside documents: the within-document
    null keeps document means, so the pooled association cannot pass."""
    rng = np.random.default_rng(12)
    steps, logp, logit, pos, docs = make_data(12, n_docs=10)
    bump = rng.normal(0, 1.0, 10)[docs]
    steps = steps * np.exp(0.5 * bump)[:, None]
    logp = logp + 2 * bump
    assert stats.spearmanr(steps.sum(1), logp)[1] < 1e-6  # naive token-level test is fooled
    v = path_length_claim(steps, logp, logp, pos, docs, **FAST)
    assert not v.passed, v.explain()


def test_document_specific_signs_do_not_pass():
    """Every document has a strong association, half positive and half negative: tokens look dependent within
    documents, but there is no population effect, and the document-clustered CI must cover 0."""
    steps, _, _, pos, docs = make_data(13, n_docs=12)
    t = steps.sum(1)
    sign = np.where(np.arange(12) % 2 == 0, 1.0, -1.0)[docs]
    rng = np.random.default_rng(13)
    logp = sign * 0.8 * (t - t.mean()) / t.std() + rng.normal(size=len(t))
    v = path_length_claim(steps, logp, logp, pos, docs, **FAST)
    assert not v.passed, v.explain()
    assert v.effect_ci[0] < 0 < v.effect_ci[1]


def test_position_confound_is_partialled_out():
    steps, logp, logit, pos, docs = make_data(14, pos_effect=3.0)
    assert stats.spearmanr(steps.sum(1), logp)[0] > 0.2  # both rise with position
    v = path_length_claim(steps, logp, logit, pos, docs, **FAST)
    assert abs(v.effect) < 0.1 and not v.passed, v.explain()


def test_position_zero_is_excluded():
    steps, logp, logit, pos, docs = make_data(15, n_docs=30, n_tok=12)  # short documents: 1 in 12 is position 0
    steps[pos == 0] *= 50.0  # anomalous norms at position 0 ...
    logp[pos == 0] += 20.0   # ... that line up with a high log p
    v = path_length_claim(steps, logp, logit, pos, docs, **FAST)
    assert v.details["n_excluded_position"] == 30
    assert not v.passed, v.explain()
    assert path_length_claim(steps, logp, logit, pos, docs, min_position=0, **FAST).passed


def test_reports_logit_postnorm_and_layers():
    steps, logp, logit, pos, docs = make_data(16, effect=0.5)
    v = path_length_claim(steps, logp, logit, pos, docs, last_step_postnorm=steps[:, -1] * 0.1, **FAST)
    for k in ("partial_rho_logit", "partial_rho_last_step_prenorm", "partial_rho_last_step_postnorm",
              "partial_rho_total_postnorm", "spearman_rho", "partial_rho_step_L5", "pooled_partial_rho", "jackknife_se"):
        assert np.isfinite(v.details[k]), k
    # a positive rescaling of the last step leaves its ranks, hence its rho, unchanged
    assert v.details["partial_rho_last_step_postnorm"] == pytest.approx(v.details["partial_rho_last_step_prenorm"])
    assert set(v.numbers()) >= {"partial_rho", "partial_rho_ci_low", "p", "null_mean"}


def test_degenerate_inputs_fail_with_reason():
    steps, logp, logit, pos, docs = make_data(17, n_docs=3)
    v = path_length_claim(steps, logp, logit, pos, docs, **FAST)
    assert not v.passed and v.outcome == "inconclusive" and "documents" in v.reason
    steps, logp, logit, pos, docs = make_data(18)
    v = path_length_claim(steps, np.zeros_like(logp), logit, pos, docs, **FAST)  # constant log p
    assert not v.passed and v.outcome == "inconclusive" and "non-finite" in v.reason
    with pytest.raises(ValueError, match="one value per token"):
        path_length_claim(steps, logp[:-1], logit, pos, docs)


def test_layer_profile_finds_the_planted_layer():
    rng = np.random.default_rng(19)
    steps, _, _, pos, docs = make_data(19, n_layers=5)
    logp = (steps[:, 2] - steps[:, 2].mean()) / steps[:, 2].std() * 0.3 + rng.normal(size=len(pos))
    pr = layer_profile(steps, logp, pos, docs, n_boot=300)
    assert pr.fraction.sum() == pytest.approx(1.0)
    assert np.all(pr.fraction_ci[0] <= pr.fraction) and np.all(pr.fraction <= pr.fraction_ci[1])
    assert np.argmax(pr.rho) == 2 and pr.rho_ci[0, 2] > 0
    assert pr.depth[-1] == 1.0
    assert cumulative_path(steps)[:, -1] == pytest.approx(steps.sum(1))


def test_vectorised_speed():
    import time
    steps, logp, logit, pos, docs = make_data(20, n_docs=12, n_tok=260, n_layers=30)
    t0 = time.perf_counter()
    path_length_claim(steps, logp, logit, pos, docs, last_step_postnorm=steps[:, -1])
    layer_profile(steps, logp, pos, docs)
    assert time.perf_counter() - t0 < 5.0  # 1,000 draws each; about 0.5 s on 2 cores


# --- passages loader ---------------------------------------------------------------------------------------------

def test_shipped_passages_are_valid():
    ps = load_passages(DEFAULT_PASSAGES, min_docs=8, min_words=150)
    assert len(ps) >= 8 and len({p.doc_id for p in ps}) == len(ps)
    assert all(len(p.text.split()) <= 400 and "Debian package" in p.source for p in ps)
    assert len(passages_hash(ps)) == 16


def test_text_file_documents_split_on_blank_lines(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("One wrapped\nline of prose here, long enough.\n\n\nA second document, also long enough here.\n")
    ps = sorted(load_passages(f, min_words=5), key=lambda p: p.line)  # loaded in canonical (text) order
    assert [p.doc_id for p in ps] == ["mine-1", "mine-2"]
    assert ps[0].text == "One wrapped line of prose here, long enough." and ps[1].line == 5


@pytest.mark.parametrize("body, match", [
    ([{"doc_id": "a", "source": "s", "text": "w " * 20}, {"doc_id": "a", "source": "s", "text": "w " * 20}],
     "line 3: doc_id 'a' repeats line 2"),
    ([{"doc_id": "a", "source": "s", "text": "too short"}], "line 2: document 'a' has 2 words"),
    ([{"doc_id": "a", "source": "s"}], "line 2: missing field 'text'"),
    ([{"doc_id": "a", "source": "s", "text": 5}], "field 'text' must be a string"),
])
def test_bad_jsonl_names_file_and_line(tmp_path, body, match):
    f = tmp_path / "p.jsonl"
    f.write_text("# comment\n" + "\n".join(json.dumps(r) for r in body) + "\n")
    with pytest.raises(StimuliError, match=match):
        load_passages(f)


def test_loader_boundary_errors(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("only one document with enough words to count as one\n")
    with pytest.raises(StimuliError, match="needs at least 5"):
        load_passages(f, min_docs=5)
    (tmp_path / "latin.txt").write_bytes("caf\xe9 ".encode("latin-1") * 20)
    with pytest.raises(StimuliError, match="not UTF-8"):
        load_passages(tmp_path / "latin.txt")
    with pytest.raises(StimuliError, match="does not exist"):
        load_passages(tmp_path / "missing.jsonl")
    ps = load_passages(f)
    with pytest.raises(StimuliError, match="past the model's context of 8"):
        check_token_counts(ps, [9], max_len=8)
    with pytest.raises(StimuliError, match="2 token"):
        check_token_counts(ps, [2], max_len=8)


# --- figures -----------------------------------------------------------------------------------------------------

def test_figures_are_written(tmp_path):
    steps, logp, logit, pos, docs = make_data(21, effect=0.4, n_layers=8)
    v = path_length_claim(steps, logp, logit, pos, docs, **FAST)
    pr = layer_profile(steps, logp, pos, docs, n_boot=100)
    p1 = plot_pathlength_panels(steps, logit, logp, pos, pr, tmp_path / "panels.png", verdict=v, title="synthetic")
    steps2, logp2, logit2, pos2, docs2 = make_data(22, n_layers=4)
    pr2 = layer_profile(steps2, logp2, pos2, docs2, n_boot=100)
    v2 = path_length_claim(steps2, logp2, logit2, pos2, docs2, **FAST)
    p2 = plot_cross_model({"a": pr, "b": pr2}, {"a": v, "b": v2}, tmp_path / "cross.png")
    for p in (p1, p2):
        assert p.exists() and p.stat().st_size > 10_000
