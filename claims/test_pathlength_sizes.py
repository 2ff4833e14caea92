"""Claim 5b: the path-length/confidence association differs across model sizes (smollm2-135m vs gemma3-270m).

A separately named claim beside ``path_length_confidence`` (claims/test_pathlength.py), which it does not change:
that claim tests each model on its own; this one tests the difference between two of them, as the original's
"across model sizes" asks. The test was stated before it was run (issue 21; mechclaims/stats/pathlength_sizes.py):

- delta = rho(gemma3-270m) - rho(smollm2-135m), each the within-document partial Spearman rho(total path length,
  log p(correct next) | position) of ``path_length_confidence``, position 0 excluded, on the same 12 passages.
- Pass rule ("the models differ"): the 95% paired document-jackknife t-interval of delta excludes 0 (p < 0.05,
  two-sided, t on G - 1 df). Refuted ("no difference worth the name"): the 90% interval inside +-0.1 (TOST).
  Otherwise inconclusive. A paired document bootstrap CI is reported beside it, never decides.
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

from mechclaims.claim.context import Context
from mechclaims.errors import MechClaimsError
from mechclaims.stats.pathlength_sizes import ModelPath, size_difference
from mechclaims.verdict.expected import load_expected

sys.path.insert(0, str(Path(__file__).parent))
import test_pathlength as single  # noqa: E402  (the one-model claim: its capture, stimuli and verdict)

EXPECTED_OUTCOMES = load_expected(__file__)
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
        paths.append(ModelPath.from_arrays(name, d["steps"], d["logprob"], d["pos"], d["doc"]))
        outcomes[name] = single.claim_verdict(ctx).outcome
    v = size_difference(*paths, n_boot=mc.permutations, seed=mc.seed)
    for name, o in outcomes.items():
        v.note(f"supported_{name}", float(o == "supported"))  # numbers only: the outcome words go in the reason
    v.reason += "; per model: " + ", ".join(f"{n} {o}" for n, o in outcomes.items())
    check(v, tolerance=single.TOL, lm=ctx.lm, models=list(pair))
