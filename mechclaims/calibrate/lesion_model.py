"""The whole lesion decision on a real model: the claim's selection, its pair-mean ablations
(``mechclaims.forward.ablate.ablate_sets``, which ``claims/test_lesion.py`` calls) and the held-out pair sign-flip test,
under a null that holds by construction.

Claim: on label-free prompts each side's test rejects at most at alpha. Label-free by randomisation: the lesion
stimuli's matched pairs are used, but in every run a fair coin decides which prompt of each pair plays "her" (the
other plays "him"), so no activation can depend on the label; the split into training and held-out pairs is redrawn
too. Everything else is the claim's: the rules (``stats.lesion_select`` over ``stats.lesion``), the final-norm scale
and logit direction (as ``claims/test_lesion.py`` computes them), ``ablate_sets(fill="pair")`` on the held-out pairs
(each ablated neuron set to its pair's mean; before 2026-12-07 this ran training-mean ablation, which the claim
does not decide with). The model, its captures and the Runner are built once; a run costs one ablation pass of ~4 x 48 one-token
rows per rule. This is the plumbing check of issue 28 (the decision part runs at full count on arrays in
:mod:`mechclaims.calibrate.lesion`): a global null, both sides label-free, at alpha 0.05.
Falsified by: a per-side rate whose Clopper-Pearson 95% upper bound exceeds 1.5 x 0.05.

Run: ``flock /tmp/mechclaims-heavy.lock nice -n 5 python -m mechclaims.calibrate.lesion_model [n_runs] [model]``.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from mechclaims.forward.ablate import Runner, ablate_sets
from mechclaims.forward.capture import capture, encode, single_token_id
from mechclaims.datasets.lesion import CAUSAL_PATH, load_causal_pairs
from mechclaims.model.load import load_model
from mechclaims.model.sites import base_of, site
from mechclaims.stats import lesion as L
from mechclaims.stats.lesion_pairflip import pair_flip_side
from mechclaims.stats.lesion_select import ContrastSelector, ContributionSelector
from mechclaims.model.weights import w_out
from .bound import Size

ALPHA, SESOI, TEST_FRACTION = 0.05, 0.1, 0.4


def setup(name: str = "tiny-gpt2", layer: int | None = None) -> dict:
    """Load the model, capture every prompt once, build one Runner over all prompts (reading her - him)."""
    lm = load_model(name)
    layer = lm.n_layers // 2 if layer is None else layer
    pairs = load_causal_pairs(CAUSAL_PATH)
    ids = encode(lm, [p.her for p in pairs] + [p.him for p in pairs])
    s = site("mlp.hook_post", layer)
    a = capture(lm, ids, [s, "ln_final.hook_in"], "last")
    norm = base_of(lm.model).get_submodule(lm.sitemap.final_norm)
    x = a["ln_final.hook_in"].astype(float)
    layer_norm = isinstance(norm, torch.nn.LayerNorm)
    spread = x.var(axis=1) if layer_norm else (x ** 2).mean(axis=1)
    inv = 1.0 / np.sqrt(spread + getattr(norm, "eps", getattr(norm, "variance_epsilon", 1e-5)))
    u = lm.model.get_output_embeddings().weight.detach().float().cpu().numpy()
    d = L.logit_direction(u[single_token_id(lm, " her")], u[single_token_id(lm, " him")],
                          norm.weight.detach().float().cpu().numpy(), center=layer_norm)
    runner = Runner(lm, ids, [len(x) - 1 for x in ids], np.ones(len(ids)))
    return {"lm": lm, "layer": layer, "n": len(pairs), "acts": a[s].astype(float), "inv": inv, "d": d,
            "w": w_out(lm, layer), "runner": runner}


def one_run(ctx: dict, rule: str, i: int, seed: int = 0, alpha: float = ALPHA) -> dict:
    """One label-free run: random labels within pairs, random split, the rule, real ablations, the pair-flip test."""
    rng = np.random.default_rng((seed, ("contrast", "contribution").index(rule), i))
    n = ctx["n"]
    swap = rng.random(n) < 0.5
    her_row = np.where(swap, np.arange(n) + n, np.arange(n))  # the prompt that plays "her" in pair j
    him_row = np.where(swap, np.arange(n), np.arange(n) + n)
    perm = rng.permutation(n)
    n_test = int(round(TEST_FRACTION * n))
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    a, inv = ctx["acts"], ctx["inv"]
    her, him = a[her_row[train]], a[him_row[train]]
    if rule == "contrast":
        sel = ContrastSelector(her, him)(None)
    else:
        sel = ContributionSelector(L.direct_contributions(her, ctx["w"], ctx["d"], inv[her_row[train]]),
                                   L.direct_contributions(him, ctx["w"], -ctx["d"], inv[him_row[train]]))(None)
    out = {"testable": {s: bool(len(v)) for s, v in sel.items()}}
    live = {s: v for s, v in sel.items() if len(v)}
    if not live:
        return out
    rows = np.concatenate([her_row[test], him_row[test]])  # held-out pair i: rows i and n_test + i
    got = ablate_sets(ctx["runner"], ctx["layer"], a[rows], {s: v for s, v in live.items()}, "pair", rows=rows)
    sign = {"her": 1.0, "him": -1.0}  # the Runner reads her - him; a "him" prompt's own target is him - her
    own_rows = {"her": slice(0, n_test), "him": slice(n_test, 2 * n_test)}
    for s, v in live.items():
        o = "him" if s == "her" else "her"
        own = sign[s] * got[s][own_rows[s]]
        other = sign[o] * got[s][own_rows[o]]
        r = pair_flip_side(s, own, other, alpha=alpha, sesoi=SESOI, seed=int(rng.integers(2 ** 63)),
                           n_selected=len(v))
        out[s] = {"significant": r.significant, "opposite": r.opposite, "p": r.p, "outcome": r.outcome}
    return out


def main(argv: list[str] | None = None) -> dict:
    """``[n_testable] [model] [seed] [rules]``: runs per rule until every side was testable ``n_testable`` times (rule ``contrast``
    selects something on ~2.5% of label-free runs per side, so it stops at ``n_testable`` // 3 or 30,000 runs)."""
    argv = sys.argv[1:] if argv is None else argv
    target = int(argv[0]) if argv else 1500
    name = argv[1] if len(argv) > 1 else "tiny-gpt2"
    seed = int(argv[2]) if len(argv) > 2 else 0
    rules = tuple(argv[3].split(",")) if len(argv) > 3 else ("contribution", "contrast")
    t0 = time.time()
    ctx = setup(name)
    t_setup = time.time() - t0
    res, rows = {}, []
    plan = {"contribution": (target, 3 * target), "contrast": (max(1, target // 3), 30_000)}
    for rule in rules:
        want, cap = plan[rule]
        t1, runs = time.time(), []
        while len(runs) < cap and min(sum(s in r for r in runs) for s in ("her", "him")) < want:
            runs.append(one_run(ctx, rule, len(runs), seed))
        res[rule] = {"seconds": round(time.time() - t1, 1), "runs": len(runs)}
        for s in ("her", "him"):
            t = [r[s] for r in runs if s in r]
            for what in ("significant", "opposite"):
                size = Size(f"{name}.L{ctx['layer']}.{rule}.{s}.{what} (testable {len(t)} of {len(runs)} runs)",
                            sum(x[what] for x in t), len(t), ALPHA, testable=len(t))
                rows.append(size.row() | {"explain": size.explain()})
                print(size.explain(), flush=True)
    out = {"model": name, "layer": ctx["layer"], "seed": seed, "setup_seconds": round(t_setup, 1), "rules": res, "sizes": rows,
           "skip_note": ctx["runner"].skip_note, "seconds_total": round(time.time() - t0, 1)}
    print(json.dumps(out, indent=1, default=float))
    return out


if __name__ == "__main__":
    main()
