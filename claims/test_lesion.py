"""Claim 4: zeroing "her"/"him" MLP neurons at the prediction position lowers that pronoun's logit difference.

Stimuli: ``fixtures/lesion_causal.jsonl`` (119 matched pairs; next token " her" or " him"; override with
``--stimuli lesion_causal=PATH``) and ``fixtures/lesion_masked.jsonl`` (85 pairs with one [MASK]; override with
``--stimuli lesion_masked=PATH``). Pairs are split by pair, seeded: 60% select, 40% test. Testing uses only held-out
prompts the model gets right (clean target-minus-foil logit > 0); ``test_lesion_clean_preference`` reports how many.
Site: ``blocks.{l}.mlp.hook_post``, the input to the down projection, for selection and intervention alike. Why not
``mlp.hook_pre``: only at ``hook_post`` is neuron i's value the coefficient of W_out row i in every family (for Llama
``hook_pre`` is the gate alone, before SiLU and the up projection), so rule (b)'s a_i * W_out[i] is exact there, and
mean ablation replaces what the neuron writes by its average (at ``hook_pre`` the mean would pass through the
nonlinearity, and f(E[x]) != E[f(x)]).

A. ``test_lesion_causal`` (causal LMs, per layer and rule). Selection on the training pairs at the prediction
   position (the last prompt token), k = 20 per side, two rules fixed before looking (``mechclaims.stats.lesion``):
   ``contrast`` = the original paired t-test + BH FDR (t>0 her, t<0 him, at most k by |t|); ``contribution`` = top k
   by mean direct contribution a_i * W_out[i] . (g * (u_target - u_foil)) / norm-denominator. On each held-out prompt
   the selected set of its side is zeroed (and, reported, set to its mean over the training prompts) at the
   prediction position only, in a real forward pass. Null: size-matched random sets of the same layer zeroed the
   same way, drawn sequentially (Besag-Clifford, h = 10, at most ``--lesion-null-sets`` = 100 per side).
   Pass rule, per layer: both sides' mean change < 0 and max(p_her, p_him) <= 0.05 after BH FDR over the layers
   under test. Reported: effect with bootstrap CI, d_z, fraction lowered, mean ablation, z vs null, split-half
   Jaccard of the selection.
B. ``test_lesion_shuffled_labels_fail`` (control, per rule): the same rules on training pairs whose her/him labels
   are swapped in a random half; no layer may pass.
C. ``test_lesion_masked`` (BERT family, per layer): the original design with its split fixed. Rule ``contrast`` at
   the pronoun token of filled training sentences, ablation at the [MASK] of held-out sentences; same null and rule.
Falsified by: a layer where a side is not lowered, or where random sets of the same size lower it as much.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from mechclaims.ablate import Runner
from mechclaims.capture import capture, encode, single_token_id
from mechclaims.datasets.lesion import (CAUSAL_PATH, MASK, MASKED_PATH, fill_mask, load_causal_pairs,
                                        load_masked_pairs, pairs_hash, split_pairs)
from mechclaims.errors import StimuliError
from mechclaims.plots.lesion import plot_clean_vs_ablated, plot_effect_by_layer, plot_neuron_scores
from mechclaims.sites import resolve, site
from mechclaims.stats import lesion as L
from mechclaims.verdict import Verdict

K, TEST_FRACTION, H, ALPHA, CORRECTION, CHUNK = L.DEFAULT_K, 0.4, L.DEFAULT_H, 0.05, "fdr_bh", 10
TOL = {"rtol": 1e-2, "atol": 1e-3}  # float32 forward passes; p-values move in steps of the sequential null
SIDES = L.SIDES

# Expected verdicts (strict xfail), keyed by test name, with the measured numbers.
EXPECTED_FAILURES: dict[str, str] = {}


def _w_out(lm, layer: int) -> np.ndarray:
    """``[d_mlp, d_model]``: row i is what neuron i writes (nn.Linear stores [out, in]; GPT-2's Conv1D [in, out])."""
    mod = resolve(lm.model, site("mlp.hook_post", layer)).module
    w = mod.weight.detach().float().cpu().numpy()
    return w.T if isinstance(mod, torch.nn.Linear) else w


def _direction(lm) -> np.ndarray:
    """(u_her - u_him) through the final norm's scale (centred for LayerNorm): rule (b)'s logit direction."""
    norm = lm.model.base_model.get_submodule(lm.sitemap.final_norm)
    u = lm.model.get_output_embeddings().weight.detach().float().cpu().numpy()
    return L.logit_direction(u[single_token_id(lm, " her")], u[single_token_id(lm, " him")],
                             norm.weight.detach().float().cpu().numpy(), center=isinstance(norm, torch.nn.LayerNorm))


def _selector(lm, layer: int, acts_train: dict, inv: dict):
    """``select(rule, rows, flip)`` for one layer: rules (a) and (b) on a subset of training pairs."""
    her_all, him_all = acts_train["her"], acts_train["him"]
    if lm.kind == "causal":
        direction, w_out = _direction(lm), _w_out(lm, layer)

    def select(rule: str, rows: np.ndarray, flip: np.ndarray | None = None) -> dict[str, np.ndarray]:
        her, him, ih, im = her_all[rows], him_all[rows], inv["her"][rows], inv["him"][rows]
        if flip is not None:  # shuffled-label control: swap her/him within the flipped pairs
            (her, him), (ih, im) = L.flip_pairs(her, him, flip), L.flip_pairs(ih, im, flip)
        if rule == "contrast":
            return L.select_by_contrast(L.paired_neuron_ttest(her, him, alpha=ALPHA), K)
        return L.select_by_contribution({"her": L.direct_contributions(her, w_out, direction, ih),
                                         "him": L.direct_contributions(him, w_out, -direction, im)}, K)

    return select


def _prep(lm, mc, model_pool) -> dict:
    """Selections on the training pairs and the test-prompt runner, once per model (memoized)."""
    causal = lm.kind == "causal"
    pairs = (load_causal_pairs(mc.stimuli_path("lesion_causal", CAUSAL_PATH)) if causal
             else load_masked_pairs(mc.stimuli_path("lesion_masked", MASKED_PATH)))
    layers = tuple(mc.layer_list(lm.n_layers))

    def masked_positions(texts: list[str], words: list[str] | None):
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

    def run() -> dict:
        train, test = split_pairs(pairs, TEST_FRACTION, mc.seed)
        n, sites = len(train), [site("mlp.hook_post", l) for l in layers]
        tr_texts = [p.her for p in train] + [p.him for p in train]
        acts_key = (pairs_hash(pairs), layers, mc.seed, TEST_FRACTION)  # the split decides the training texts
        if causal:
            a = model_pool.activations(lm, "lesion-train", acts_key, lambda: capture(
                lm, encode(lm, tr_texts), sites + ["ln_final.hook_in"], "last"))
            ref = a  # mean ablation: the training prompts at the same (prediction) position
            norm = lm.model.base_model.get_submodule(lm.sitemap.final_norm)
            x = a["ln_final.hook_in"].astype(float)
            spread = x.var(axis=1) if isinstance(norm, torch.nn.LayerNorm) else (x ** 2).mean(axis=1)
            inv = 1.0 / np.sqrt(spread + getattr(norm, "eps", getattr(norm, "variance_epsilon", 1e-5)))
        else:  # the original: select at the pronoun token; the reference mean sits at the [MASK]
            ids, pos = masked_positions(tr_texts, ["her"] * n + ["him"] * n)
            a = model_pool.activations(lm, "lesion-train-filled", acts_key, lambda: capture(lm, ids, sites, pos))
            ids2, pos2 = masked_positions(tr_texts, None)
            ref = model_pool.activations(lm, "lesion-train-mask", acts_key, lambda: capture(lm, ids2, sites, pos2))
            inv = np.ones(2 * n)
        acts = {l: {"her": a[s][:n], "him": a[s][n:]} for l, s in zip(layers, sites)}
        inv = {"her": inv[:n], "him": inv[n:]}
        rules = ("contrast", "contribution") if causal else ("contrast",)
        flip = np.random.default_rng(mc.seed + 1).random(n) < 0.5
        h1, h2 = L.split_halves(n, mc.seed)
        sel, stab, every = {}, {}, np.arange(n)
        for l in layers:
            f = _selector(lm, l, acts[l], inv)
            for r in rules:
                sel[r, l], sel[f"shuffled_{r}", l] = f(r, every), f(r, every, flip)
                stab[r, l] = L.selection_stability(f(r, h1), f(r, h2))
                stab[f"shuffled_{r}", l] = L.selection_stability(f(r, h1, flip[h1]), f(r, h2, flip[h2]))
        te_texts = [p.her for p in test] + [p.him for p in test]
        side = np.repeat([0, 1], len(test))
        if causal:
            te_ids = encode(lm, te_texts)
            te_pos = [len(x) - 1 for x in te_ids]
        else:
            te_ids, te_pos = masked_positions(te_texts, None)
        runner = Runner(lm, te_ids, te_pos, np.where(side == 0, 1.0, -1.0))
        return {"layers": layers, "rules": rules, "acts": acts, "inv": inv, "sel": sel, "stab": stab,
                "ref_mean": {l: ref[s].mean(axis=0) for l, s in zip(layers, sites)}, "runner": runner,
                "clean": runner.clean, "side": side, "d_mlp": a[sites[0]].shape[1]}

    return model_pool.cached((lm.name, lm.fingerprint, "lesion-prep", pairs_hash(pairs), layers, mc.seed), run)


def _ablate_layer(p: dict, l: int, P: dict, seed: int, null_sets: int) -> dict[str, L.LayerLesion]:
    """All of one layer's real ablations: selected sets (zero, mean) and the sequential random-set nulls."""
    d, clean, mean = p["d_mlp"], p["clean"], p["ref_mean"][l]
    rules = [x for r in p["rules"] for x in (r, f"shuffled_{r}")]
    rows, keeps, fills, tags = [], [], [], []

    def add(prompts, idx, fill_mean, tag):
        k, f = np.ones((len(prompts), d), np.float32), np.zeros((len(prompts), d), np.float32)
        k[:, idx] = 0.0
        if fill_mean:
            f[:, idx] = mean[idx]
        rows.append(prompts), keeps.append(k), fills.append(f), tags.append((tag, len(prompts)))

    def flush() -> dict:
        y = p["runner"].run(l, np.concatenate(rows), np.concatenate(keeps), np.concatenate(fills))
        out, at = {}, 0
        for tag, m in tags:
            out.setdefault(tag, []).append(y[at:at + m])
            at += m
        rows.clear(), keeps.clear(), fills.clear(), tags.clear()
        return out

    size = {(r, s): len(p["sel"][r, l][s]) for r in rules for s in SIDES}
    ok = {(r, s): bool(size[r, s] and len(P[s])) for r in rules for s in SIDES}  # else: fails with the reason
    for r in rules:
        for s in SIDES:
            if size[r, s] and len(P[s]):
                add(P[s], p["sel"][r, l][s], False, (r, s, "zero"))
                if not r.startswith("shuffled"):
                    add(P[s], p["sel"][r, l][s], True, (r, s, "mean"))
    got = {k: v[0] for k, v in flush().items()} if rows else {}
    eff = {(r, s): float((got[r, s, "zero"] - clean[P[s]]).mean()) for r in rules for s in SIDES if ok[r, s]}
    keys = {(s, size[r, s]) for r in rules for s in SIDES if ok[r, s]}
    null = {k: np.zeros((0, len(P[k[0]]))) for k in keys}
    rngs = {k: np.random.default_rng([seed, l, SIDES.index(k[0]), k[1]]) for k in keys}

    def null_means(s, m):
        return (null[s, m] - clean[P[s]][None]).mean(axis=1)

    def wants(key) -> bool:
        s, m = key
        for r in rules:
            o = SIDES[1 - SIDES.index(s)]
            if not ok[r, s] or size[r, s] != m or eff[r, s] >= 0 or (ok[r, o] and eff[r, o] >= 0):
                continue  # a side not lowered fails the rule whatever the null says: no draws needed
            if ok[r, o]:
                nm_o = null_means(o, size[r, o])
                if (nm_o <= eff[r, o]).sum() >= H and L.sequential_mc_p(eff[r, o], nm_o, H)[0] > ALPHA:
                    continue  # the other side stopped above alpha: max(p_her, p_him) cannot pass, save the draws
            # A rule with an empty other side fails anyway: a short null (2 chunks) still reports this side.
            if L.needs_more_draws(eff[r, s], null_means(s, m), null_sets if ok[r, o] else 2 * CHUNK, H):
                return True
        return False

    while active := [k for k in sorted(keys) if wants(k)]:
        for s, m in active:
            for j, idx in enumerate(L.random_sets(d, m, CHUNK, rngs[s, m])):
                add(P[s], idx, False, ("null", s, m, j))
        got_null = flush()
        for s, m in active:
            null[s, m] = np.vstack([null[s, m]] + [got_null["null", s, m, j][0][None] for j in range(CHUNK)])
    out = {}
    for r in rules:
        z = {s: got.get((r, s, "zero"), clean[P[s]]) for s in SIDES}  # unselected side: unchanged (fails)
        mn = None if r.startswith("shuffled") else {s: got.get((r, s, "mean"), clean[P[s]]) for s in SIDES}
        out[r] = L.LayerLesion(l, {s: clean[P[s]] for s in SIDES}, z,
                               {s: null.get((s, size[r, s]), np.zeros((0, len(P[s])))) for s in SIDES}, mn,
                               {s: size[r, s] for s in SIDES}, stability=p["stab"][r, l])
    return out


def _results(lm, mc, model_pool) -> dict:
    """Per rule: {layer: Verdict} (corrected over the layers under test) and the raw per-prompt numbers."""
    p = _prep(lm, mc, model_pool)

    def run() -> dict:
        kept = np.flatnonzero(p["clean"] > 0)  # test only on prompts the model gets right
        P = {s: kept[p["side"][kept] == i] for i, s in enumerate(SIDES)}
        per = {l: _ablate_layer(p, l, P, mc.seed, mc.lesion_null_sets) for l in p["layers"]}
        verdicts = {}
        for r in per[p["layers"][0]]:
            vs = L.lesion_verdicts([per[l][r] for l in p["layers"]], claim=f"lesion_{r}", alpha=ALPHA,
                                   correction=CORRECTION, h=H, seed=mc.seed)
            verdicts[r] = dict(zip(p["layers"], vs))
        return {"verdicts": verdicts, "per": per, "P": P}

    return model_pool.cached((lm.name, lm.fingerprint, "lesion-results", mc.lesion_null_sets, p["layers"], mc.seed), run)


@pytest.mark.claim("mlp_pronoun_lesion", family="causal", kinds=("causal",))
@pytest.mark.parametrize("rule", ("contrast", "contribution"))
def test_lesion_causal(lm, layer, rule, mc, model_pool, baseline, record):
    """Zeroing the selected her (him) neurons at the prediction position lowers her-minus-him (him-minus-her) on
    held-out prompts more than size-matched random sets of the same layer do (BH over layers, alpha 0.05)."""
    v = _results(lm, mc, model_pool)["verdicts"][rule][layer]
    record(v, layer=layer, site=site("mlp.hook_post", layer), rule=rule)
    baseline.check(v.numbers(), lm, default_tolerance=TOL)
    v.assert_holds()


@pytest.mark.claim("mlp_pronoun_lesion_masked", family="causal", kinds=("masked",))
def test_lesion_masked(lm, layer, mc, model_pool, baseline, record):
    """The original BERT design, split fixed: her/him neurons chosen at the pronoun token of training sentences,
    zeroed at the [MASK] of held-out sentences, against size-matched random sets (BH over layers, alpha 0.05)."""
    v = _results(lm, mc, model_pool)["verdicts"]["contrast"][layer]
    record(v, layer=layer, site=site("mlp.hook_post", layer), rule="contrast")
    baseline.check(v.numbers(), lm, default_tolerance=TOL)
    v.assert_holds()


@pytest.mark.claim("mlp_pronoun_lesion_shuffled_labels", family="causal", kinds=("causal", "masked"))
@pytest.mark.control
@pytest.mark.parametrize("rule", ("contrast", "contribution"))
def test_lesion_shuffled_labels_fail(lm, rule, mc, model_pool, baseline, record):
    """Negative control: the same rule on training pairs with her/him swapped in a random half must pass at no
    layer (same null, same correction)."""
    if lm.kind != "causal" and rule == "contribution":
        pytest.skip("rule (b) needs a final norm and a linear unembedding; a masked LM's MLM head has neither")
    vs = _results(lm, mc, model_pool)["verdicts"][f"shuffled_{rule}"]
    n_pass = sum(v.passed for v in vs.values())
    v = Verdict(claim=f"lesion_shuffled_{rule}", statistic_name="layers_passing", statistic=float(n_pass),
                rule="with shuffled labels no layer passes the lesion rule", passed=n_pass == 0,
                details={"min_q": min(v.p for v in vs.values()), "n_layers": float(len(vs)),
                         "mean_n_selected": float(np.mean([v.details["n_selected_her"] + v.details["n_selected_him"]
                                                           for v in vs.values()]))},
                reason="" if n_pass == 0 else f"passes at layers {[l for l, v in vs.items() if v.passed]}")
    record(v, rule=rule)
    baseline.check(v.numbers(), lm, default_tolerance=TOL)
    v.assert_holds()


@pytest.mark.claim("lesion_clean_preference", family="observational", kinds=("causal", "masked"))
def test_lesion_clean_preference(lm, mc, model_pool, baseline, record):
    """The model prefers the correct pronoun on more than half of the held-out prompts of each side (one-sided
    binomial p < 0.05 per side). Reported because the lesion tests use only the prompts it gets right."""
    p = _prep(lm, mc, model_pool)
    right = p["clean"] > 0
    det, ps = {}, []
    for i, s in enumerate(SIDES):
        k, n = int(right[p["side"] == i].sum()), int((p["side"] == i).sum())
        ps.append(stats.binomtest(k, n, 0.5, alternative="greater").pvalue)
        det |= {f"n_right_{s}": float(k), f"n_{s}": float(n), f"accuracy_{s}": k / n, f"p_{s}": ps[-1],
                f"mean_margin_{s}": float(p["clean"][p["side"] == i].mean())}
    v = Verdict(claim="lesion_clean_preference", statistic_name="min_side_accuracy",
                statistic=min(det["accuracy_her"], det["accuracy_him"]), p=max(ps), details=det,
                rule="accuracy > 0.5 on each side, one-sided binomial p < 0.05 on each", passed=max(ps) < ALPHA)
    record(v)
    baseline.check(v.numbers(), lm, default_tolerance=TOL)
    v.assert_holds()


@pytest.mark.claim("mlp_pronoun_lesion_profile", family="causal", kinds=("causal", "masked"))
def test_lesion_profile(lm, mc, model_pool, artifacts, record):
    """Figures: effect per layer for each rule against its random-set band; the original's clean-vs-ablated bars
    and scatter, and per-neuron scores, at each rule's strongest layer. Descriptive; the per-layer tests decide."""
    p, res = _prep(lm, mc, model_pool), _results(lm, mc, model_pool)
    layers, vs = list(p["layers"]), res["verdicts"]
    nan = float("nan")
    band = {r: {"effect": np.array([vs[r][l].effect for l in layers]),
                "mean_effect": np.array([vs[r][l].details.get("mean_ablation_effect", nan) for l in layers]),
                "passed": np.array([vs[r][l].passed for l in layers]),
                **{f"null_{q}": np.array([(vs[r][l].null or {}).get(q, nan) for l in layers])
                   for q in ("q05", "q50", "q95")}} for r in vs}
    plot_effect_by_layer(layers, band, artifacts.path("effect_by_layer.png"), title=f"{lm.name}: lesion per layer")
    for r in p["rules"]:
        stat = np.array([vs[r][l].statistic for l in layers], float)
        stat = np.where(np.isfinite(stat), stat, np.inf)  # a layer with nothing selected is never the strongest
        best = layers[int(np.argmin(stat))]
        les = res["per"][best][r]
        plot_clean_vs_ablated(les.clean, les.zero, artifacts.path(f"clean_vs_ablated_{r}.png"),
                              title=f"{lm.name} layer {best}, rule {r}: selected neurons zeroed")
        a = p["acts"][best]
        t = L.paired_neuron_ttest(a["her"], a["him"], alpha=ALPHA).t
        contrib = None
        if lm.kind == "causal":
            contrib = {s: L.direct_contributions(a[s], _w_out(lm, best), _direction(lm) * (1 if s == "her" else -1),
                                                 p["inv"][s]).mean(axis=0) for s in SIDES}
        sel = {q: p["sel"][q, best] for q in p["rules"]}
        plot_neuron_scores(t, contrib, sel, artifacts.path(f"neuron_scores_{r}.png"),
                           title=f"{lm.name} layer {best} (strongest for rule {r})")
        held = [l for l in layers if vs[r][l].passed]
        record(Verdict(claim=f"lesion_{r}_profile", statistic_name="layers_holding", statistic=float(len(held)),
                       rule="descriptive: the per-layer tests decide", passed=True,
                       details={"strongest_layer": float(best), "strongest_effect": float(stat.min())},
                       reason=f"holds at layers {held}"), rule=r)


# --------------------------------------------------------------------------------------------- expected verdicts
# Measured on CPU, float32, seed 0, --lesion-null-sets 100 (torch 2.13, transformers 5.23). Per side: the
# mean change of the target-minus-foil logit with the selected set zeroed, its sequential p / random sets drawn
# ("no null": no draws, because a side not lowered fails whatever the null says), k when not 20; q = BH over layers.
# "not lowered": a side's mean change >= 0. "nothing to test": a side has no selected neuron or no prompt right.
_REFUTED_CAUSAL = {
"smollm2-135m-L0-contrast": "her +0.002 no null k=2; him: none selected; q=1 (nothing to test)",
    "smollm2-135m-L0-contribution": "her -0.022 no null; him +0.046 no null; q=1 (not lowered)",
    "smollm2-135m-L1-contrast": "her: none selected; him: none selected; q=1 (nothing to test)",
    "smollm2-135m-L1-contribution": "her -0.002 p=0.5/20; him -0.012 p=0.048/20; q=0.79 (random sets as good)",
    "smollm2-135m-L10-contrast": "her -0.000 p=0.36/28 k=1; him -0.003 p=0.032/30 k=1; q=1 (random sets as good)",
    "smollm2-135m-L10-contribution": "her -0.002 p=0.59/17; him -0.007 p=0.19/20; q=0.88 (random sets as good)",
    "smollm2-135m-L11-contrast": "her: none selected; him: none selected; q=1 (nothing to test)",
    "smollm2-135m-L11-contribution": "her +0.004 no null; him -0.023 no null; q=1 (not lowered)",
    "smollm2-135m-L12-contrast": "her -0.000 p=0.5/20 k=1; him -0.002 p=0.24/20 k=1; q=1 (random sets as good)",
    "smollm2-135m-L12-contribution": "her -0.004 p=0.24/42; him -0.045 p=0.02/50; q=0.47 (random sets as good)",
    "smollm2-135m-L13-contrast": "her: none selected; him: none selected; q=1 (nothing to test)",
    "smollm2-135m-L13-contribution": "her +0.014 no null; him -0.008 no null; q=1 (not lowered)",
    "smollm2-135m-L14-contrast": "her: none selected; him: none selected; q=1 (nothing to test)",
    "smollm2-135m-L14-contribution": "her +0.001 no null; him -0.037 no null; q=1 (not lowered)",
    "smollm2-135m-L15-contrast": "her: none selected; him: none selected; q=1 (nothing to test)",
    "smollm2-135m-L15-contribution": "her -0.001 p=0.34/29; him -0.042 p=0.032/30; q=0.57 (random sets as good)",
    "smollm2-135m-L16-contrast": "her -0.016 p=0.048/20 k=2; him: none selected; q=1 (nothing to test)",
    "smollm2-135m-L16-contribution": "her -0.020 p=0.03/100; him -0.068 p=0.0099/100; q=0.081 (random sets as good)",
    "smollm2-135m-L17-contrast": "her: none selected; him: none selected; q=1 (nothing to test)",
    "smollm2-135m-L17-contribution": "her -0.010 p=0.13/75; him -0.048 p=0.0099/100; q=0.29 (random sets as good)",
    "smollm2-135m-L18-contrast": "her -0.001 p=0.5/20 k=2; him -0.013 p=0.095/20 k=3; q=1 (random sets as good)",
    "smollm2-135m-L19-contrast": "her -0.016 no null k=8; him +0.006 no null k=6; q=1 (not lowered)",
    "smollm2-135m-L2-contrast": "her -0.002 no null k=12; him +0.000 no null k=2; q=1 (not lowered)",
    "smollm2-135m-L2-contribution": "her -0.006 no null; him +0.006 no null; q=1 (not lowered)",
    "smollm2-135m-L20-contrast": "her +0.003 no null k=1; him +0.012 no null k=1; q=1 (not lowered)",
    "smollm2-135m-L21-contrast": "her +0.007 no null k=4; him +0.003 no null k=1; q=1 (not lowered)",
    "smollm2-135m-L22-contrast": "her -0.028 p=0.03/100; him -0.042 p=0.03/100; q=0.89 (random sets as good)",
    "smollm2-135m-L22-contribution": "her -0.023 p=0.059/100; him -0.297 p=0.0099/100; q=0.15 (random sets as good)",
    "smollm2-135m-L23-contrast": "her +0.016 no null; him +0.020 no null; q=1 (not lowered)",
    "smollm2-135m-L23-contribution": "her +0.165 no null; him -0.180 no null; q=1 (not lowered)",
    "smollm2-135m-L24-contrast": "her -0.133 p=0.03/100; him +0.033 p=0.91/11; q=1 (not lowered)",
    "smollm2-135m-L25-contrast": "her +0.067 p=1/10; him -0.043 p=0.079/100; q=1 (not lowered)",
    "smollm2-135m-L26-contrast": "her -1.636 p=0.0099/100; him +0.148 p=1/10; q=1 (not lowered)",
    "smollm2-135m-L27-contrast": "her +0.041 p=0.91/11; him -0.056 p=0.069/100; q=1 (not lowered)",
    "smollm2-135m-L28-contrast": "her +0.160 p=1/10; him -0.261 p=0.04/100; q=1 (not lowered)",
    "smollm2-135m-L29-contrast": "her -0.388 p=0.079/100; him -1.203 p=0.0099/100; q=1 (random sets as good)",
    "smollm2-135m-L3-contrast": "her -0.002 p=0.37/27; him -0.004 p=0.19/30 k=15; q=1 (random sets as good)",
    "smollm2-135m-L3-contribution": "her -0.004 p=0.089/100; him -0.011 p=0.04/100; q=0.21 (random sets as good)",
    "smollm2-135m-L4-contrast": "her -0.000 p=0.48/21 k=2; him -0.001 p=0.29/30 k=2; q=1 (random sets as good)",
    "smollm2-135m-L4-contribution": "her -0.004 p=0.25/40; him -0.004 p=0.24/40; q=0.47 (random sets as good)",
    "smollm2-135m-L5-contrast": "her -0.000 no null k=3; him +0.003 no null k=5; q=1 (not lowered)",
    "smollm2-135m-L5-contribution": "her +0.011 no null; him -0.008 no null; q=1 (not lowered)",
    "smollm2-135m-L6-contrast": "her -0.000 no null k=3; him +0.004 no null k=9; q=1 (not lowered)",
    "smollm2-135m-L6-contribution": "her -0.018 no null; him +0.010 no null; q=1 (not lowered)",
    "smollm2-135m-L7-contrast": "her +0.001 no null k=2; him +0.002 no null k=3; q=1 (not lowered)",
    "smollm2-135m-L7-contribution": "her +0.002 no null; him -0.010 no null; q=1 (not lowered)",
    "smollm2-135m-L8-contrast": "her: none selected; him +0.001 no null k=2; q=1 (nothing to test)",
    "smollm2-135m-L8-contribution": "her +0.025 no null; him -0.019 no null; q=1 (not lowered)",
    "smollm2-135m-L9-contrast": "her: none selected; him: none selected; q=1 (nothing to test)",
    "smollm2-135m-L9-contribution": "her -0.006 p=0.29/34; him -0.042 p=0.024/40; q=0.52 (random sets as good)",
    "tiny-gpt2-L0-contrast": "her: none selected; him: none selected; q=1 (nothing to test)",
    "tiny-gpt2-L1-contrast": "her: none selected; him: none selected; q=1 (nothing to test)",
    "tiny-gpt2-L2-contrast": "her +0.000 no null k=1; him: none selected; q=1 (nothing to test)",
    "tiny-gpt2-L3-contrast": "her: none selected; him -0.000 p=0.33/20 k=1; q=1 (nothing to test)",
    "tiny-llama-L0-contrast": "her: none selected; him: none selected; q=1 (nothing to test)",
    "tiny-llama-L1-contrast": "her: none selected; him: none selected; q=1 (nothing to test)",
    "tiny-llama-L2-contrast": "her: none selected; him: none selected; q=1 (nothing to test)",
    "tiny-llama-L3-contrast": "her: none selected; him: none selected; q=1 (nothing to test)",
}
_REFUTED_MASKED = {
    "tiny-bert-L0": "her: no held-out prompt right; him -0.002 p=0.33/20; q=1 (nothing to test)",
    "tiny-bert-L1": "her: no held-out prompt right; him -0.002 p=0.33/20; q=1 (nothing to test)",
    "tiny-bert-L2": "her: no held-out prompt right; him +0.002 no null; q=1 (nothing to test)",
    "tiny-bert-L3": "her: no held-out prompt right; him -0.002 p=0.095/20; q=1 (nothing to test)",
}
_TINY = "random-weight tiny model: "
EXPECTED_FAILURES.update({f"test_lesion_causal[{k}]": f"refuted: {v}" for k, v in _REFUTED_CAUSAL.items()})
EXPECTED_FAILURES.update({f"test_lesion_masked[{k}]": _TINY + v for k, v in _REFUTED_MASKED.items()})
EXPECTED_FAILURES.update({
    "test_lesion_clean_preference[smollm2-135m]": "held-out accuracy her 39/48 (p=1e-5), him 25/48 = 0.52 (p=0.44; "
    "mean margin +0.33 vs +1.60 for her): SmolLM2-135M leans to ' her' (also a possessive). Tests use the 39+25 right.",
    "test_lesion_clean_preference[tiny-gpt2]": _TINY + "her 19/48, him 30/48 (p 0.94, 0.056).",
    "test_lesion_clean_preference[tiny-llama]": _TINY + "her 25/48, him 27/48 (p 0.44, 0.24).",
    "test_lesion_clean_preference[tiny-bert]": _TINY + "her 0/34, him 34/34: it always prefers 'him'.",
    "test_lesion_shuffled_labels_fail[smollm2-135m-contribution]": "the control PASSES at the same 10 layers as the "
    "real rule (18-21, 24-29; min q=0.03, 20+20 neurons): rule (b) ranks by output weight x mean activation, which "
    "hardly depends on the labels. Its passes show neurons that write ' her'/' him', not context-selective ones.",
    "test_lesion_shuffled_labels_fail[tiny-gpt2-contribution]": _TINY + "passes at 4/4 layers (q=0.0099), as the real "
    "rule (b) does: the direct path alone makes top-contribution sets beat random ones, labels or not.",
    "test_lesion_shuffled_labels_fail[tiny-llama-contribution]": _TINY + "passes at 4/4 layers (q=0.0099), as the "
    "real rule (b) does: the direct path alone makes top-contribution sets beat random ones, labels or not.",
})
