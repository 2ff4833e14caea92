"""Deciding one lesion side on held-out pairs: does ablating the selected set remove label-specific target information?

Claim, per side: mean-ablating the set that the rule selected for this side (on the training pairs) lowers the target-
minus-foil logit difference on the side's held-out prompts, and lowers the pair's task contrast, ``c_i = change of
LD_own(own prompt i) + change of LD_other(other prompt i)`` (LD = each prompt's own target minus its foil; the same set is
ablated on both prompts of held-out pair i). Falsified by: c significantly above zero (the set adds label-specific
information when removed), or its mean inside +-sesoi (TOST) without significance.

Null and why. Under H0 (the set's neurons carry no label information: a pair's two held-out prompts are exchangeable at
those neurons), swapping a held-out pair's labels flips the sign of c_i: with LD_other = -LD_own, ablation moves the
pair's two prompts by ``(m - a_own) . w`` and ``-(m - a_other) . w``, whose sum is antisymmetric in (a_own, a_other). So c
is symmetric about 0 and a sign-flip test over held-out pairs is exact. The set was selected on training pairs that share
no referent with the held-out ones, so no selection enters the null: no random sets, no reselection.

Why not the training-label permute-then-select null (:func:`mechclaims.stats.lesion_null.selection_null`): it is valid
but has no power for rule ``contribution`` when the mechanism is strong. A her-neuron that writes " her" strongly still
ranks in the top k when half the training pairs' labels are swapped, so every null set contains the planted neurons and
the observed effect ties with the null (measured in :mod:`mechclaims.calibrate.lesion_data`'s stand-in: 10 planted
neurons, -2.50 logits; all 10 in every one of 200 swapped selections, 80% of them the observed set exactly; power 0/20
at 1 and 3 logits, every layer "refuted", against 7/20 at 0.3 logits). A test whose power falls to 0 as the effect grows,
and that then reports absence, is not a test of the claim.

p-value, one method: Besag-Clifford sequential Monte Carlo over random sign flips (``stats.common.sequential_mc_p``),
stopping once both tails hold ``h`` flips at least as extreme, else at ``n_max`` flips (default 9,999: the smallest p,
1e-4, is 1/17 of 0.05/30, so the floor never decides). No normal tail, no switch. Flips cost no forward pass.
Outcomes: the table in :mod:`mechclaims.stats.lesion_null` (``side_result``), combined by its ``layer_decision``.
"""
from __future__ import annotations

import numpy as np

from .common import sequential_mc_p
from .equivalence import tost_t
from .lesion_null import SideResult

N_FLIPS = 9_999


def flip_null(c: np.ndarray, *, n_max: int = N_FLIPS, seed: int = 0, h: int = 10, chunk: int = 1000) -> np.ndarray:
    """Means of ``s * c`` for random signs s, in draw order, until both tails of ``mean(c)`` hold ``h`` draws at least
    as extreme or ``n_max`` draws (one seeded generator: the first draws do not depend on ``n_max``)."""
    c = np.asarray(c, float)
    obs, rng, out = float(c.mean()), np.random.default_rng(seed), []
    made = 0
    while made < n_max:  # a first small chunk: most null values stop within ~40 flips
        s = rng.integers(0, 2, size=(min(chunk if made else 200, n_max - made), c.size)) * 2.0 - 1.0
        out.append(s @ c / c.size)
        made += len(s)
        m = np.concatenate(out)
        if min(int(np.sum(m <= obs)), int(np.sum(m >= obs))) >= h:
            break
    return np.concatenate(out) if out else np.zeros(0)


def pair_flip_side(name: str, own: np.ndarray, other: np.ndarray, *, alpha: float, sesoi: float, h: int = 10,
                   n_max: int = N_FLIPS, seed: int = 0, n_selected: int | None = None,
                   precondition: bool = True) -> SideResult:
    """One side's outcome. ``own[i]``: the change of held-out pair i's own-side prompt's LD when the side's set is
    mean-ablated; ``other[i]``: the change of the other prompt's LD (its own target minus foil) under the same ablation.

    ``effect`` = mean(own) (the claim's per-side effect); ``excess`` = mean(c) / 2, the label-specific part per prompt
    (equal to ``effect`` for a set that lowers one side and raises the other's foil by the same amount), tested against
    sign flips (``p``: lowers, ``p_opposite``) and by TOST inside +-``sesoi`` (t over pairs, at ``alpha``). Significant
    in the claimed direction: p <= alpha and mean(own) < 0."""
    own, other = np.asarray(own, float), np.asarray(other, float)
    if own.shape != other.shape or own.ndim != 1:
        raise ValueError(f"own and other must be matched [n_pairs] arrays; got {own.shape} and {other.shape}")
    c = own + other
    n = c.size
    n_selected = n if n_selected is None else int(n_selected)
    why = [w for w, bad in (("precondition failed", not precondition), ("nothing selected", n_selected == 0),
                            (f"{n} held-out pairs", n < 2)) if bad]
    null = flip_null(c, n_max=n_max, seed=seed, h=h) if n and not why else np.zeros(0)
    obs = float(c.mean()) if n else float("nan")
    p = sequential_mc_p(obs, null, h, "less")[0] if null.size else float("nan")
    po = sequential_mc_p(obs, null, h, "greater")[0] if null.size else float("nan")
    if n > 1 and np.ptp(c) > 0:
        se = float(c.std(ddof=1) / (2.0 * np.sqrt(n)))
        eq, p_tost = tost_t(obs / 2.0, se, n - 1, sesoi, alpha)
    else:
        se, eq, p_tost = float("nan"), False, float("nan")
    if null.size and min(int(np.sum(null <= obs)), int(np.sum(null >= obs))) < h and 2.0 / (null.size + 1) > alpha:
        why.append(f"{null.size} sign flips: the smallest p, 1/{null.size + 1}, is not below {alpha:.3g} / 2")
    testable = not why
    eff = float(own.mean()) if n else float("nan")
    sig = testable and eff < 0 and p <= alpha
    opp = testable and po <= alpha
    eq = testable and bool(eq)
    outcome = ("inconclusive" if not testable else "negligible" if sig and eq else "supported" if sig
               else "refuted" if opp or eq else "inconclusive")
    return SideResult(name, outcome, testable, eff, float(p), float(po), obs / 2.0 if n else float("nan"), se,
                      float(p_tost), eq, sig, opp, int(null.size), n_selected, n, 0.0,
                      float(null.std(ddof=1)) if null.size > 1 else float("nan"), "; ".join(why))
