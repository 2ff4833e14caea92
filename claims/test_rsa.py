"""Claim 3: query and key vectors of category words group by category, and W_Q/W_K add that structure.

Stimuli: ``fixtures/rsa_categories.json`` (4 categories x 12 single-token nouns, with Zipf word frequencies;
``--stimuli rsa_categories=PATH``, format in ``fixtures/README_rsa.md``), template "The next word is {word}". Words
are put in a canonical order on load (categories by name, words alphabetically), so a file's order changes nothing.
Vectors at the word's token, every layer: ``attn.hook_q`` (all query heads), ``attn.hook_k`` (all KV heads), both
before rotary, and ``attn.hook_qk_in`` (the normed input they read). Statistic: within-minus-across mean cosine
similarity (``delta``). Effect for evidence of absence: the AUC of within- vs across-category pair similarities
(0.5: no grouping), with a leave-one-word-out jackknife SE; smallest effect of interest +-0.05 AUC, stated before
looking. Surface groupings of the same words (first letter; character length and Zipf frequency, each cut into as
many equal-size groups as there are categories) are controls that decide: a semantic effect that a surface grouping
matches is ``confounded``.

A. ``qk_category_selectivity``: delta beats a label-permutation null (rows and columns permuted together; at least
   ``min_draws`` permutations), one-sided, BH-FDR over Q and K at every layer of the model; the claim holds when Q
   and K are both significant at more than half of the layers (the pre-registered rule). Refuted: the mean AUC minus
   0.5 inside +-0.05 (TOST, 90% jackknife interval), or delta significantly *below* the null (lower tail, same
   correction) at more than half of the layers. Controls (each must fail the same rule): the random-weight copy of
   the model, and each surface grouping.
B. ``qk_rsa_beats_rotated_weights`` (replaces the comparison with isotropic random W_Q/W_K, which preserve the
   inputs' geometry and so bound rho from above: reported, never deciding). Spearman rho between the Q and K
   similarity structures beats the spectrum-matched null (the learned W_Q, W_K with independent Haar rotations on
   the input side; ``mechclaims.stats.rsa_rotation``), one-sided, Bonferroni alpha / n_layers, at more than half of
   the layers. Refuted: learned rho significantly below the null at more than half of the layers, or the mean
   excess rho inside +-0.05 (TOST). Control: the random-weight copy.
C. ``qk_category_beyond_input``: W_Q and W_K add category structure beyond their input. Delta of the learned Q (and
   K) beats delta under the rotated-weights null, one-sided, Bonferroni over Q and K at every layer, both at more
   than half of the layers. Refuted: mean AUC excess over the null inside +-0.05, or the opposite direction at more
   than half. Controls: the random-weight copy, and each surface grouping through the same rule.
Falsified by: A, delta inside the permutation null at half the layers or more; B and C, the learned weights doing no
better than their own spectra in random orientation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mechclaims.capture import capture
from mechclaims.datasets.categories import load_categories, word_positions
from mechclaims.plots import rsa as rplot
from mechclaims.qk_null import rotation_null
from mechclaims.sites import site
from mechclaims.stats import rsa
from mechclaims.stats.common import min_draws
from mechclaims.stats.equivalence import absence
from mechclaims.stats.rsa_rotation import auc_batch, auc_jackknife, rho_batch, surface_groupings
from mechclaims.verdict import Verdict

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ALPHA, SESOI, N_BOOT = 0.05, 0.05, 1000
# Rotated-weights draws per layer, at most: values inside the null stop after ~20-60 draws (both tails reached);
# values out in a tail are judged by the Shapiro-checked normal tail of these draws (mechclaims.stats.common.tail_p).
ROTATIONS = 300
KINDS = ("attn.hook_q", "attn.hook_k", "attn.hook_qk_in")
A, B, C = "qk_category_selectivity", "qk_rsa_beats_rotated_weights", "qk_category_beyond_input"
TOL = {"rtol": 1e-2, "atol": 1e-6}
STEP_TOL = {"rtol": 0.0, "atol": 5e-3}  # p-values and quantiles move in steps of 1/(n+1)

# Recorded outcomes other than the default (claim: supported; control: failed), keyed by test id, with the numbers.
EXPECTED_OUTCOMES: dict[str, tuple[str, str]] = {}


def categories(mc):
    return load_categories(mc.stimuli_path("rsa_categories", FIXTURES / "rsa_categories.json"))


def qk_acts(lm, mc, model_pool, templates: tuple[str, ...] | None = None, kinds=KINDS) -> dict[str, np.ndarray]:
    """``{kind: [L, n_words, ...]}`` at each word's token, captured once per model, templates and stimuli."""
    cs = categories(mc)
    templates = templates or (cs.template,)

    def run():
        ids, pos = [], []
        for t in templates:
            i, p = word_positions(cs, lm.tokenizer, lm.name, template=t)
            ids, pos = ids + i, pos + p.tolist()
        a = capture(lm, ids, [site(k, l) for l in range(lm.n_layers) for k in kinds], pos)
        return {k: np.stack([a[site(k, l)].reshape((len(templates), len(cs.words)) + a[site(k, l)].shape[1:])
                             .mean(0) for l in range(lm.n_layers)]) for k in kinds}

    return model_pool.activations(lm, "rsa", (cs.hash(), templates, kinds), run)


def flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], a.shape[1], -1)


def groupings(lm, mc) -> dict[str, np.ndarray]:
    """The categories first, then the surface groupings of the same words (frequency: the file's Zipf values, else
    the token id as a rough frequency rank)."""
    cs = categories(mc)
    ids = [x[p] for x, p in zip(*word_positions(cs, lm.tokenizer, lm.name))]
    surf = surface_groupings(cs.words, len(cs.names), cs.frequencies(), np.array(ids))
    return {"category": cs.labels, **{k.replace("_token_id_proxy", ""): v for k, v in surf.items()}}


SURFACES = ("first_letter", "char_length", "frequency")
A_CONTROLS = ("sel_random_weights",) + tuple(f"sel_surface_{g}" for g in SURFACES)
B_CONTROLS = ("rsa_random_weights",)
C_CONTROLS = ("beyond_random_weights",) + tuple(f"beyond_surface_{g}" for g in SURFACES)


def perm_profiles(lm, mc, model_pool, acts) -> dict[str, tuple]:
    """Claim A's label-permutation profiles (Q, K) per grouping, every layer of the model."""
    cs = categories(mc)
    n_perm = max(mc.permutations, min_draws(2 * lm.n_layers, ALPHA))

    def run():
        return {g: tuple(rsa.selectivity_profile(flat(acts[k]), lab, n_perm=n_perm, n_boot=N_BOOT if g == "category"
                                                 else 0, seed=mc.seed) for k in KINDS[:2])
                for g, lab in groupings(lm, mc).items()}
    return model_pool.cached((lm.name, lm.fingerprint, "rsa-perm", cs.hash(), n_perm, mc.seed, N_BOOT), run)


def rotation_profiles(lm, mc, model_pool, acts) -> list[tuple]:
    """Claims B and C: per layer (observed, nulls, p, draws) under the rotated-weights null."""
    cs = categories(mc)
    n_max = ROTATIONS
    groups = groupings(lm, mc)

    def run():
        return [rotation_null(lm, l, acts[KINDS[2]][l], acts[KINDS[0]][l], acts[KINDS[1]][l], groups, n_max=n_max,
                              seed=mc.seed + 1000 * l) for l in range(lm.n_layers)]
    return model_pool.cached((lm.name, lm.fingerprint, "rsa-rot", cs.hash(), n_max, mc.seed), run)


def _majority(name: str, holds: np.ndarray, opposite: np.ndarray, effect: float, se: float, rule: str,
              details: dict, role: str = "claim", what: str = "") -> Verdict:
    """More than half of the layers hold. Refuted: the opposite holds at more than half, or TOST on ``effect``."""
    frac = float(np.mean(holds))
    lo_hi = (effect - 1.645 * se, effect + 1.645 * se)  # 90% interval: TOST at 0.05
    ab = absence(effect, lo_hi, SESOI, name=what or "effect", alpha=ALPHA)
    opp = float(np.mean(opposite)) > 0.5
    return Verdict(claim=name, statistic_name="frac_layers_holding", statistic=frac, rule=rule, passed=frac > 0.5,
                   effect_name=what or "effect", effect=effect, effect_ci=lo_hi, details=details, role=role,
                   absent=ab.shown or opp, absence=(f"the opposite direction holds at {np.mean(opposite):.0%} of "
                                                    f"layers" if opp else ab.text), testable=bool(np.isfinite(se)))


def claim_a(lm, mc, model_pool, g: str = "category", role: str = "claim") -> Verdict:
    acts = qk_acts(lm, mc, model_pool)
    q, k = perm_profiles(lm, mc, model_pool, acts)[g]
    lab = groupings(lm, mc)[g]
    holds, (qq, qk) = rsa.holds_by_unit([q.p, k.p], ALPHA)
    p_less = [np.array([(np.sum(n <= o) + 1) / (n.size + 1) for o, n in zip(pr.delta, pr.null)]) for pr in (q, k)]
    opposite, _ = rsa.holds_by_unit(p_less, ALPHA)
    auc, se = auc_jackknife([flat(acts[KINDS[0]]), flat(acts[KINDS[1]])], lab)
    det = {"n_layers": float(len(holds)), "n_layers_holding": float(holds.sum()), "auc_mean": float(auc.mean())}
    for l in range(lm.n_layers):
        det.update({f"L{l:02d}.q.delta": q.delta[l], f"L{l:02d}.q.z": q.z[l], f"L{l:02d}.q.qval": qq[l],
                    f"L{l:02d}.k.delta": k.delta[l], f"L{l:02d}.k.z": k.z[l], f"L{l:02d}.k.qval": qk[l]})
    v = _majority(A if role == "claim" else f"{A}[{g}]", holds, opposite, float(auc.mean() - 0.5), se,
                  f"grouping '{g}': within-minus-across cosine beats a label-permutation null (BH-FDR q < {ALPHA} over Q "
                  f"and K at all {lm.n_layers} layers) for both Q and K at more than half of the layers", det, role,
                  "auc_minus_0.5")
    v.layers = {l: ("supported" if holds[l] else "refuted" if opposite[l] else "inconclusive") for l in range(len(holds))}
    return v


def claim_bc(lm, mc, model_pool, which: str, g: str = "category", role: str = "claim") -> Verdict:
    """B (Q-K RSA) or C (category structure beyond the input) against the rotated-weights null, every layer."""
    L = lm.n_layers
    acts = qk_acts(lm, mc, model_pool)
    rot = rotation_profiles(lm, mc, model_pool, acts)
    a = ALPHA / L if which == B else ALPHA / (2 * L)
    keys = ["rho"] if which == B else [f"delta_q.{g}", f"delta_k.{g}"]
    holds = np.array([all(r[2][k] <= a for k in keys) for r in rot])
    opposite = np.array([all(r[2][f"{k}.less"] <= a for k in keys) for r in rot])
    Q, K = flat(acts[KINDS[0]]), flat(acts[KINDS[1]])
    if which == B:  # effect: learned rho minus the null's mean rho; jackknife over words (the null mean held fixed)
        null_mean = np.array([r[1]["rho"].mean() for r in rot])
        obs = np.array([r[0]["rho"] for r in rot])
        loo = np.array([(rho_batch(np.delete(Q, i, 1), np.delete(K, i, 1)) - null_mean).mean()
                        for i in range(Q.shape[1])])
        effect, what = float((obs - null_mean).mean()), "rho_minus_rotated_mean"
    else:  # effect: AUC of the learned Q and K minus the null's mean AUC (the category grouping)
        lab = groupings(lm, mc)[g]
        null_auc = np.concatenate([[r[1]["auc_q"].mean() for r in rot], [r[1]["auc_k"].mean() for r in rot]])
        def auc2(q, k, y):
            return np.concatenate([auc_batch(q, y), auc_batch(k, y)])
        loo = np.array([(auc2(np.delete(Q, i, 1), np.delete(K, i, 1), np.delete(lab, i)) - null_auc).mean()
                        for i in range(Q.shape[1])])
        effect, what = float((auc2(Q, K, lab) - null_auc).mean()), "auc_minus_rotated_mean"
    n = len(loo)
    se = float(np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2)))
    det = {"n_layers_holding": float(holds.sum()), "mean_draws": float(np.mean([r[3] for r in rot]))}
    for l, r in enumerate(rot):
        for k in keys:
            det.update({f"L{l:02d}.{k}": r[0][k], f"L{l:02d}.{k}.null_mean": float(r[1][k].mean()),
                        f"L{l:02d}.{k}.p": r[2][k]})
    rule = (f"{'Q-K Spearman rho' if which == B else f'within-minus-across of Q and K (grouping {g})'} beats the "
            f"rotated-weights null (one-sided, Bonferroni {a:.3g}) at more than half of the layers")
    v = _majority(which if role == "claim" else f"{which}[{g}]", holds, opposite, effect, se, rule, det, role, what)
    v.layers = {l: ("supported" if holds[l] else "refuted" if opposite[l] else "inconclusive") for l in range(L)}
    return v


def random_lm(lm, mc, model_pool):
    return model_pool.random_copy(lm, mc.seed)


def gated(lm, mc, model_pool, which: str) -> Verdict:
    """The claim with its controls attached (memoized: the claim test and its control tests share them)."""
    def run():
        rnd = random_lm(lm, mc, model_pool)
        if which == A:
            v = claim_a(lm, mc, model_pool)
            ctl = {"sel_random_weights": claim_a(rnd, mc, model_pool, role="control")}
            ctl.update({f"sel_surface_{g}": claim_a(lm, mc, model_pool, g, role="control") for g in SURFACES})
        elif which == B:
            v = claim_bc(lm, mc, model_pool, B)
            ctl = {"rsa_random_weights": claim_bc(rnd, mc, model_pool, B, role="control")}
        else:
            v = claim_bc(lm, mc, model_pool, C)
            ctl = {"beyond_random_weights": claim_bc(rnd, mc, model_pool, C, role="control")}
            ctl.update({f"beyond_surface_{g}": claim_bc(lm, mc, model_pool, C, g, role="control") for g in SURFACES})
        return v.gate(ctl)
    return model_pool.cached((lm.name, lm.fingerprint, "rsa-gated", which, categories(mc).hash(), mc.seed,
                              mc.permutations), run)


def display_layer(n_layers: int) -> int:
    """The original read GPT-2 medium's layer 5 of 24: the layer nearest that relative depth."""
    return round(5 / 24 * n_layers)


def _tol(v: Verdict) -> dict:
    return {k: STEP_TOL for k in v.numbers() if k.endswith((".p", ".qval", "frac_layers_holding"))}


@pytest.mark.claim(A, family="observational", controls=A_CONTROLS)
def test_qk_category_selectivity(lm, mc, model_pool, artifacts, baseline, record, expect):
    cs = categories(mc)
    v = gated(lm, mc, model_pool, A)
    acts = qk_acts(lm, mc, model_pool)
    prof = perm_profiles(lm, mc, model_pool, acts)
    rnd = random_lm(lm, mc, model_pool)
    record(v, site="attn.hook_q/attn.hook_k", n_words=len(cs.words))
    dl = display_layer(lm.n_layers)
    Sq, Sk = rsa.cosine_similarity(flat(acts[KINDS[0]])[dl]), rsa.cosine_similarity(flat(acts[KINDS[1]])[dl])
    q, k = prof["category"]
    rplot.original_panels(Sq, Sk, cs.labels, cs.names, None, artifacts.path("original_panels.png"),
                          f"{lm.name} layer {dl}: Q ratio {q.ratio[dl]:.3f}, K ratio {k.ratio[dl]:.3f}")
    rplot.null_distribution(q.delta[dl], q.null[dl], artifacts.path("null_q.png"), "within - across (Q)",
                            f"{lm.name} layer {dl}: label-permutation null",
                            {f"{g} grouping": prof[g][0].delta[dl] for g in SURFACES})
    series = {"Q": q.z, "K": k.z, **{f"Q, {g} grouping": prof[g][0].z for g in SURFACES},
              "Q, random-weight copy": perm_profiles(rnd, mc, model_pool, qk_acts(rnd, mc, model_pool))["category"][0].z}
    rplot.z_by_layer({n: np.asarray(z) for n, z in series.items()}, artifacts.path("z_by_layer.png"),
                     list(range(lm.n_layers)), title=f"{lm.name}: Q/K category selectivity per layer (z vs permutations)")
    baseline.check(v.numbers(), lm, default_tolerance=TOL, tolerances=_tol(v))
    expect(v)


@pytest.mark.claim("{control}", family="observational", control_of=A)
@pytest.mark.control
@pytest.mark.parametrize("control", A_CONTROLS)
def test_qk_category_control_fails(lm, mc, model_pool, record, expect, control):
    """The random-weight copy and each surface grouping of the same words must fail claim A's rule."""
    v = gated(lm, mc, model_pool, A).controls[control]
    record(v, control=control)
    expect(v)


@pytest.mark.claim(B, family="observational", controls=B_CONTROLS)
def test_qk_rsa_beats_rotated_weights(lm, mc, model_pool, artifacts, baseline, record, expect):
    cs = categories(mc)
    v = gated(lm, mc, model_pool, B)
    acts = qk_acts(lm, mc, model_pool)
    rot = rotation_profiles(lm, mc, model_pool, acts)
    L = lm.n_layers
    # Reported, never deciding: isotropic Gaussian W_q/W_k preserve the inputs' geometry (an upper bound).
    iso = rsa.random_projection_rho(acts[KINDS[2]], flat(acts[KINDS[0]]).shape[-1], flat(acts[KINDS[1]]).shape[-1],
                                    n_draws=200, seed=mc.seed)
    v.details.update({f"L{l:02d}.rho_isotropic_random_mean": float(iso[l].mean()) for l in range(L)})
    record(v, site="attn.hook_q/attn.hook_k/attn.hook_qk_in", n_words=len(cs.words))
    rho = np.array([r[0]["rho"] for r in rot])
    null = [r[1]["rho"] for r in rot]
    rplot.rsa_by_layer(rho, null, artifacts.path("rsa_by_layer.png"), None, {"isotropic random W (upper bound)":
                       iso.mean(-1)}, f"{lm.name}: Q-K RSA vs the rotated-weights null", list(range(L)))
    dl = display_layer(L)
    Sq, Sk = rsa.cosine_similarity(flat(acts[KINDS[0]])[dl]), rsa.cosine_similarity(flat(acts[KINDS[1]])[dl])
    rplot.qk_scatter_by_category(Sq, Sk, cs.labels, cs.names, artifacts.path("qk_scatter_by_category.png"), None,
                                 f"{lm.name} layer {dl}: rho {rho[dl]:.3f}")
    baseline.check(v.numbers(), lm, default_tolerance=TOL, tolerances=_tol(v))
    expect(v)


@pytest.mark.claim("{control}", family="observational", control_of=B)
@pytest.mark.control
@pytest.mark.parametrize("control", B_CONTROLS)
def test_qk_rsa_control_fails(lm, mc, model_pool, record, expect, control):
    """In a random-weight copy W_q and W_k are random: its rho must not beat its own rotated weights."""
    v = gated(lm, mc, model_pool, B).controls[control]
    record(v, control=control)
    expect(v)


@pytest.mark.claim(C, family="observational", controls=C_CONTROLS)
def test_qk_category_beyond_input(lm, mc, model_pool, artifacts, baseline, record, expect):
    v = gated(lm, mc, model_pool, C)
    rot = rotation_profiles(lm, mc, model_pool, qk_acts(lm, mc, model_pool))
    record(v, site="attn.hook_q/attn.hook_k vs attn.hook_qk_in", n_words=len(categories(mc).words))
    L = lm.n_layers
    for kind in ("q", "k"):
        key = f"delta_{kind}.category"
        rplot.rsa_by_layer(np.array([r[0][key] for r in rot]), [r[1][key] for r in rot],
                           artifacts.path(f"beyond_input_{kind}.png"), None, {},
                           f"{lm.name}: {kind.upper()} within-minus-across vs the rotated-weights null", list(range(L)),
                           ylabel="within - across cosine")
    baseline.check(v.numbers(), lm, default_tolerance=TOL, tolerances=_tol(v))
    expect(v)


@pytest.mark.claim("{control}", family="observational", control_of=C)
@pytest.mark.control
@pytest.mark.parametrize("control", C_CONTROLS)
def test_qk_category_beyond_input_control_fails(lm, mc, model_pool, record, expect, control):
    """The random-weight copy and each surface grouping must fail claim C's rule."""
    v = gated(lm, mc, model_pool, C).controls[control]
    record(v, control=control)
    expect(v)
