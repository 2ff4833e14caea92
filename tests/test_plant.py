"""Planted mechanisms (mechclaims.model.plant) do what they say, measured with the forward engine on held-out stimuli.

Claim: each plant puts its mechanism at its layer with about its size, and nothing else: the planted model's weights
outside the entries it lists are bit-identical to the original, the original model is untouched (same weight
fingerprint), and the planted copy has its own name and fingerprint. Sizes are set on the claims' training stimuli, so
every number checked here is read on held-out stimuli (the lesion split by name, the patching groups, the GED windows'
other half). Falsified by a planted effect far from its size, an effect where the plant says there is none, a
changed weight outside the listed ones, or a changed original.

The random tiny models carry no gender anywhere, so the pronoun plants stand on the gender channel
(``plant_gender_channel``: names or gendered words carry it, one head moves it forward); "the unedited twin" of a
pronoun plant is that channel model.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mechclaims.datasets.categories import word_positions
from mechclaims.datasets.lesion import load_causal_pairs, split_by_name
from mechclaims.datasets.patching import load_pairs as load_patching_pairs, split_by_group, tokenize_pairs
from mechclaims.forward import patching_runs as R
from mechclaims.forward.capture import capture, encode
from mechclaims.model.fingerprint import weight_fingerprint
from mechclaims.model.plant import (answer_partners, dose_response, edited_names, lexicon_channel, plant_ged_context,
                                    plant_ged_token, plant_lesion, plant_lesion_prior, plant_patching, plant_qk,
                                    plant_qk_mean_projection, plant_silent_mlp, referent_channel)
from mechclaims.model.plant_ged import ged_windows, pronoun_pre
from mechclaims.model.plant_lesion import ablation_effect, lesion_runner, lesion_training
from mechclaims.model.plant_qk import qk_word_inputs
from mechclaims.model.sites import site
from mechclaims.model.weights import model_path
from mechclaims.stats.additivity import rel_err
from mechclaims.stats.rsa_rotation import delta_batch

FAMILIES = ("tiny-gpt2", "tiny-llama")
LAYER = 2  # of 4; the channel's mover is at layer 0
PATCH_LAYER = 2
SIZE = 0.2  # logits: the tiny models' logit differences are bounded by sqrt(d) |g (u_her - u_him)| ~ 1.7


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/claim_direct.py


@pytest.fixture(scope="module", params=FAMILIES)
def base(request, tiny):
    lm = tiny(request.param)
    return lm, weight_fingerprint(lm.model)


@pytest.fixture(scope="module")
def channel(base):
    return referent_channel(base[0], layer=0)


def assert_only_listed_changed(original, planted) -> None:
    """Outside ``edited_names`` every tensor is bit-identical; each listed entry changed; identities are new."""
    a, b = original.model.state_dict(), planted.model.state_dict()
    listed = edited_names(planted)
    assert set(a) == set(b)
    same = [n for n in a if n not in listed and not torch.equal(a[n], b[n])]
    assert not same, f"changed but not listed: {same}"
    assert all(not torch.equal(a[n], b[n]) for n in listed if n in a), "a listed entry is unchanged"
    assert planted.name.startswith(original.name + "+plant:") and planted.fingerprint != original.fingerprint
    assert planted.fingerprint == weight_fingerprint(planted.model)


def lesion_heldout(lm):
    _, test = split_by_name(load_causal_pairs(), 0.4, 0)
    return lesion_runner(lm, {"her": encode(lm, [p.her for p in test]), "him": encode(lm, [p.him for p in test])})


def train_mean(lm, layer, neurons) -> np.ndarray:
    """The neurons' mean at the prediction position over the training prompts (the claim's mean ablation)."""
    ids = lesion_training(lm)
    a = capture(lm, ids["her"] + ids["him"], [site("mlp.hook_post", layer)], "last", show=False)
    return a[site("mlp.hook_post", layer)][:, neurons].mean(0)


def test_lesion_plant(base, channel):
    lm, fp = base
    p = plant_lesion(channel, LAYER, SIZE)
    runner, prompts = lesion_heldout(p)
    twin, twin_prompts = lesion_heldout(channel)
    sel = {s: np.array(v) for s, v in p.extra["plant"].details["neurons"].items()}
    for side, other in (("her", "him"), ("him", "her")):
        mean = train_mean(p, LAYER, sel[side])
        eff = ablation_effect(runner, LAYER, prompts[side], sel[side], mean).mean(0)
        zero_other = ablation_effect(runner, LAYER, prompts[other], sel[side], None).mean(0)
        twin_eff = ablation_effect(twin, LAYER, twin_prompts[side], sel[side], train_mean(channel, LAYER, sel[side]))
        print(f"{p.name} {side}: mean-ablation {eff[0]:+.3f} (planted -{SIZE}), the-a {eff[1]:+.3f}, zero-ablation "
              f"on {other} prompts {zero_other[0]:+.3f}, twin {twin_eff[:, 0].mean():+.3f}")
        assert eff[0] == pytest.approx(-SIZE, abs=0.3 * SIZE)  # held-out names: not the prompts it was sized on
        assert abs(eff[1]) < 0.15 * SIZE  # no write on " the" - " a"
        assert abs(zero_other[0]) < 0.25 * SIZE  # silent in the other side's contexts
        assert abs(twin_eff[:, 0].mean()) < 0.25 * SIZE  # the same units on the unedited twin do nothing
    right = [(runner.clean[prompts[s], 0] > 0).mean() for s in ("her", "him")]
    assert min(right) > 0.9, f"the planted model should prefer the right pronoun on held-out prompts: {right}"
    assert_only_listed_changed(lm, p)
    assert weight_fingerprint(lm.model) == fp and weight_fingerprint(channel.model) == channel.fingerprint


def test_lesion_unrelated_confound(base, channel):
    p = plant_lesion(channel, LAYER, SIZE, unrelated=SIZE)
    runner, prompts = lesion_heldout(p)
    for side, idx in p.extra["plant"].details["neurons"].items():
        eff = ablation_effect(runner, LAYER, prompts[side], np.array(idx), train_mean(p, LAYER, idx)).mean(0)
        print(f"{p.name} {side}: target {eff[0]:+.3f}, the-a {eff[1]:+.3f} (planted -{SIZE} each)")
        assert eff[0] == pytest.approx(-SIZE, abs=0.3 * SIZE)
        assert eff[1] == pytest.approx(-SIZE, abs=0.3 * SIZE)  # the same sign on both sides: not the label
    assert_only_listed_changed(base[0], p)


def test_lesion_prior_confound(base, channel):
    p = plant_lesion_prior(channel, LAYER, SIZE, side="her")
    runner, prompts = lesion_heldout(p)
    idx = np.array(p.extra["plant"].details["neurons"])
    zero = {s: ablation_effect(runner, LAYER, prompts[s], idx, None)[:, 0].mean() for s in prompts}
    mean = {s: ablation_effect(runner, LAYER, prompts[s], idx, train_mean(p, LAYER, idx))[:, 0].mean() for s in prompts}
    print(f"{p.name}: zero ablation her {zero['her']:+.3f} him {zero['him']:+.3f} (him prompts read him - her); "
          f"mean ablation her {mean['her']:+.3f} him {mean['him']:+.3f}")
    # Zero ablation removes the prior on every prompt: " her" loses ~size whatever the label (him prompts gain it).
    assert zero["her"] == pytest.approx(-SIZE, abs=0.35 * SIZE)
    assert -zero["him"] == pytest.approx(-SIZE, abs=0.35 * SIZE)
    assert max(abs(mean["her"]), abs(mean["him"])) < 0.25 * SIZE  # no label in it: mean ablation sees ~nothing
    assert_only_listed_changed(base[0], p)


def test_qk_plant(base):
    lm, fp = base
    p = plant_qk(lm, 1, SIZE)
    X, cs = qk_word_inputs(p, 1)
    ids, pos = word_positions(cs, lm.tokenizer, lm.name)
    got, was = (capture(m, ids, [site("attn.hook_q", 1), site("attn.hook_k", 1)], pos, show=False) for m in (p, lm))
    d = {k: [float(delta_batch(a[site(f"attn.hook_{k}", 1)].reshape(len(X), -1)[None], cs.labels)[0]) for a in (was, got)]
         for k in ("q", "k")}
    perm = np.random.default_rng(0).permutation(cs.labels)
    dp = [float(delta_batch(a[site("attn.hook_q", 1)].reshape(len(X), -1)[None], perm)[0]) for a in (was, got)]
    print(f"{p.name}: delta q {d['q'][0]:.3f} -> {d['q'][1]:.3f}, k {d['k'][0]:.3f} -> {d['k'][1]:.3f}, "
          f"permuted labels {dp[0]:.3f} -> {dp[1]:.3f}")
    assert d["q"][1] - d["q"][0] == pytest.approx(SIZE, abs=0.01)  # captured: the plant's own q path agrees
    assert d["k"][1] - d["k"][0] > 0.5 * SIZE
    assert abs(dp[1] - dp[0]) < 0.25 * SIZE  # category structure, not a general rise in similarity
    assert_only_listed_changed(lm, p)
    assert weight_fingerprint(lm.model) == fp


def test_qk_mean_projection_confound(base):
    lm, _ = base
    p = plant_qk_mean_projection(lm, 1)
    X, cs = qk_word_inputs(lm, 1)
    m = X.mean(0) / np.linalg.norm(X.mean(0))
    q0, k0 = model_path(p, 1)(X)
    q1, k1 = model_path(p, 1)(X + 5.0 * m)  # the mean direction is in W_Q's and W_K's null space
    assert np.abs(q1 - q0).max() < 1e-4 * max(1.0, np.abs(q0).max()) and np.abs(k1 - k0).max() < 1e-4 * max(1.0, np.abs(k0).max())
    det = p.extra["plant"].details
    print(p.name, {g: (round(det["delta_before"][g][0], 4), round(det["delta_after"][g][0], 4)) for g in det["delta_after"]})
    assert_only_listed_changed(lm, p)


GED_LAYER = 1


@pytest.fixture(scope="module")
def lexicon(base):
    """Gendered context words carry gender and the mover at GED_LAYER spreads it: before GED_LAYER no position
    holds its context's gender (the random model's d at the pronoun, token fixed, is ~0)."""
    lm, _ = base
    held = ged_windows(n_per_label=60, seed=0)
    ch = lexicon_channel(lm, layer=GED_LAYER, windows=held)
    return ch, held


def cohen_d(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.mean() - b.mean()) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))


@pytest.mark.parametrize("which", ["context", "token"])
def test_ged_plants(base, lexicon, which):
    """Context: on the channel model, the planted units separate her- from him-contexts at the pronoun with the token
    held fixed (either rendering), and not the token; on the random model (no channel) the same units do not.
    Token: on the random model, the planted units separate the renderings of the same windows, not the contexts."""
    lm, fp = base
    ch, held = lexicon
    p = plant_ged_context(ch, GED_LAYER, 3.0, windows=held) if which == "context" else \
        plant_ged_token(lm, GED_LAYER, 3.0, windows=held)
    det = p.extra["plant"].details
    hold = np.setdiff1d(np.arange(len(held)), det["fit"])
    lab = np.asarray(held.labels)[hold]

    def ds(m):
        pre = {c: v[hold, 0] for c, v in pronoun_pre(m, GED_LAYER, held, det["neurons"][:1]).items()}
        return {c: cohen_d(pre[c][lab == "her"], pre[c][lab == "him"]) for c in pre}, cohen_d(pre["her"], pre["him"])
    (ctx, tok), (ctx0, _) = ds(p), ds(lm)
    print(f"{p.name}: held-out context d (token fixed) { {c: round(v, 3) for c, v in ctx.items()} }, token d "
          f"{tok:.2f}; the same unit on {lm.name}: context d { {c: round(v, 3) for c, v in ctx0.items()} }")
    if which == "context":
        assert min(ctx.values()) > 0.5 and abs(tok) < 0.2 and max(abs(v) for v in ctx0.values()) < 0.3
    else:
        assert tok > 2.0 and max(abs(v) for v in ctx.values()) < 0.5
    assert_only_listed_changed(lm, p)
    assert weight_fingerprint(lm.model) == fp


def test_patching_plant(base, channel):
    """The planted MLP carries its share of F - C (patching its output restores it); the final residual at its layer
    carries the answer; an unrelated source that carries the clean answer passes the control's rule, the claim's own
    partner (the base's answer) does not."""
    lm, _ = base
    size = 2 * SIZE
    p = plant_patching(channel, PATCH_LAYER, size)
    pairs = load_patching_pairs()
    _, test = split_by_group(pairs, 0.5, 0)
    tp = tokenize_pairs(p, pairs).subset(test)
    F, C = R.logit_diffs(p, tp)
    F0, C0 = R.logit_diffs(channel, tp)
    comp = R.component_sweep(p, tp.corrupt, tp.clean, tp.target, tp.foil, [[site("hook_mlp_out", PATCH_LAYER)]])[:, 0]
    last = [np.array([n - 1]) for n in tp.length]
    res = R.residual_sweep(p, tp.corrupt, tp.clean, last, tp.target, tp.foil, [0, PATCH_LAYER + 1])
    share = lambda m: float(np.mean(m - C) / np.mean(F - C))  # noqa: E731 - the claims' ratio of means
    partner = answer_partners(tp, range(len(test)))
    ok = partner >= 0
    src_clean = [tp.clean[j] for j in partner[ok]]
    src_corrupt = [tp.corrupt[j] for j in partner[ok]]
    sub = tp.subset(np.flatnonzero(ok))
    last_ok = [np.array([n - 1]) for n in sub.length]
    carry = R.residual_sweep(p, sub.corrupt, src_clean, last_ok, sub.target, sub.foil, [PATCH_LAYER + 1])[:, 0]
    claim_ctl = R.residual_sweep(p, sub.corrupt, src_corrupt, last_ok, sub.target, sub.foil, [PATCH_LAYER + 1])[:, 0]
    Fo, Co = F[ok], C[ok]
    sh = lambda m: float(np.mean(m - Co) / np.mean(Fo - Co))  # noqa: E731
    print(f"{p.name}: held-out F-C {np.mean(F - C):.3f} vs twin {np.mean(F0 - C0):.3f} (planted +{size}); share of "
          f"mlp_out[{PATCH_LAYER}] {share(comp):.3f} (planted part {(np.mean(F - C) - np.mean(F0 - C0)) / np.mean(F - C):.3f}); final resid share L0 {share(res[:, 0]):.3f}, L{PATCH_LAYER + 1} "
          f"{share(res[:, 1]):.3f}; answer-carrying source {sh(carry):.3f}, the claim's partner {sh(claim_ctl):.3f}")
    assert np.mean(F - C) - np.mean(F0 - C0) == pytest.approx(size, abs=0.3 * size)
    planted = (np.mean(F - C) - np.mean(F0 - C0)) / np.mean(F - C)  # the planted part of F - C
    assert share(comp) == pytest.approx(planted, rel=0.25)
    # The final residual after the plant carries the answer, but how much of it shows there depends on how the next
    # random block reads the gender channel at the last token: tiny-gpt2 0.87, tiny-llama 0.36 (at layer 3, the
    # last block, tiny-llama gave 0.14: its fitted read picks up what layer-3 attention brings from the name).
    assert share(res[:, 1]) > 0.3
    assert abs(share(res[:, 0])) < 1e-6  # the final token is the same in both prompts
    assert sh(carry) > sh(claim_ctl) + 0.2 and abs(sh(claim_ctl)) < 0.2
    assert_only_listed_changed(lm, p)


def test_silent_mlp_and_dose_response(base):
    lm, fp = base
    texts = ["The cat sat on the mat because it was warm.", "A short second sentence."]
    ids = encode(lm, texts)
    sites = [site(k, l) for l in (1, 2) for k in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out")]
    a0 = capture(lm, ids, sites, "all", show=False)

    def measure(m):
        a = capture(m, ids, sites, "all", show=False)
        err = rel_err(a[site("hook_resid_pre", 2)], a[site("hook_resid_pre", 1)] + a[site("hook_attn_out", 1)]).max()
        ratio = np.linalg.norm(a[site("hook_mlp_out", 1)]) / np.linalg.norm(a0[site("hook_mlp_out", 1)])
        return {"drop_mlp_rel_err": float(err), "mlp_out_ratio": float(ratio)}
    rows = dose_response(lambda s: plant_silent_mlp(lm, 1, s), [0.0, 0.5, 1.0], measure)
    print(lm.name, rows)
    assert rows[0]["drop_mlp_rel_err"] < 1e-6  # the drop_mlp decomposition is exact at layer 1 (tolerance 1e-5)
    assert [r["mlp_out_ratio"] for r in rows] == pytest.approx([0.0, 0.5, 1.0], abs=1e-5)
    assert rows[2]["drop_mlp_rel_err"] > 1e-3  # unplanted: dropping the MLP is wrong
    assert_only_listed_changed(lm, plant_silent_mlp(lm, 1, 0.0))
    assert weight_fingerprint(lm.model) == fp
