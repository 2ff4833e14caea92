"""Claim 5b: the path-length/confidence association differs across model sizes (smollm2-135m vs gemma3-270m).

A separately named claim beside ``path_length_confidence`` (claims/test_pathlength.py), which it does not change:
that claim tests each model on its own; this one tests the difference between two of them, as the original's
"across model sizes" asks. The test was stated before it was run (issue 21; mechclaims/stats/pathlength_sizes.py):

- delta = rho(gemma3-270m) - rho(smollm2-135m), each the within-document partial Spearman rho(total path length,
  log p(correct next) | position) of ``path_length_confidence``, position 0 excluded, on the same 12 passages. Round
  three (issue 27) changes rho as it changes the single-model claim: ranks within documents, position as a cubic
  B-spline in log position, and the test run twice -- with position alone and with the target token's id (ranked
  within documents) as a further covariate (``mechclaims.stats.pathlength_decision.size_difference_decision``).
- Pass rule ("the models differ"): under both adjustments the 95% paired document-jackknife t-interval of delta
  excludes 0 (t on G - 1 df), with one sign. Refuted ("no difference worth the name"): both 90% intervals inside
  +-0.1 (TOST). Otherwise inconclusive. A paired document bootstrap CI is reported beside it, never decides. The
  jackknife does not permute tokens, so serial dependence within documents cannot make it liberal; its size under
  AR(1) phi up to 0.9 with a shared exp(-pos/8) trend is in ``python -m mechclaims.calibrate --only pathlength``.
- No controls of its own: each model's association is gated on its controls in ``path_length_confidence``; a
  difference between two confounded associations would be a difference in confounds, so read it with their outcomes
  (recorded in ``details`` as ``outcome_<model>``).
Falsified (as a difference) by a 95% interval that contains 0. Needs both models in the session
(``--model smollm2-135m --model gemma3-270m``); otherwise skipped with that command.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mechclaims.claim import Design
from mechclaims.claim.context import Context
from mechclaims.errors import MechClaimsError
from mechclaims.stats.pathlength_decision import model_paths, size_difference_decision
from mechclaims.verdict.expected import load_expected

sys.path.insert(0, str(Path(__file__).parent))
import test_pathlength as single  # noqa: E402  (the one-model claim: its capture, stimuli and verdict)

EXPECTED_OUTCOMES = load_expected(__file__)
DESIGNS = {"path_length_differs_across_sizes": Design(  # pre-registration (mechclaims.verdict.design)
    rule="delta = rho(larger) - rho(smaller) of path_length_confidence's within-document partial rho; under both "
         "adjustments (position spline; + target id ranked within documents) the 95% paired document-jackknife "
         "t-interval excludes 0 with one sign; refuted: both 90% intervals inside +-0.1",
    alpha=0.05, sesoi=0.1, thresholds={**single.DESIGNS["path_length_confidence"].thresholds},
    stated="2026-12-01",
    post_hoc="round three (2026-12-07): rho's definition follows path_length_confidence's restated rule, after the "
             "first two-model run on the same passages")}
PAIRS = [("smollm2-135m", "gemma3-270m")]  # (smaller, larger)


@pytest.mark.claim("path_length_differs_across_sizes", family="observational", kinds=("causal",))
@pytest.mark.parametrize("pair", PAIRS, ids=[f"{a}-vs-{b}" for a, b in PAIRS])
def test_path_length_differs_across_sizes(pair, mc, model_pool, check):
    missing = [m for m in pair if m not in mc.models]
    if missing:
        pytest.skip(f"compares {pair[0]} with {pair[1]}; this session lacks {', '.join(missing)}. Run it with "
                    f"`--model {pair[0]} --model {pair[1]}` (make claims MODELS=\"{' '.join(pair)}\").")
    paths, outcomes = [], {}
    for name in pair:
        try:
            ctx = Context.for_model(name, mc, model_pool, single)
        except MechClaimsError as e:  # a model that cannot load: say which, and why (as the lm fixture does)
            pytest.fail(f"{name}: {e}", pytrace=False)
        d = single.path_data(ctx)
        paths.append(model_paths(name, d["steps"], d["logprob"], d["pos"], d["doc"], d["target"]))
        outcomes[name] = single.claim_verdict(ctx).outcome
    v = size_difference_decision(*paths, n_boot=mc.permutations, seed=mc.seed)
    for name, o in outcomes.items():
        v.note(f"supported_{name}", float(o == "supported"))  # numbers only: the outcome words go in the reason
    v.reason += "; per model: " + ", ".join(f"{n} {o}" for n, o in outcomes.items())
    check(v, tolerance=single.TOL, lm=ctx.lm, models=list(pair))
