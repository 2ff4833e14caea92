"""Claims 6-8: activation patching on clean/corrupt pairs that differ only in the referent's name.

Stimuli: ``fixtures/patching_pairs.jsonl`` (111 pairs; override with ``--stimuli patching_pairs=PATH``). The clean
prompt names a referent of one gender, the corrupt prompt the other, in the same frame: "Mary was cold after the long
walk, so the teacher lent" -> " her"; with "John" -> " him". The name is one token for SmolLM2's tokenizer, so the
prompts have equal length and differ at one position. Why this corruption: a minimal swap of the one token that
decides the answer keeps every other token, position and frame, so a patch moves only information about the
referent; Gaussian noise on embeddings would push activations off-distribution (Zhang & Nanda 2023). Metric, fixed
before looking: the logit difference LD = logit(target) - logit(foil) at the last token (linear in the logits;
probability saturates and hides effects: Heimersheim & Nanda 2024). Per pair F = LD(clean) > 0, C = LD(corrupt).
Split: by name pair (``group``), seeded, half the groups held out, so held-out prompts never share a name with the
prompts that chose L* or the components. Only pairs the model gets right (F > 0 > C) are used, at most 12 training
and 16 held-out pairs (the first in the seeded order), and every decision is taken on the held-out pairs. Shares are
ratios of means over pairs; "share > theta" is a one-sided t-test on (m - b) - theta (s - b)
(``mechclaims.stats.patching``). Refuted means the opposite: the share significantly *below* its threshold.

A. Residual patching (claim ``resid_patching_ratio``): ``blocks.{l}.hook_resid_pre`` copied at one position.
   Per layer (``test_resid_patching``): the final token's residual at layer l carries the answer: denoising (clean
   into corrupt) restores more than half of F - C AND noising (corrupt into clean) removes more than half, each
   one-sided at alpha / n_layers (0.05 / 30 on smollm2). Control (same rule, must fail): the final residual copied
   from an *unrelated* prompt of the same token length whose answer is the clean answer (another name pair and
   frame: its clean prompt into the corrupt base, its corrupt prompt into the clean base;
   ``resid_patching_ratio_unrelated``). It passes where the final residual carries only "the answer", whatever the
   prompt, so a layer is ``supported`` only where the restoration is specific to the pair's own referent (round
   three: before, the source carried the base's own answer, and the control could not pass). Model level (``test_resid_patching_transfer``): L* = the first layer where both
   training-pair shares exceed 1/2; on held-out pairs layers < L*-1 must be refuted and layers > L* supported.
   Reported beside it: the same shares at the name position, and a layer x position heatmap of the first held-out
   pair. Expected before running: the final position carries nothing at layer 0 (its token is the same in both:
   share exactly 0) and nearly everything at the last layers, with a transfer in the middle layers (a guess: L*
   between 8 and 20 of 30); the name position mirrors it (exactly 1 at layer 0, since patching it there *is* the
   name swap, falling after L*); the unrelated control fails at every layer.
A'. Added after the first smollm2 run, as a separately named design (``resid_patching_perpair``): the same runs,
   layers, thresholds, controls and L* rule, with the mean of per-pair shares t-tested instead of the ratio of
   means. Why: with 11 held-out pairs the pre-stated test could not decide at alpha / 30 even where every pair's
   share is exactly 0 (layer 0) or 0.999 (layer 29), because its t statistic charges the spread of the gaps F - C
   (a factor of ~10 between pairs) against the share. Both designs are calibrated on synthetic nulls in
   ``tests/test_stats_patching.py``; the pre-stated one stays, with its outcomes recorded.
B. Component attribution (claim ``component_share``): ``hook_attn_out`` and ``hook_mlp_out`` of every layer, copied
   from clean into corrupt at every token (total effect); the direct effect (the component's change at the last
   token through the linearized final norm and the unembedding only) is reported beside it, so self-repair shows as
   total < direct. Components with a training share >= 0.10 are named (at most 8, largest first). The claim: on
   held-out pairs, patching the named set together restores more than half of F - C (one-sided, alpha 0.05).
   Control (``component_share_random``): 10 random sets of the same size from all components (round three: before,
   only from those below the 0.10 share), the per-pair mean of their shares, same rule; it must fail. Reported beside
   it: the named set's share without the layer-0 MLP output (``named_share_without_L0_mlp``). Expected: a handful of components (early MLPs at the name,
   mid-layer attention moving it to the last token) carry more than half; random sets do not.
C. Attribution patching agrees with patching (claim ``attribution_agrees``): per component, attribution
   (clean - corrupt) . dLD/da at the corrupt run, summed over tokens (``mechclaims.forward.attribution.capture_grad``), vs
   its total effect from B, both in LD units over the held-out pairs. Statistic: Spearman rho across the 2L
   components of the pair means; bootstrap over pairs. Passes when the bootstrap 5% quantile of rho exceeds 0.5;
   refuted when its 95% quantile is below 0.5. Control (``attribution_unrelated_metric``): the same attribution with
   the gradient of an unrelated logit difference (" the" - " a"), same rule; it must fail. Expected: rho > 0.5,
   with the known failures recorded where they show: the layer-0 components (the name swap is not a small change)
   and saturated late layers.
Falsified by: a held-out share significantly below its threshold (A, B), a held-out profile that contradicts L*
(A), or a rank agreement whose bootstrap 95% quantile is below 0.5 (C).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mechclaims.claim import Design, StimuliSet, Verdict, control_across_layers
from mechclaims.datasets.patching import answer_partners, load_pairs, pairs_hash, split_by_group, tokenize_pairs
from mechclaims.forward import patching_runs as R
from mechclaims.forward.capture import capture
from mechclaims.model.sites import site
from mechclaims.plots.patching import attribution_scatter, component_bars, recovery_heatmap
from mechclaims.stats import patching as S
from mechclaims.verdict.expected import load_expected

ALPHA, THRESHOLD, TAU, K_MAX, N_RANDOM_SETS, RHO0 = 0.05, 0.5, 0.10, 8, 10, 0.5
N_TRAIN, N_TEST, TEST_FRACTION = 12, 16, 0.5
L0_MLP = "blocks.0.hook_mlp_out"
SHARE_TESTS = {"ratio": S.share_test, "perpair": S.pair_share_test}  # "perpair": added after the first smollm2 run
STIMULI = {"patching_pairs": StimuliSet("../fixtures/patching_pairs.jsonl", load_pairs, pairs_hash)}
TOL = {"rtol": 1e-3, "atol": 1e-4}  # float32 forward passes, batched differently only by the row count
EXPECTED_OUTCOMES = load_expected(__file__)  # recorded outcomes other than the default, with their numbers
_PATCH_T = {"threshold": THRESHOLD, "tau": TAU, "k_max": K_MAX, "n_random_sets": N_RANDOM_SETS, "rho0": RHO0,
            "n_train": N_TRAIN, "n_test": N_TEST, "test_fraction": TEST_FRACTION, "min_pairs": S.MIN_PAIRS,
            "unrelated_source": "answer partner (clean answer)", "random_sets_from": "all components"}
_ROUND3 = "round three (2026-12-07): the controls' sources changed after runs on these pairs (issue 27)"
DESIGNS = {  # pre-registration (mechclaims.verdict.design); tests/test_preregistration.py holds the hashes
    "resid_patching_ratio": Design(
        rule="per layer: denoising and noising the final residual each move > THRESHOLD of F - C on held-out pairs "
             "(ratio of means, one-sided t at alpha/n_layers); unrelated answer-carrying source must fail; model: "
             "layers < L*-1 refuted, > L* supported, L* from training pairs",
        alpha=ALPHA, sesoi=None, thresholds=_PATCH_T, stated="2026-11-30", post_hoc=_ROUND3),
    "resid_patching_perpair": Design(
        rule="as resid_patching_ratio with the mean of per-pair shares t-tested",
        alpha=ALPHA, sesoi=None, thresholds=_PATCH_T, stated="2026-11-30",
        post_hoc="added after the first smollm2-135m run of resid_patching_ratio on the same pairs; " + _ROUND3),
    "component_share": Design(
        rule="the components with training share >= TAU (at most K_MAX) restore > THRESHOLD of F - C together on "
             "held-out pairs (one-sided t, alpha 0.05); random sets of the same size from all components must fail",
        alpha=ALPHA, sesoi=None, thresholds=_PATCH_T, stated="2026-11-30", post_hoc=_ROUND3),
    "attribution_agrees": Design(
        rule="Spearman rho(attribution, patching) across components: bootstrap 5% quantile > RHO0 (supported), 95% "
             "quantile < RHO0 (refuted); the gradient of an unrelated logit difference must fail",
        alpha=ALPHA, sesoi=None, thresholds=_PATCH_T, stated="2026-11-30"),
}


def screened(ctx, key: tuple) -> dict:
    """The first pairs of the seeded split the model gets right (F > 0 > C), training and held-out."""
    tp, pairs = tokenized(ctx), ctx.stimuli("patching_pairs")
    tr, te = split_by_group(pairs, TEST_FRACTION, ctx.seed)
    return {"train": np.array(R.screen(ctx.lm, tp, tr, N_TRAIN), int), "test": np.array(R.screen(ctx.lm, tp, te, N_TEST), int)}


def tokenized(ctx):
    return ctx.memo(lambda c: tokenize_pairs(c.lm, c.stimuli("patching_pairs"), c.stimuli_path("patching_pairs")))


def data(ctx) -> dict:
    """Pairs, split, screening and the unrelated-prompt partners, once per model."""
    return ctx.memo(_data)


def _data(ctx) -> dict:
    pairs, tp = ctx.stimuli("patching_pairs"), tokenized(ctx)
    # Patching reads logits, not capture(): one capture of the residual stream first, so that a model with
    # non-finite activations stops here with capture's NonFiniteActivationError (site, layer, weights).
    capture(ctx.lm, tp.clean[:4], [site("hook_resid_pre", l) for l in range(ctx.n_layers)], "last")
    key = (pairs_hash(pairs), ctx.seed, N_TRAIN, N_TEST)
    sel = ctx.stored(screened, key)  # model-keyed statistics (verified reuse), so the shipped store carries them
    # The unrelated source: another name pair (group) and frame of the same length whose *clean* prompt has the
    # base's target, so its final residual carries the clean answer and the control can restore it (round three:
    # before, the source carried the base's own answer and the control could not pass). The plant library's
    # answer_partners is the same construction.
    partner = answer_partners(tp, sel["test"], ctx.seed)
    return {"tp": tp, "train": sel["train"], "test": sel["test"], "partner": np.asarray(partner), "key": key}


def at_chance(ctx, v: Verdict) -> Verdict:
    """Name the failed precondition in the reason: too few pairs the model gets right (F > 0 > C) to test."""
    d = data(ctx)
    n_tr, n_te = len(d["train"]), len(d["test"])
    if min(n_tr, n_te) < S.MIN_PAIRS:
        v.reason = (f"precondition failed: {ctx.lm.name} gets only {n_tr} training and {n_te} held-out pairs right "
                    f"(F > 0 > C), fewer than {S.MIN_PAIRS}: at chance on these pairs, patching cannot show an "
                    f"effect. " + v.reason).strip()
    return v


def resid_runs(ctx, key: tuple) -> dict:
    """Residual patching: final-position shares per layer (train and held-out), controls, name position, heatmap."""
    d, lm = data(ctx), ctx.lm
    tp, layers, out = d["tp"], list(range(ctx.n_layers)), {}
    for part in ("train", "test"):
        t = tp.subset(d[part])
        last = [np.array([n - 1]) for n in t.length]
        out[f"{part}_F"], out[f"{part}_C"] = R.logit_diffs(lm, t)
        out[f"{part}_den"] = R.residual_sweep(lm, t.corrupt, t.clean, last, t.target, t.foil, layers)
        out[f"{part}_noise"] = R.residual_sweep(lm, t.clean, t.corrupt, last, t.target, t.foil, layers)
    t, ok = tp.subset(d["test"]), d["partner"] >= 0
    other, last = tp.subset(d["partner"][ok]), [np.array([n - 1]) for n in t.length[ok]]
    tk = t.subset(np.flatnonzero(ok))
    out["ctl_den"] = R.residual_sweep(lm, tk.corrupt, other.clean, last, tk.target, tk.foil, layers)
    out["ctl_noise"] = R.residual_sweep(lm, tk.clean, other.corrupt, last, tk.target, tk.foil, layers)
    out["name_den"] = R.residual_sweep(lm, t.corrupt, t.clean, t.swap, t.target, t.foil, layers)
    out["name_noise"] = R.residual_sweep(lm, t.clean, t.corrupt, t.swap, t.target, t.foil, layers)
    if len(t.pairs):
        out["heat"] = R.heatmap(lm, t.corrupt[0], t.clean[0], t.target[0], t.foil[0], layers)
    return out


def resid(ctx) -> dict:
    return ctx.stored(resid_runs, data(ctx)["key"])


def layer_verdicts(ctx, design: str) -> dict[int, Verdict]:
    return ctx.stored(_layer_verdicts, design, data(ctx)["key"])


def _layer_verdicts(ctx, design: str, key: tuple) -> dict[int, Verdict]:
    d, r, test, claim = data(ctx), resid(ctx), SHARE_TESTS[design], f"resid_patching_{design}"
    ok, F, C, out = d["partner"] >= 0, r["test_F"], r["test_C"], {}
    kw = {"seed": ctx.seed, "n_boot": ctx.permutations}
    for l in range(ctx.n_layers):
        den, noi = test(r["test_den"][:, l], C, F, THRESHOLD, **kw), test(r["test_noise"][:, l], F, C, THRESHOLD, **kw)
        cd = test(r["ctl_den"][:, l], C[ok], F[ok], THRESHOLD, **kw)
        cn = test(r["ctl_noise"][:, l], F[ok], C[ok], THRESHOLD, **kw)
        v = S.carrier_verdict(den, noi, ctx.alpha, claim)
        v.note("name_denoise_share", S.share(r["name_den"][:, l], C, F))
        v.note("name_noise_share", S.share(r["name_noise"][:, l], F, C))
        out[l] = v.gate({f"{claim}_unrelated": S.carrier_verdict(cd, cn, ctx.alpha, f"{claim}_unrelated",
                                                                  role="control")})
    return out


def unrelated_summary(ctx, design: str) -> Verdict:
    per = layer_verdicts(ctx, design)
    name = f"resid_patching_{design}_unrelated"
    v = control_across_layers(name, per)
    return v.note("max_control_denoise_share", max(x.controls[name].statistic for x in per.values()))


_CLAIM_A = dict(family="causal", kinds=("causal",), controls=("resid_patching_{design}_unrelated",))


@pytest.mark.claim("resid_patching_{design}", **_CLAIM_A)
@pytest.mark.parametrize("design", list(SHARE_TESTS))
def test_resid_patching(ctx, layer, design, check):
    """At layer l, the final token's residual carries the answer: denoising restores and noising removes more than
    half of the logit difference on held-out pairs (alpha / n_layers), and an unrelated prompt's residual does not."""
    v = at_chance(ctx, layer_verdicts(ctx, design)[layer].copy())
    check(v, tolerance=TOL, layer=layer, site=site("hook_resid_pre", layer), design=design)


@pytest.mark.claim("resid_patching_{design}", **_CLAIM_A)
@pytest.mark.parametrize("design", list(SHARE_TESTS))
def test_resid_patching_transfer(ctx, design, artifacts, check):
    """The answer moves to the final token at L* (chosen on training pairs): held-out layers < L*-1 refuted,
    layers > L* supported. Plots the layer x position heatmap and the per-layer shares."""
    r, d, per, L = resid(ctx), data(ctx), layer_verdicts(ctx, design), ctx.n_layers
    est = S.share if design == "ratio" else S.mean_pair_share
    tr = [est(r["train_den"][:, l], r["train_C"], r["train_F"]) for l in range(L)]
    trn = [est(r["train_noise"][:, l], r["train_F"], r["train_C"]) for l in range(L)]
    l_star = S.crossover_layer(tr, trn, THRESHOLD) if len(d["train"]) >= S.MIN_PAIRS else None
    claim = f"resid_patching_{design}"
    v = S.transfer_verdict({l: per[l].outcome for l in per}, l_star, claim)
    v.gate({f"{claim}_unrelated": unrelated_summary(ctx, design)})
    v.note("n_train_pairs", len(d["train"])).note("n_test_pairs", len(d["test"]))
    at_chance(ctx, v)
    if "heat" in r and design == "ratio":
        plot_heatmap(ctx, r, d, per, l_star, claim, artifacts)
    check(v, tolerance=TOL, site="blocks.*.hook_resid_pre", design=design)


def plot_heatmap(ctx, r: dict, d: dict, per: dict, l_star, claim: str, artifacts) -> None:
    tok = ctx.lm.tokenizer
    t = d["tp"].subset(d["test"][:1])
    heat = (r["heat"] - r["test_C"][0]) / (r["test_F"][0] - r["test_C"][0])
    prof = {k: np.array([per[l].details[f] if f else per[l].statistic for l in per]) for k, f in
            (("final: denoise", ""), ("final: noise", "noise_share"), ("name: denoise", "name_denoise_share"),
             ("name: noise", "name_noise_share"))}
    prof["control (unrelated): denoise"] = np.array([per[l].controls[f"{claim}_unrelated"].statistic for l in per])
    toks = [tok.decode([a]) if a == b else f"{tok.decode([b])}->{tok.decode([a])}"
            for a, b in zip(t.clean[0], t.corrupt[0])]  # the swapped name shows as corrupt->clean
    recovery_heatmap(heat, toks, prof, l_star, f"{ctx.lm.name}: denoising '{t.pairs[0].clean}' into "
                     f"'{t.pairs[0].corrupt}'", artifacts.path("recovery_heatmap.png"))


@pytest.mark.claim("resid_patching_{design}_unrelated", family="causal", kinds=("causal",),
                   control_of="resid_patching_{design}")
@pytest.mark.control
@pytest.mark.parametrize("design", list(SHARE_TESTS))
def test_resid_patching_unrelated_fails(ctx, design, check):
    """An unrelated prompt's final residual (same length, same answer as the base) must not carry the answer."""
    check(at_chance(ctx, unrelated_summary(ctx, design)), baseline=False, design=design)


def component_runs(ctx, key: tuple) -> dict:
    """Per-component total effects (train and held-out), the named set, random sets, direct effects, attribution."""
    d, lm, comps, out = data(ctx), ctx.lm, R.component_sites(ctx.n_layers), {}
    for part in ("train", "test"):
        t = d["tp"].subset(d[part])
        out[f"{part}_F"], out[f"{part}_C"] = R.logit_diffs(lm, t)
        out[f"{part}_total"] = R.component_sweep(lm, t.corrupt, t.clean, t.target, t.foil, [[c] for c in comps])
    named = S.select_components(S.share(out["train_total"].T, out["train_C"], out["train_F"]), TAU, K_MAX)
    rng = np.random.default_rng(ctx.seed)
    # Random sets of the named set's size, drawn from *all* components (round three: before, only from those below
    # the 0.10 training share, whose joint share could hardly exceed 1/2: the control could not pass).
    rand = ([rng.choice(len(comps), size=len(named), replace=False) for _ in range(N_RANDOM_SETS)]
            if 0 < len(named) <= len(comps) else [])
    t = d["tp"].subset(d["test"])
    sets = [[comps[i] for i in s] for s in [named] + rand] if len(named) else []
    # Re-examined in round three, reported beside the decision: the named set without the layer-0 MLP output (which
    # at the name position acts as part of the token's embedding, so its share restates the name swap).
    no_l0 = [comps[i] for i in named if comps[i] != L0_MLP]
    if sets and len(no_l0) < len(named):
        sets.append(no_l0)
    joint = R.component_sweep(lm, t.corrupt, t.clean, t.target, t.foil, sets) if sets else np.zeros((len(t.pairs), 0))
    without = joint[:, -1] if sets and len(no_l0) < len(named) else (joint[:, 0] if sets else joint[:, :0].sum(1))
    joint = joint[:, :1 + len(rand)]
    out.update({"named": named, "random": np.array(rand, int).reshape(len(rand), len(named)), "joint": joint,
                "named_without_l0_mlp": without})
    out.update(R.attribution_runs(lm, t, comps))
    return out


def components(ctx) -> dict:
    return ctx.stored(component_runs, data(ctx)["key"] + (TAU, K_MAX, N_RANDOM_SETS))


def random_control(ctx) -> Verdict:
    c = components(ctx)
    if c["joint"].shape[1] < 2:
        return Verdict(claim="component_share_random", statistic_name="share", statistic=float("nan"), rule="-",
                       passed=False, role="control", testable=False,
                       reason="no random sets: nothing named, or fewer other components than named")
    m = c["joint"][:, 1:].mean(1)  # per pair: the mean over the random sets
    return S.share_verdict(S.share_test(m, c["test_C"], c["test_F"], THRESHOLD, seed=ctx.seed, n_boot=ctx.permutations),
                           ALPHA, "component_share_random", role="control", what="random sets' ")


@pytest.mark.claim("component_share", family="causal", kinds=("causal",), controls=("component_share_random",))
def test_component_share(ctx, artifacts, check):
    """The components named on training pairs (share >= 0.10 each) together restore more than half of the logit
    difference on held-out pairs; random sets of the same size do not. Plots direct beside total effect."""
    c, comps = components(ctx), R.component_sites(ctx.n_layers)
    F, C, named = c["test_F"], c["test_C"], c["named"]
    if len(named):
        v = S.share_verdict(S.share_test(c["joint"][:, 0], C, F, THRESHOLD, seed=ctx.seed, n_boot=ctx.permutations),
                            ALPHA, "component_share", what="named set's ")
    else:
        v = Verdict(claim="component_share", statistic_name="share", statistic=float("nan"), rule="-", passed=False,
                    testable=False, reason=f"no component reached a training share of {TAU:g}")
    total, direct = S.share(c["test_total"].T, C, F), S.delta_share(c["direct"].T, C, F)
    v.note("n_named", len(named)).note("n_test_pairs", len(F))
    if len(named) and len(F):
        v.note("named_share_without_L0_mlp", S.share(c["named_without_l0_mlp"], C, F))
    for i, j in enumerate(named):
        v.note(f"named_{i}_{comps[j]}", total[j])
    at_chance(ctx, v.gate({"component_share_random": random_control(ctx)}))
    if len(F):
        component_bars(comps, total, direct, named, f"{ctx.lm.name}: held-out share of the logit difference per "
                       f"component", artifacts.path("component_effects.png"))
    check(v, tolerance=TOL, named=[comps[j] for j in named])


@pytest.mark.claim("component_share_random", family="causal", kinds=("causal",), control_of="component_share")
@pytest.mark.control
def test_component_share_random_fails(ctx, check):
    """Random component sets of the named set's size must not restore more than half of the logit difference."""
    check(at_chance(ctx, random_control(ctx)), baseline=False)


def agreement(ctx, key: str, claim: str, role: str = "claim") -> Verdict:
    c = components(ctx)
    effect = c["test_total"] - c["test_C"][:, None]  # both in LD units: estimated and patched change in LD
    return S.rank_agreement(c[key], effect, RHO0, ALPHA, claim, seed=ctx.seed, n_boot=ctx.permutations, role=role)


@pytest.mark.claim("attribution_agrees", family="causal", kinds=("causal",),
                   controls=("attribution_unrelated_metric",))
def test_attribution_agrees(ctx, artifacts, check):
    """Attribution patching ranks the components like real patching (Spearman rho > 0.5, bootstrap over held-out
    pairs); the gradient of an unrelated logit difference does not. Plots attribution against patching."""
    v = agreement(ctx, "attribution", "attribution_agrees")
    v.gate({"attribution_unrelated_metric": agreement(ctx, "attribution_control", "attribution_unrelated_metric",
                                                      "control")})
    c, comps = components(ctx), R.component_sites(ctx.n_layers)
    F, C = c["test_F"], c["test_C"]
    a, p = S.delta_share(c["attribution"].T, C, F), S.share(c["test_total"].T, C, F)  # shares: LD / mean(F - C)
    v.note("rho_without_layer0", stats.spearmanr(a[2:], p[2:]).statistic if len(F) else float("nan"))
    worst = int(np.argmax(np.abs(a - p))) if len(F) else 0  # attribution minus patching, in shares
    v.note("gap_L0_attn", a[0] - p[0]).note("gap_L0_mlp", a[1] - p[1]).note("max_abs_gap", abs(a[worst] - p[worst]))
    v.note("max_abs_gap_component", worst)
    at_chance(ctx, v)
    if len(F):
        attribution_scatter(comps, a, p, v, f"{ctx.lm.name}: attribution patching vs patching (held-out pair means)",
                            artifacts.path("attribution_vs_patching.png"))
    check(v, tolerance=TOL)


@pytest.mark.claim("attribution_unrelated_metric", family="causal", kinds=("causal",), control_of="attribution_agrees")
@pytest.mark.control
def test_attribution_unrelated_metric_fails(ctx, check):
    """The gradient of an unrelated logit difference (" the" - " a") must not rank the components like patching."""
    check(at_chance(ctx, agreement(ctx, "attribution_control", "attribution_unrelated_metric", "control")),
          baseline=False)
