"""Claim 3: query and key vectors of category words group by category, and W_Q/W_K add that structure.

Stimuli: ``fixtures/rsa_categories.json`` (4 categories x 12 single-token nouns, with Zipf word frequencies;
``--stimuli rsa_categories=PATH``, format in ``fixtures/README_rsa.md``), template "The next word is {word}". Words
are put in a canonical order on load (categories by name, words alphabetically), so a file's order changes nothing.
Vectors at the word's token, every layer: ``attn.hook_q`` (all query heads), ``attn.hook_k`` (all KV heads), both
before rotary, and ``attn.hook_qk_in`` (the normed input they read). Statistic: within-minus-across mean cosine
similarity (``delta``). Effect for evidence of absence: the AUC of within- vs across-category pair similarities
(0.5: no grouping), with a leave-one-word-out jackknife SE; smallest effect of interest +-0.05 AUC, stated before
looking. Surface groupings of the same words (first letter; character length and Zipf frequency, each cut into as
many equal-size groups as there are categories; frequency only when the file gives Zipf values, never a token-id
stand-in: without them the frequency controls are left out and the verdict says so) are controls that decide: a
semantic effect that a surface grouping matches is ``confounded``.

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
D. ``qk_category_beyond_mean_input`` (new design, round three, 2026-12-07; C is kept as recorded): C's rule under
   the mean-fixed rotated-weights null: the inputs' component along their unit grand mean stays in place and only
   the orthogonal complement is rotated (``fixed_basis``; ``rotation_null(fixed=...)``). Why: C's null rotates the
   shared mean into directions the weights read, so weights that merely project out the mean (category-agnostic)
   passed C in 0.53 of runs (issue 27); on synthetic mean-projecting weights the plain null rejected 37/40 at 0.05
   and the mean-fixed one 3/40. Refuted and controls as C.
Falsified by: A, delta inside the permutation null at half the layers or more; B, C and D, the learned weights doing
no better than their own spectra in random orientation (D: with the mean direction held in place).
"""
from __future__ import annotations

import numpy as np
import pytest

from mechclaims.claim import Design, StimuliSet, Verdict, control_tests, controls
from mechclaims.datasets.categories import load_categories, word_positions
from mechclaims.forward.capture import capture
from mechclaims.model.sites import site
from mechclaims.model.weights import model_path
from mechclaims.plots import rsa as rplot
from mechclaims.stats import rsa
from mechclaims.stats.common import min_draws
from mechclaims.stats.qk_null import rotation_null
from mechclaims.stats.rsa_claims import rotation_claim, selectivity_claim
from mechclaims.stats.rsa_rotation import fixed_basis, surface_groupings
from mechclaims.verdict.expected import load_expected

ALPHA, SESOI, N_BOOT = 0.05, 0.05, 1000
# Rotated-weights draws per layer, at most: values inside the null stop after ~20-60 draws (both tails reached);
# values out in a tail are judged by the Shapiro-checked normal tail of these draws (mechclaims.stats.common.tail_p).
ROTATIONS = 300
KINDS = ("attn.hook_q", "attn.hook_k", "attn.hook_qk_in")
A, B, C, D = ("qk_category_selectivity", "qk_rsa_beats_rotated_weights", "qk_category_beyond_input",
              "qk_category_beyond_mean_input")
SURFACES = ("first_letter", "char_length", "frequency")
A_CONTROLS = ("sel_random_weights",) + tuple(f"sel_surface_{g}" for g in SURFACES)
B_CONTROLS = ("rsa_random_weights",)
C_CONTROLS = ("beyond_random_weights",) + tuple(f"beyond_surface_{g}" for g in SURFACES)
D_CONTROLS = ("beyond_mean_random_weights",) + tuple(f"beyond_mean_surface_{g}" for g in SURFACES)
STIMULI = {"rsa_categories": StimuliSet("../fixtures/rsa_categories.json", load_categories)}
TOL = {"rtol": 1e-2, "atol": 1e-6}
STEP_TOL = {"rtol": 0.0, "atol": 5e-3}  # p-values and quantiles move in steps of 1/(n+1)
EXPECTED_OUTCOMES = load_expected(__file__)  # recorded outcomes other than the default, with their numbers
_T = {"rotations": ROTATIONS, "kinds": KINDS, "surfaces": SURFACES, "n_boot": N_BOOT}
_LATE = "the SESOI (0.05) first appears in a redesign after the old design's numbers on these words were published"
DESIGNS = {  # pre-registration (mechclaims.verdict.design); unchanged in round three: 'the round-three Q/K design (band-rotation null, AUC decides) is on branch qk, not deployed: its null is not calibrated at alpha/(2L) and too slow on smollm2-135m (issue 27 note)'
    A: Design(rule="per layer, Q and K: within-category cosine selectivity (AUC) above 0.5 at alpha/(2L), bootstrap CI; "
                   "more than half the layers; random weights and surface groupings must fail",
              alpha=ALPHA, sesoi=SESOI, thresholds=_T, stated="2026-11-23", post_hoc=_LATE),
    B: Design(rule="per layer: Q-K RSA rho beats the rotated-weights null at alpha/(2L); more than half the layers; the "
                   "random-weight copy must fail", alpha=ALPHA, sesoi=SESOI, thresholds=_T, stated="2026-11-30",
              post_hoc=_LATE),
    C: Design(rule="per layer: Q/K category selectivity beyond the input's (rotation null of W_Q, W_K); more than half "
                   "the layers; random weights and surface groupings must fail", alpha=ALPHA, sesoi=SESOI,
              thresholds=_T, stated="2026-11-30", post_hoc=_LATE),
    D: Design(rule="per layer: Q/K category selectivity beyond the input's, under the rotation null with the inputs' "
                   "grand-mean direction held fixed; more than half the layers; random weights and surface groupings "
                   "must fail", alpha=ALPHA, sesoi=SESOI, thresholds=_T, stated="2026-12-07",
              post_hoc="a new design after C's runs on these words (named separately): C's null passed "
                       "mean-projecting weights (issue 27); " + _LATE),
}


def qk_capture(ctx, cs_hash: str, templates: tuple[str, ...], kinds: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``{kind: [L, n_words, ...]}`` at each word's token, averaged over the templates."""
    cs, lm = ctx.stimuli("rsa_categories"), ctx.lm
    ids, pos = [], []
    for t in templates:
        i, p = word_positions(cs, lm.tokenizer, lm.name, template=t)
        ids, pos = ids + i, pos + p.tolist()
    a = capture(lm, ids, [site(k, l) for l in range(lm.n_layers) for k in kinds], pos)
    return {k: np.stack([a[site(k, l)].reshape((len(templates), len(cs.words)) + a[site(k, l)].shape[1:]).mean(0)
                         for l in range(lm.n_layers)]) for k in kinds}


def qk_acts(ctx) -> dict[str, np.ndarray]:
    cs = ctx.stimuli("rsa_categories")
    return ctx.captured(qk_capture, cs.hash(), (cs.template,), KINDS)


def flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], a.shape[1], -1)


def groupings(ctx) -> dict[str, np.ndarray]:
    """The categories first, then the surface groupings of the same words. Frequency needs the file's Zipf values:
    without them that grouping is absent and its controls are left out, saying so (:func:`surfaces`)."""
    cs = ctx.stimuli("rsa_categories")
    return {"category": cs.labels, **surface_groupings(cs.words, len(cs.names), cs.frequencies())}


def surfaces(ctx) -> tuple[str, ...]:
    """The surface groupings this file allows (frequency only with frequencies)."""
    return tuple(g for g in SURFACES if g in groupings(ctx))


def left_out(ctx) -> str:
    """Why a declared surface control did not run ('' when all ran): it gates as inapplicable, never as a pass."""
    if "frequency" in groupings(ctx):
        return ""
    src = ctx.stimuli("rsa_categories").source
    return (f"frequency control left out: {src} gives no Zipf frequency for every word (a token-id rank is no "
            f"frequency); add a \"zipf\" object mapping each word to its Zipf frequency (fixtures/README_rsa.md) "
            f"to run it")


def claim_a(ctx, g: str = "category", role: str = "claim"):
    """Claim A's rule for grouping ``g`` on every layer: (Verdict, (Q profile, K profile)), stored on what it reads."""
    n_perm = max(ctx.permutations, min_draws(2 * ctx.n_layers, ALPHA))
    return ctx.stored(_claim_a, g, role, n_perm, ctx.stimuli("rsa_categories").hash(),
                      reads=(qk_acts(ctx), groupings(ctx)[g]))


def _claim_a(ctx, g: str, role: str, n_perm: int, cs_hash: str):
    acts = qk_acts(ctx)
    return selectivity_claim(acts[KINDS[0]], acts[KINDS[1]], groupings(ctx)[g], n_perm=n_perm, seed=ctx.seed,
                             alpha=ALPHA, sesoi=SESOI, n_boot=N_BOOT if role == "claim" else 0,
                             claim=A if role == "claim" else f"{A}[{g}]", role=role, grouping=g)


def rotation_profiles(ctx, fixed_mean: bool = False) -> list[tuple]:
    """Claims B and C (D: ``fixed_mean``, the inputs' mean direction held in place): per layer (observed, nulls, p,
    draws) under the rotated-weights null (stored on the full key: the null runs the model's W_Q/W_K through torch,
    so it reads the weights and the library, not only arrays)."""
    args = (ctx.stimuli("rsa_categories").hash(), ROTATIONS) + ((True,) if fixed_mean else ())
    return ctx.stored(_rotation_profiles, *args)


def _rotation_profiles(ctx, cs_hash: str, rotations: int, fixed_mean: bool = False) -> list[tuple]:
    groups, acts = groupings(ctx), qk_acts(ctx)
    X = acts[KINDS[2]]
    return [rotation_null(model_path(ctx.lm, l), X[l], acts[KINDS[0]][l], acts[KINDS[1]][l], groups,
                          n_max=rotations, seed=ctx.seed + 1000 * l, fixed=fixed_basis(X[l]) if fixed_mean else None)
            for l in range(ctx.n_layers)]


def claim_bc(ctx, which: str, g: str = "category", role: str = "claim") -> Verdict:
    """Claim B, C or D from its rotation profiles (D: the mean-fixed null)."""
    acts = qk_acts(ctx)
    return rotation_claim(rotation_profiles(ctx, fixed_mean=which == D), acts[KINDS[0]], acts[KINDS[1]],
                          groupings(ctx)[g], which="rsa" if which == B else "beyond", alpha=ALPHA, sesoi=SESOI,
                          role=role, grouping=g, claim=which if role == "claim" else f"{which}[{g}]")


def gated(ctx, which: str) -> Verdict:
    """The claim with its controls attached (stored: the claim test and its control tests share them). A reads only
    captures (the model's and the random-weight copy's) and groupings: a content key; B and C the rotated null."""
    reads = tuple(x for c in (ctx, ctx.random()) for x in (qk_acts(c), groupings(c))) if which == A else None
    return ctx.stored(_gated, which, ctx.stimuli("rsa_categories").hash(), reads=reads)


def _gated(ctx, which: str, cs_hash: str) -> Verdict:
    if which == A:
        v = claim_a(ctx)[0]
        ctl = {"sel_random_weights": controls.random_weights(ctx, lambda c: claim_a(c, role="control")[0])}
        ctl.update({f"sel_surface_{g}": claim_a(ctx, g, role="control")[0] if g in surfaces(ctx) else None
                    for g in SURFACES})
    elif which == B:
        v = claim_bc(ctx, B)
        ctl = {"rsa_random_weights": controls.random_weights(ctx, claim_bc, B, role="control")}
    else:
        pre = "beyond" if which == C else "beyond_mean"
        v = claim_bc(ctx, which)
        ctl = {f"{pre}_random_weights": controls.random_weights(ctx, claim_bc, which, role="control")}
        ctl.update({f"{pre}_surface_{g}": claim_bc(ctx, which, g, role="control") if g in surfaces(ctx) else None
                    for g in SURFACES})
    if left_out(ctx) and which != B:
        v.reason = "; ".join(x for x in (v.reason, left_out(ctx)) if x)
    return v.gate(ctl)


def display_layer(n_layers: int) -> int:
    """The original read GPT-2 medium's layer 5 of 24: the layer nearest that relative depth."""
    return round(5 / 24 * n_layers)


def step_tolerances(v: Verdict) -> Verdict:
    """p-values, q-values and fractions of layers move in steps of 1/(n+1): declared beside those numbers."""
    v = v.copy()
    v.tolerances.update({k: STEP_TOL for k in v.numbers() if k.endswith((".p", ".qval", "frac_layers_holding"))})
    return v


@pytest.mark.claim(A, family="observational", controls=A_CONTROLS)
def test_qk_category_selectivity(ctx, artifacts, check):
    cs, lm, acts = ctx.stimuli("rsa_categories"), ctx.lm, qk_acts(ctx)
    prof = {g: claim_a(ctx, g, "claim" if g == "category" else "control")[1] for g in ("category",) + surfaces(ctx)}
    dl = display_layer(lm.n_layers)
    Sq, Sk = rsa.cosine_similarity(flat(acts[KINDS[0]])[dl]), rsa.cosine_similarity(flat(acts[KINDS[1]])[dl])
    q, k = prof["category"]
    rplot.original_panels(Sq, Sk, cs.labels, cs.names, None, artifacts.path("original_panels.png"),
                          f"{lm.name} layer {dl}: Q ratio {q.ratio[dl]:.3f}, K ratio {k.ratio[dl]:.3f}")
    rplot.null_distribution(q.delta[dl], q.null[dl], artifacts.path("null_q.png"), "within - across (Q)",
                            f"{lm.name} layer {dl}: label-permutation null",
                            {f"{g} grouping": prof[g][0].delta[dl] for g in surfaces(ctx)})
    series = {"Q": q.z, "K": k.z, **{f"Q, {g} grouping": prof[g][0].z for g in surfaces(ctx)},
              "Q, random-weight copy": claim_a(ctx.random(), role="control")[1][0].z}
    rplot.z_by_layer({n: np.asarray(z) for n, z in series.items()}, artifacts.path("z_by_layer.png"),
                     list(range(lm.n_layers)), title=f"{lm.name}: Q/K category selectivity per layer (z vs permutations)")
    check(step_tolerances(gated(ctx, A)), tolerance=TOL, site="attn.hook_q/attn.hook_k", n_words=len(cs.words))


@pytest.mark.claim(B, family="observational", controls=B_CONTROLS)
def test_qk_rsa_beats_rotated_weights(ctx, artifacts, check):
    cs, lm, acts, rot = ctx.stimuli("rsa_categories"), ctx.lm, qk_acts(ctx), rotation_profiles(ctx)
    v, L = step_tolerances(gated(ctx, B)), lm.n_layers
    # Reported, never deciding: isotropic Gaussian W_q/W_k preserve the inputs' geometry (an upper bound).
    iso = ctx.stored(isotropic_rho, cs.hash(), reads=acts)
    for l in range(L):
        v.note(f"L{l:02d}.rho_isotropic_random_mean", float(iso[l].mean()))
    rho, null = np.array([r[0]["rho"] for r in rot]), [r[1]["rho"] for r in rot]
    rplot.rsa_by_layer(rho, null, artifacts.path("rsa_by_layer.png"), None, {"isotropic random W (upper bound)":
                       iso.mean(-1)}, f"{lm.name}: Q-K RSA vs the rotated-weights null", list(range(L)))
    dl = display_layer(L)
    Sq, Sk = rsa.cosine_similarity(flat(acts[KINDS[0]])[dl]), rsa.cosine_similarity(flat(acts[KINDS[1]])[dl])
    rplot.qk_scatter_by_category(Sq, Sk, cs.labels, cs.names, artifacts.path("qk_scatter_by_category.png"), None,
                                 f"{lm.name} layer {dl}: rho {rho[dl]:.3f}")
    check(v, tolerance=TOL, site="attn.hook_q/attn.hook_k/attn.hook_qk_in", n_words=len(cs.words))


def isotropic_rho(ctx, cs_hash: str) -> np.ndarray:
    acts = qk_acts(ctx)
    return rsa.random_projection_rho(acts[KINDS[2]], flat(acts[KINDS[0]]).shape[-1], flat(acts[KINDS[1]]).shape[-1],
                                     n_draws=200, seed=ctx.seed)


def beyond(ctx, artifacts, check, which: str) -> None:
    """Claims C and D: the per-layer plots against their null, then the gated verdict."""
    rot, null = rotation_profiles(ctx, fixed_mean=which == D), "mean-fixed rotated" if which == D else "rotated-weights"
    for kind in ("q", "k"):
        key = f"delta_{kind}.category"
        rplot.rsa_by_layer(np.array([r[0][key] for r in rot]), [r[1][key] for r in rot],
                           artifacts.path(f"beyond_{'mean_' if which == D else ''}input_{kind}.png"), None, {},
                           f"{ctx.lm.name}: {kind.upper()} within-minus-across vs the {null} null",
                           list(range(ctx.n_layers)), ylabel="within - across cosine")
    check(step_tolerances(gated(ctx, which)), tolerance=TOL, site="attn.hook_q/attn.hook_k vs attn.hook_qk_in",
          n_words=len(ctx.stimuli("rsa_categories").words))


@pytest.mark.claim(C, family="observational", controls=C_CONTROLS)
def test_qk_category_beyond_input(ctx, artifacts, check):
    beyond(ctx, artifacts, check, C)


@pytest.mark.claim(D, family="observational", controls=D_CONTROLS)
def test_qk_category_beyond_mean_input(ctx, artifacts, check):
    beyond(ctx, artifacts, check, D)


test_qk_category_control_fails = control_tests(
    A, A_CONTROLS, lambda ctx: gated(ctx, A),
    doc="The random-weight copy and each surface grouping of the same words must fail claim A's rule.")
test_qk_rsa_control_fails = control_tests(
    B, B_CONTROLS, lambda ctx: gated(ctx, B),
    doc="In a random-weight copy W_q and W_k are random: its rho must not beat its own rotated weights.")
test_qk_category_beyond_input_control_fails = control_tests(
    C, C_CONTROLS, lambda ctx: gated(ctx, C),
    doc="The random-weight copy and each surface grouping must fail claim C's rule.")
test_qk_category_beyond_mean_input_control_fails = control_tests(
    D, D_CONTROLS, lambda ctx: gated(ctx, D),
    doc="The random-weight copy and each surface grouping must fail claim D's rule.")
