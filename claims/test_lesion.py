"""Claim 4: ablating MLP neurons selected for " her"/" him" lowers that pronoun's logit difference.

Stimuli: ``fixtures/lesion_causal.jsonl`` (119 matched pairs, next token " her" or " him"; ``--stimuli
lesion_causal=PATH``) and ``fixtures/lesion_masked.jsonl`` (85 pairs with one [MASK]; ``--stimuli
lesion_masked=PATH``). Pairs are split by referent name (seeded, 40% held out): no held-out prompt names a referent
the selection saw (``mechclaims.datasets.lesion.split_by_name``). Site: ``blocks.{l}.mlp.hook_post`` (the input to
the down projection: only there is neuron i's value the coefficient of W_out row i in every family).

Precondition, per side (``test_lesion_clean_preference``): the model prefers the correct pronoun on more of the
side's held-out prompts than chance (one-sided binomial p < 0.05). A side at chance cannot show an ablation effect:
the layer is then ``inconclusive``, whatever the other side does, unless a testable side shows absence.

A. ``mlp_lesion_{rule}`` (``test_lesion_causal``, per layer and rule; ``test_lesion_causal_rule`` per model).
   Selection on the training pairs at the prediction position, k = 20 per side, two rules fixed before looking
   (``mechclaims.stats.lesion``): ``contrast`` = paired t-test + BH FDR (t>0 her, t<0 him, at most k by |t|);
   ``contribution`` = top k by mean direct contribution a_i * W_out[i] . (g * (u_target - u_foil)) / norm scale.
   Ablation: on each held-out prompt the side's set is set to its mean over the training prompts (mean ablation,
   which decides; zero ablation is reported) at the prediction position, in a real forward pass. Null: size-matched
   random sets of the same layer, mean-ablated the same way (``mechclaims.stats.lesion_test``: sequential draws, at
   most 200, judged by the Shapiro-checked normal tail). Rule, per layer: on both sides the effect is negative and
   p <= 0.05 / n_layers (Bonferroni over every layer of the model, whatever --layers or -k select). Refuted at a
   layer: on a testable side, the effect's excess over the random sets lies inside +-0.1 logit (the smallest effect
   of interest, stated before looking; TOST) or the set raises the target more than random sets. Model level: some
   layer supported (aggregate "any").
   Controls, per layer: ``lesion_{rule}_shuffled_labels`` (the same rule with neurons selected on training pairs whose
   labels are swapped in a random half: a pass means the rule finds neurons without the labels); and
   ``lesion_{rule}_unrelated_pair`` (the selected set must not move an unrelated logit difference, " the" minus
   " a", more than random sets do, two-sided: a pass means the neurons are not specific to the pronouns).
B. ``mlp_lesion_masked`` (BERT family, per layer): the original design, rule ``contrast`` at the pronoun token of
   filled training sentences, mean ablation at the [MASK] of held-out sentences; same null, rule and controls.
Falsified by: no layer where both sides' selected neurons lower the target beyond random sets of their size.

Own contrast: a stimuli file may declare two other single-token words (``#! {"classes": ["she", "he"]}``, records
``id``, ``she``, ``he``; ``fixtures/README_lesion.md``); read its first word for "her" and its second for "him"
above. A declared word that is not one token of the model is an error naming the file and the word.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mechclaims.forward.ablate import Runner, ablate_layer
from mechclaims.forward.capture import capture, encode, single_token_id
from mechclaims.datasets.lesion import (CAUSAL_PATH, MASK, MASKED_PATH, fill_mask, load_causal_pairs,
                                        load_masked_pairs, pair_sides, pairs_hash, split_by_name)
from mechclaims.errors import StimuliError
from mechclaims.plots.lesion import plot_effect_by_layer
from mechclaims.model.sites import base_of, site
from mechclaims.stats import lesion as L
from mechclaims.stats.lesion_test import Side, layer_verdict, unrelated_control
from mechclaims.verdict.outcome import load_expected
from mechclaims.verdict.verdict import Verdict
from mechclaims.model.weights import w_out

K, TEST_FRACTION, ALPHA, SESOI = L.DEFAULT_K, 0.4, 0.05, 0.1  # random sets: --lesion-null-sets (default 200)
UNRELATED = ("the", "a")
TOL = {"rtol": 1e-2, "atol": 1e-3}  # float32 forward passes; p-values move with the draws

# Recorded outcomes other than the default (claim: supported; control: failed), per test id, with the numbers:
# claims/expected/<this module>.yml, written by scripts/record_outcomes.py and reviewed like a baseline.
EXPECTED_OUTCOMES = load_expected(__file__)


def _direction(lm, sides: tuple[str, str]) -> np.ndarray:
    """(u_her - u_him) through the final norm's scale (centred for LayerNorm): rule (b)'s logit direction."""
    import torch

    norm = base_of(lm.model).get_submodule(lm.sitemap.final_norm)
    u = lm.model.get_output_embeddings().weight.detach().float().cpu().numpy()
    return L.logit_direction(u[single_token_id(lm, " " + sides[0])], u[single_token_id(lm, " " + sides[1])],
                             norm.weight.detach().float().cpu().numpy(), center=isinstance(norm, torch.nn.LayerNorm))


def _masked_positions(lm, texts: list[str], words: list[str] | None):
    ids, pos = encode(lm, [t.replace(MASK, lm.tokenizer.mask_token) for t in texts]), []  # RoBERTa: <mask>
    for t, x in zip(texts, ids):
        hits = [i for i, v in enumerate(x) if v == lm.tokenizer.mask_token_id]
        if len(hits) != 1:
            raise StimuliError(f"{t!r}: {MASK} must be one token of model {lm.name}; found {len(hits)}.")
        pos.append(hits[0])
    if words is None:
        return ids, pos
    filled = encode(lm, [fill_mask(t, w) for t, w in zip(texts, words)])
    for t, w, f, p, x in zip(texts, words, filled, pos, ids):
        if len(f) != len(x) or f[p] != single_token_id(lm, w):
            raise StimuliError(f"{t!r}: filling {MASK} with {w!r} changes the tokenization for {lm.name}.")
    return filled, pos


def _pairs(lm, mc) -> list:
    return (load_causal_pairs(mc.stimuli_path("lesion_causal", CAUSAL_PATH)) if lm.kind == "causal"
            else load_masked_pairs(mc.stimuli_path("lesion_masked", MASKED_PATH)))


def _stat(lm, mc, model_pool, tag: str, parts: tuple, fn):
    """``fn()`` once per input, kept on disk (mechclaims.store.statcache): stimuli hash, seed and draw bound in the key."""
    return model_pool.statistic(lm, tag, (pairs_hash(_pairs(lm, mc)), mc.seed, mc.lesion_null_sets, *parts), fn,
                                __file__)


def preconditions(lm, mc, model_pool) -> dict:
    """Each side's clean preference on the held-out prompts (``prep``'s ``pre``; cached on disk)."""
    return _stat(lm, mc, model_pool, "lesion-pre", (), lambda: prep(lm, mc, model_pool)["pre"])


def prep(lm, mc, model_pool) -> dict:
    """Split, training activations at every layer, the test-prompt runner and the per-side precondition (memoized)."""
    causal = lm.kind == "causal"
    path = mc.stimuli_path("lesion_causal", CAUSAL_PATH) if causal else mc.stimuli_path("lesion_masked", MASKED_PATH)
    pairs = _pairs(lm, mc)
    sides = pair_sides(pairs)
    for w in sides:  # the declared words must be single tokens of this model: say so, naming the file
        single_token_id(lm, (" " if causal else "") + w, source=f"lesion stimuli {path}: side {w!r}")

    def run() -> dict:
        train, test = split_by_name(pairs, TEST_FRACTION, mc.seed)
        n, sites = len(train), [site("mlp.hook_post", l) for l in range(lm.n_layers)]
        tr = [p.her for p in train] + [p.him for p in train]
        key = (pairs_hash(pairs), mc.seed, TEST_FRACTION, "by-name")
        if causal:
            a = model_pool.activations(lm, "lesion-train", key, lambda: capture(
                lm, encode(lm, tr), sites + ["ln_final.hook_in"], "last"))
            ref = a
            norm = base_of(lm.model).get_submodule(lm.sitemap.final_norm)
            x = a["ln_final.hook_in"].astype(float)
            spread = x.var(axis=1) if type(norm).__name__ == "LayerNorm" else (x ** 2).mean(axis=1)
            inv = 1.0 / np.sqrt(spread + getattr(norm, "eps", getattr(norm, "variance_epsilon", 1e-5)))
        else:
            ids, pos = _masked_positions(lm, tr, [sides[0]] * n + [sides[1]] * n)
            a = model_pool.activations(lm, "lesion-train-filled", key, lambda: capture(lm, ids, sites, pos))
            ids2, pos2 = _masked_positions(lm, tr, None)
            ref = model_pool.activations(lm, "lesion-train-mask", key, lambda: capture(lm, ids2, sites, pos2))
            inv = np.ones(2 * n)
        te = [p.her for p in test] + [p.him for p in test]
        side = np.repeat([0, 1], len(test))
        te_ids, te_pos = (encode(lm, te), None) if causal else _masked_positions(lm, te, None)
        te_pos = [len(x) - 1 for x in te_ids] if causal else te_pos
        runner = Runner(lm, te_ids, te_pos, np.c_[np.where(side == 0, 1.0, -1.0), np.ones(len(te))],
                        pairs=(sides, UNRELATED))
        right = runner.clean[:, 0] > 0
        pre = {}
        for i, s in enumerate(sides):
            k, m = int(right[side == i].sum()), int((side == i).sum())
            pre[s] = {"n_right": k, "n": m, "p": float(stats.binomtest(k, m, 0.5, alternative="greater").pvalue),
                      "p_wrong": float(stats.binomtest(k, m, 0.5, alternative="less").pvalue),
                      "margin": float(runner.clean[side == i, 0].mean())}
        return {"acts": {l: {sides[0]: a[s][:n], sides[1]: a[s][n:]} for l, s in enumerate(sites)},
                "ref_mean": {l: ref[s].mean(axis=0) for l, s in enumerate(sites)}, "inv": {sides[0]: inv[:n],
                sides[1]: inv[n:]}, "runner": runner, "side": side, "pre": pre, "causal": causal, "n_train": n,
                "prompts": {s: np.flatnonzero((side == i) & right) for i, s in enumerate(sides)},
                "names_shared": 0, "sides": sides}

    return model_pool.cached((lm.name, lm.fingerprint, "lesion-prep", pairs_hash(pairs), mc.seed), run)


def rules(lm) -> tuple[str, ...]:
    return ("contrast", "contribution") if lm.kind == "causal" else ("contrast",)


def _select(lm, p: dict, layer: int, rule: str, rows: np.ndarray, flip: np.ndarray | None = None) -> dict:
    a, (s0, s1) = p["acts"][layer], p["sides"]
    her, him, ih, im = a[s0][rows], a[s1][rows], p["inv"][s0][rows], p["inv"][s1][rows]
    if flip is not None:  # shuffled-label control: swap her/him within the flipped pairs
        (her, him), (ih, im) = L.flip_pairs(her, him, flip), L.flip_pairs(ih, im, flip)
    if rule == "contrast":
        return L.select_by_contrast(L.paired_neuron_ttest(her, him, alpha=ALPHA), K, sides=(s0, s1))
    d, w = _direction(lm, (s0, s1)), w_out(lm, layer)
    return L.select_by_contribution({s0: L.direct_contributions(her, w, d, ih),
                                     s1: L.direct_contributions(him, w, -d, im)}, K)


def layer_results(lm, mc, model_pool, layer: int) -> dict[str, Verdict]:
    """Every rule's gated verdict at one layer (memoized: the per-layer, model-level and control tests share it)."""
    def run() -> dict[str, Verdict]:
        p = prep(lm, mc, model_pool)
        n, every = p["n_train"], np.arange(p["n_train"])
        flip = np.random.default_rng(mc.seed + 1).random(n) < 0.5
        h1, h2 = L.split_halves(n, mc.seed)
        sel = {}
        for r in rules(lm):
            sel[r], sel[f"shuffled_{r}"] = _select(lm, p, layer, r, every), _select(lm, p, layer, r, every, flip)
        side_names = p["sides"]
        above = {s: p["pre"][s]["p"] < ALPHA for s in side_names}
        abl = ablate_layer(p["runner"], layer, p["prompts"], sel, p["ref_mean"][layer], n_max=mc.lesion_null_sets,
                           seed=mc.seed, null_sides=tuple(s for s in side_names if above[s]), sides=side_names)
        alpha = ALPHA / lm.n_layers

        def sides(name: str) -> dict[str, Side]:
            out = {}
            for s in side_names:
                idx = sel[name][s]
                m = abl["sel"].get((name, s, "mean"))
                z = abl["sel"].get((name, s, "zero"))
                nl = abl["null"].get((s, len(idx)))
                out[s] = Side(s, above[s], len(idx), m[:, 0] if m is not None else np.zeros(0),
                              z[:, 0] if z is not None else np.zeros(0),
                              nl[:, :, 0].mean(1) if nl is not None else np.zeros(0),
                              m[:, 1] if m is not None else np.zeros(0),
                              nl[:, :, 1].mean(1) if nl is not None else np.zeros(0))
            return out

        res = {}
        for r in rules(lm):
            v = layer_verdict(sides(r), claim=f"mlp_lesion_{r}@L{layer}", alpha=alpha, sesoi=SESOI)
            v.details["stability_jaccard"] = L.selection_stability(_select(lm, p, layer, r, h1),
                                                                   _select(lm, p, layer, r, h2))
            ctl = {f"lesion_{r}_shuffled_labels": layer_verdict(sides(f"shuffled_{r}"), role="control", alpha=alpha,
                                                                sesoi=SESOI, claim=f"lesion_{r}_shuffled@L{layer}"),
                   f"lesion_{r}_unrelated_pair": unrelated_control(sides(r), claim=f"lesion_{r}_unrelated@L{layer}",
                                                                   alpha=alpha)}
            res[r] = v.gate(ctl)
        return res

    return _stat(lm, mc, model_pool, "lesion-layer", (layer,), run)


def model_results(lm, mc, model_pool) -> dict[int, dict[str, Verdict]]:
    return {l: layer_results(lm, mc, model_pool, l) for l in range(lm.n_layers)}


RULES = ("contrast", "contribution")


@pytest.mark.claim("mlp_lesion_{rule}", family="causal", kinds=("causal",),
                   controls=("lesion_{rule}_shuffled_labels", "lesion_{rule}_unrelated_pair"), aggregate="any")
@pytest.mark.parametrize("rule", RULES)
def test_lesion_causal(lm, layer, rule, mc, model_pool, baseline, record, expect):
    """At this layer, mean-ablating the neurons the rule selects lowers the target's logit difference on both sides
    more than size-matched random sets (p <= alpha / n_layers each), gated on its two controls."""
    v = layer_results(lm, mc, model_pool, layer)[rule]
    record(v, layer=layer, site=site("mlp.hook_post", layer), rule=rule)
    baseline.check(v.numbers(), lm, default_tolerance=TOL)
    expect(v)


def model_verdict(lm, mc, model_pool, rule: str, claim: str) -> Verdict:
    per = {l: r[rule] for l, r in model_results(lm, mc, model_pool).items()}
    names = list(next(iter(per.values())).controls)
    ctl = {}
    for c in names:
        cs = {l: x.controls[c] for l, x in per.items()}
        passing = [l for l, x in cs.items() if x.passed]
        untestable = [l for l, x in cs.items() if not x.testable]
        why = [f"passes at layers {passing}"] if passing else []
        if untestable:  # say why in plain words: an inconclusive control with no reason sends users hunting
            first = next((cs[l].reason for l in untestable if cs[l].reason), "")
            why.append(f"could not be evaluated at {len(untestable)} layer(s) {untestable}" + (f": {first}" if first
                                                                                                else ""))
        ctl[c] = Verdict(claim=c, statistic_name="n_layers_passing", statistic=float(len(passing)), role="control",
                         rule="passes at some layer", passed=bool(passing), testable=not untestable,
                         reason="; ".join(why))
    pre, side_names = preconditions(lm, mc, model_pool), pair_sides(_pairs(lm, mc))
    v = Verdict(claim=claim, statistic_name="n_layers_supported",
                statistic=float(sum(x.outcome == "supported" for x in per.values())), passed=any(x.passed for x in
                per.values()), rule=f"some layer supported (each at alpha / {lm.n_layers})",
                layers={l: x.outcome for l, x in per.items()}, aggregate="any",
                details={**{f"{s}.{k}": float(v) for s in side_names for k, v in pre[s].items()},
                         "n_layers_rule_passes": float(sum(x.passed for x in per.values()))},
                reason="; ".join(sorted({x.reason for x in per.values() if x.reason})))
    return v.gate(ctl)


@pytest.mark.claim("mlp_lesion_{rule}", family="causal", kinds=("causal",),
                   controls=("lesion_{rule}_shuffled_labels", "lesion_{rule}_unrelated_pair"), aggregate="any")
@pytest.mark.parametrize("rule", RULES)
def test_lesion_causal_rule(lm, rule, mc, model_pool, artifacts, record, expect):
    """Model level: some layer supported. Plots the effect per layer against the random-set band."""
    v = model_verdict(lm, mc, model_pool, rule, f"mlp_lesion_{rule}")
    _plot(lm, mc, model_pool, rule, artifacts)
    record(v, rule=rule)
    expect(v)


@pytest.mark.claim("lesion_{rule}_{control}", family="causal", kinds=("causal",), control_of="mlp_lesion_{rule}")
@pytest.mark.control
@pytest.mark.parametrize("control", ["shuffled_labels", "unrelated_pair"])
@pytest.mark.parametrize("rule", RULES)
def test_lesion_control_fails(lm, rule, control, mc, model_pool, record, expect):
    """Each control of the rule must fail at every layer."""
    v = model_verdict(lm, mc, model_pool, rule, f"mlp_lesion_{rule}").controls[f"lesion_{rule}_{control}"]
    record(v, rule=rule, control=control)
    expect(v)


@pytest.mark.claim("mlp_lesion_masked", family="causal", kinds=("masked",),
                   controls=("lesion_contrast_shuffled_labels", "lesion_contrast_unrelated_pair"), aggregate="any")
def test_lesion_masked(lm, layer, mc, model_pool, baseline, record, expect):
    """The original BERT design: her/him neurons selected at the pronoun token of training sentences, mean-ablated
    at the [MASK] of held-out sentences, against size-matched random sets (alpha / n_layers)."""
    v = layer_results(lm, mc, model_pool, layer)["contrast"]
    record(v, layer=layer, site=site("mlp.hook_post", layer), rule="contrast")
    baseline.check(v.numbers(), lm, default_tolerance=TOL)
    expect(v)


@pytest.mark.claim("lesion_clean_preference", family="observational", kinds=("causal", "masked"),
                   controls=("prefers_the_other_pronoun",))
def test_lesion_clean_preference(lm, mc, model_pool, baseline, record, expect):
    """Precondition of claim 4, as a claim: on the held-out prompts of each side the model prefers the correct
    pronoun more often than chance (one-sided binomial p < 0.05 per side). Control: on some side it prefers the
    *other* pronoun more often than chance (a prior for one pronoun, not reference, would do that). Refuted: a side
    significantly below chance."""
    pre, side_names = preconditions(lm, mc, model_pool), pair_sides(_pairs(lm, mc))
    det = {f"{s}.{k}": float(v) for s in side_names for k, v in pre[s].items()}
    wrong = [s for s in side_names if pre[s]["p_wrong"] < ALPHA]
    ctl = Verdict(claim="prefers_the_other_pronoun", statistic_name="n_sides", statistic=float(len(wrong)),
                  rule="some side prefers the other pronoun (one-sided binomial p < 0.05)", passed=bool(wrong),
                  role="control", reason=f"on {wrong}" if wrong else "")
    v = Verdict(claim="lesion_clean_preference", statistic_name="min_side_accuracy",
                statistic=min(pre[s]["n_right"] / pre[s]["n"] for s in side_names),
                p=max(pre[s]["p"] for s in side_names),
                rule="accuracy > 0.5 on each side, one-sided binomial p < 0.05 on each",
                passed=all(pre[s]["p"] < ALPHA for s in side_names), details=det, absent=bool(wrong),
                absence=f"below chance on {wrong}" if wrong else "").gate({"prefers_the_other_pronoun": ctl})
    record(v)
    baseline.check(v.numbers(), lm, default_tolerance=TOL)
    expect(v)


def _plot(lm, mc, model_pool, rule: str, artifacts) -> None:
    per, side_names = model_results(lm, mc, model_pool), pair_sides(_pairs(lm, mc))
    layers = sorted(per)
    vs = [per[l][rule] for l in layers]

    def col(key: str) -> np.ndarray:  # the mean over the two sides
        return np.array([np.nanmean([v.details.get(f"{s}.{key}", np.nan) for s in side_names]) for v in vs])

    band = {rule: {"effect": col("effect"), "null_q50": col("null_mean"), "null_q05": col("null_q05"),
                   "null_q95": col("null_q95"), "zero_effect": col("zero_ablation_effect"),
                   "passed": np.array([v.outcome == "supported" for v in vs])}}
    plot_effect_by_layer(layers, band, artifacts.path(f"effect_by_layer_{rule}.png"),
                         title=f"{lm.name}: mean-ablation effect per layer, rule {rule} (mean of the two sides)")
