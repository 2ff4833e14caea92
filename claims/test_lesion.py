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
   random sets of the same layer, mean-ablated the same way (``mechclaims.stats.lesion_decision``: sequential draws, at
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

from mechclaims.claim import StimuliSet, Verdict, across_layers, control_tests, controls
from mechclaims.datasets.lesion import (MASK, fill_mask, load_causal_pairs, load_masked_pairs, pair_sides,
                                        pairs_hash, split_by_name)
from mechclaims.errors import StimuliError
from mechclaims.forward.ablate import Runner, ablate_layer
from mechclaims.forward.capture import capture, encode, single_token_id
from mechclaims.model.sites import site
from mechclaims.model.weights import logit_direction, w_out
from mechclaims.plots.lesion import plot_effect_by_layer
from mechclaims.stats import lesion as L
from mechclaims.stats.lesion_decision import Side, layer_verdict
from mechclaims.verdict.expected import load_expected

K, TEST_FRACTION, ALPHA, SESOI = L.DEFAULT_K, 0.4, 0.05, 0.1  # random sets: --lesion-null-sets (default 200)
UNRELATED = ("the", "a")
RULES = ("contrast", "contribution")
STIMULI = {"lesion_causal": StimuliSet("../fixtures/lesion_causal.jsonl", load_causal_pairs, pairs_hash),
           "lesion_masked": StimuliSet("../fixtures/lesion_masked.jsonl", load_masked_pairs, pairs_hash)}
TOL = {"rtol": 1e-2, "atol": 1e-3}  # float32 forward passes; p-values move with the draws
EXPECTED_OUTCOMES = load_expected(__file__)  # recorded outcomes other than the default, with their numbers


def causal(ctx) -> bool:
    return ctx.lm.kind == "causal"


def pairs(ctx) -> list:
    return ctx.stimuli("lesion_causal" if causal(ctx) else "lesion_masked")


def masked_positions(ctx, texts: list[str], words: list[str] | None):
    """Token ids and the [MASK] position of each text (filled with ``words`` when given: the same tokenization)."""
    lm = ctx.lm
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


def train_acts(ctx, key: str, seed: int) -> dict:
    """Training activations at the prediction position, every layer (and the final norm's input, causal)."""
    ps, lm = pairs(ctx), ctx.lm
    train, _ = split_by_name(ps, TEST_FRACTION, seed)
    n, sites = len(train), [site("mlp.hook_post", l) for l in range(lm.n_layers)]
    tr, sides = [p.her for p in train] + [p.him for p in train], pair_sides(ps)
    if causal(ctx):
        a = capture(lm, encode(lm, tr), sites + ["ln_final.hook_in"], "last")
        return {"a": a.sites, "ref": a.sites, "inv": a.norm_scale(lm)}
    ids, pos = masked_positions(ctx, tr, [sides[0]] * n + [sides[1]] * n)
    ids2, pos2 = masked_positions(ctx, tr, None)
    return {"a": capture(lm, ids, sites, pos).sites, "ref": capture(lm, ids2, sites, pos2).sites, "inv": np.ones(2 * n)}


def prep(ctx) -> dict:
    """Split, training activations at every layer, the test-prompt runner and the per-side precondition."""
    ps, lm = pairs(ctx), ctx.lm
    sides = pair_sides(ps)
    path = ctx.stimuli_path("lesion_causal" if causal(ctx) else "lesion_masked")
    for w in sides:  # the declared words must be single tokens of this model: say so, naming the file
        single_token_id(lm, (" " if causal(ctx) else "") + w, source=f"lesion stimuli {path}: side {w!r}")
    train, test = split_by_name(ps, TEST_FRACTION, ctx.seed)
    n, sites = len(train), [site("mlp.hook_post", l) for l in range(lm.n_layers)]
    t = ctx.captured(train_acts, pairs_hash(ps), ctx.seed)
    te = [p.her for p in test] + [p.him for p in test]
    side = np.repeat([0, 1], len(test))
    te_ids, te_pos = (encode(lm, te), None) if causal(ctx) else masked_positions(ctx, te, None)
    te_pos = [len(x) - 1 for x in te_ids] if causal(ctx) else te_pos
    runner = Runner(lm, te_ids, te_pos, np.c_[np.where(side == 0, 1.0, -1.0), np.ones(len(te))],
                    pairs=(sides, UNRELATED))
    right = runner.clean[:, 0] > 0
    pre = {}
    for i, s in enumerate(sides):
        k, m = int(right[side == i].sum()), int((side == i).sum())
        pre[s] = {"n_right": k, "n": m, "p": float(stats.binomtest(k, m, 0.5, alternative="greater").pvalue),
                  "p_wrong": float(stats.binomtest(k, m, 0.5, alternative="less").pvalue),
                  "margin": float(runner.clean[side == i, 0].mean())}
    return {"acts": {l: {sides[0]: t["a"][s][:n], sides[1]: t["a"][s][n:]} for l, s in enumerate(sites)},
            "ref_mean": {l: t["ref"][s].mean(axis=0) for l, s in enumerate(sites)},
            "inv": {sides[0]: t["inv"][:n], sides[1]: t["inv"][n:]}, "runner": runner, "pre": pre,
            "n_train": n, "sides": sides, "prompts": {s: np.flatnonzero((side == i) & right) for i, s in enumerate(sides)}}


def preconditions(ctx) -> dict:
    """Each side's clean preference on the held-out prompts (stored: a -k run of one test needs no runner)."""
    return ctx.stored(_preconditions, pairs_hash(pairs(ctx)))


def _preconditions(ctx, pairs_key: str) -> dict:
    return ctx.memo(prep)["pre"]


def rules(ctx) -> tuple[str, ...]:
    return RULES if causal(ctx) else ("contrast",)


def select(ctx, p: dict, layer: int, rule: str, rows: np.ndarray, flip: np.ndarray | None = None) -> dict:
    a, (s0, s1) = p["acts"][layer], p["sides"]
    her, him, ih, im = a[s0][rows], a[s1][rows], p["inv"][s0][rows], p["inv"][s1][rows]
    if flip is not None:  # shuffled-label control: swap her/him within the flipped pairs
        (her, him), (ih, im) = L.flip_pairs(her, him, flip), L.flip_pairs(ih, im, flip)
    if rule == "contrast":
        return L.select_by_contrast(L.paired_neuron_ttest(her, him, alpha=ALPHA), K, sides=(s0, s1))
    sp = " " if causal(ctx) else ""
    d = logit_direction(ctx.lm, single_token_id(ctx.lm, sp + s0), single_token_id(ctx.lm, sp + s1))
    w = w_out(ctx.lm, layer)
    return L.select_by_contribution({s0: L.direct_contributions(her, w, d, ih),
                                     s1: L.direct_contributions(him, w, -d, im)}, K)


def layer_results(ctx, layer: int) -> dict[str, Verdict]:
    """Every rule's gated verdict at one layer (stored: the per-layer, model-level and control tests share it)."""
    return ctx.stored(_layer_results, layer, pairs_hash(pairs(ctx)))


def _layer_results(ctx, layer: int, pairs_key: str) -> dict[str, Verdict]:
    p = ctx.memo(prep)
    n, every = p["n_train"], np.arange(p["n_train"])
    flip = np.random.default_rng(ctx.seed + 1).random(n) < 0.5
    h1, h2 = L.split_halves(n, ctx.seed)
    sel = {}
    for r in rules(ctx):
        sel[r], sel[f"shuffled_{r}"] = select(ctx, p, layer, r, every), select(ctx, p, layer, r, every, flip)
    names = p["sides"]
    above = {s: p["pre"][s]["p"] < ALPHA for s in names}
    abl = ablate_layer(p["runner"], layer, p["prompts"], sel, p["ref_mean"][layer], n_max=ctx.settings.lesion_null_sets,
                       seed=ctx.seed, null_sides=tuple(s for s in names if above[s]), sides=names)

    def sides(name: str) -> dict[str, Side]:
        out = {}
        for s in names:
            m, z, nl = (abl["sel"].get((name, s, "mean")), abl["sel"].get((name, s, "zero")),
                        abl["null"].get((s, len(sel[name][s]))))
            empty = np.zeros(0)
            out[s] = Side(s, above[s], len(sel[name][s]), m[:, 0] if m is not None else empty,
                          z[:, 0] if z is not None else empty, nl[:, :, 0].mean(1) if nl is not None else empty,
                          m[:, 1] if m is not None else empty, nl[:, :, 1].mean(1) if nl is not None else empty)
        return out

    res = {}
    for r in rules(ctx):
        v = layer_verdict(sides(r), claim=f"mlp_lesion_{r}@L{layer}", alpha=ctx.alpha, sesoi=SESOI)
        v.note("stability_jaccard", L.selection_stability(select(ctx, p, layer, r, h1), select(ctx, p, layer, r, h2)))
        res[r] = v.gate({
            f"lesion_{r}_shuffled_labels": layer_verdict(sides(f"shuffled_{r}"), role="control", alpha=ctx.alpha,
                                                         sesoi=SESOI, claim=f"lesion_{r}_shuffled@L{layer}"),
            f"lesion_{r}_unrelated_pair": controls.unrelated_target(sides(r), claim=f"lesion_{r}_unrelated@L{layer}",
                                                                    alpha=ctx.alpha)})
    return res


def model_verdict(ctx, rule: str) -> Verdict:
    per = {l: layer_results(ctx, l)[rule] for l in range(ctx.n_layers)}
    pre, names = preconditions(ctx), pair_sides(pairs(ctx))
    return across_layers(f"mlp_lesion_{rule}", per, "any",
                         (f"lesion_{rule}_shuffled_labels", f"lesion_{rule}_unrelated_pair"),
                         details={f"{s}.{k}": float(v) for s in names for k, v in pre[s].items()},
                         reason="; ".join(sorted({x.reason for x in per.values() if x.reason})))


_CAUSAL = dict(family="causal", kinds=("causal",), aggregate="any",
               controls=("lesion_{rule}_shuffled_labels", "lesion_{rule}_unrelated_pair"))


@pytest.mark.claim("mlp_lesion_{rule}", **_CAUSAL)
@pytest.mark.parametrize("rule", RULES)
def test_lesion_causal(ctx, layer, rule, check):
    """At this layer, mean-ablating the neurons the rule selects lowers the target's logit difference on both sides
    more than size-matched random sets (p <= alpha / n_layers each), gated on its two controls."""
    check(layer_results(ctx, layer)[rule], tolerance=TOL, layer=layer, site=site("mlp.hook_post", layer), rule=rule)


@pytest.mark.claim("mlp_lesion_{rule}", **_CAUSAL)
@pytest.mark.parametrize("rule", RULES)
def test_lesion_causal_rule(ctx, rule, artifacts, check):
    """Model level: some layer supported. Plots the effect per layer against the random-set band."""
    v = model_verdict(ctx, rule)
    plot(ctx, rule, artifacts)
    check(v, baseline=False, rule=rule)


test_lesion_control_fails = control_tests(
    "mlp_lesion_{rule}", ("shuffled_labels", "unrelated_pair"), model_verdict, name="lesion_{rule}_{control}",
    family="causal", kinds=("causal",), params={"rule": RULES}, doc="Each control of the rule must fail at every layer.")


@pytest.mark.claim("mlp_lesion_masked", family="causal", kinds=("masked",), aggregate="any",
                   controls=("lesion_contrast_shuffled_labels", "lesion_contrast_unrelated_pair"))
def test_lesion_masked(ctx, layer, check):
    """The original BERT design: her/him neurons selected at the pronoun token of training sentences, mean-ablated
    at the [MASK] of held-out sentences, against size-matched random sets (alpha / n_layers)."""
    check(layer_results(ctx, layer)["contrast"], tolerance=TOL, layer=layer, site=site("mlp.hook_post", layer),
          rule="contrast")


@pytest.mark.claim("lesion_clean_preference", family="observational", kinds=("causal", "masked"),
                   controls=("prefers_the_other_pronoun",))
def test_lesion_clean_preference(ctx, check):
    """Precondition of claim 4, as a claim: on the held-out prompts of each side the model prefers the correct
    pronoun more often than chance (one-sided binomial p < 0.05 per side). Control: on some side it prefers the
    *other* pronoun more often than chance (a prior for one pronoun, not reference, would do that). Refuted: a side
    significantly below chance."""
    pre, names = preconditions(ctx), pair_sides(pairs(ctx))
    det = {f"{s}.{k}": float(v) for s in names for k, v in pre[s].items()}
    wrong = [s for s in names if pre[s]["p_wrong"] < ALPHA]
    ctl = Verdict(claim="prefers_the_other_pronoun", statistic_name="n_sides", statistic=float(len(wrong)),
                  rule="some side prefers the other pronoun (one-sided binomial p < 0.05)", passed=bool(wrong),
                  role="control", reason=f"on {wrong}" if wrong else "")
    v = Verdict(claim="lesion_clean_preference", statistic_name="min_side_accuracy",
                statistic=min(pre[s]["n_right"] / pre[s]["n"] for s in names), p=max(pre[s]["p"] for s in names),
                rule="accuracy > 0.5 on each side, one-sided binomial p < 0.05 on each",
                passed=all(pre[s]["p"] < ALPHA for s in names), details=det, absent=bool(wrong),
                absence=f"below chance on {wrong}" if wrong else "").gate({"prefers_the_other_pronoun": ctl})
    check(v, tolerance=TOL)


def plot(ctx, rule: str, artifacts) -> None:
    layers, names = list(range(ctx.n_layers)), pair_sides(pairs(ctx))
    vs = [layer_results(ctx, l)[rule] for l in layers]

    def col(key: str) -> np.ndarray:  # the mean over the two sides
        return np.array([np.nanmean([v.details.get(f"{s}.{key}", np.nan) for s in names]) for v in vs])

    band = {rule: {"effect": col("effect"), "null_q50": col("null_mean"), "null_q05": col("null_q05"),
                   "null_q95": col("null_q95"), "zero_effect": col("zero_ablation_effect"),
                   "passed": np.array([v.outcome == "supported" for v in vs])}}
    plot_effect_by_layer(layers, band, artifacts.path(f"effect_by_layer_{rule}.png"),
                         title=f"{ctx.lm.name}: mean-ablation effect per layer, rule {rule} (mean of the two sides)")
