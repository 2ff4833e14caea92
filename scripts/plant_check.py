"""Run a claim's own rule on a planted model and on its unedited twin, and print the outcomes.

    python scripts/plant_check.py additivity [--model tiny-gpt2]
    python scripts/plant_check.py lesion [--model tiny-gpt2] [--layer 2] [--size 0.2] [--null-sets 200]
    python scripts/plant_check.py qk [--model tiny-gpt2] [--size 0.2]
    python scripts/plant_check.py patching [--model tiny-gpt2] [--layer 2] [--size 0.4]
    ... [--layers 13,14]   (lesion, additivity: only these layers' verdicts; default all)

The claim modules are imported from claims/ and called with a :class:`mechclaims.claim.context.Context` built here
(statistics and activation caches off), exactly the functions their tests call:
- additivity: ``test_additivity.layer_verdict(ctx, layer)`` per layer (planted: ``plant_silent_mlp`` at ``--layer``);
- lesion: ``test_lesion.layer_results(ctx, layer)`` per layer, both rules, with its two controls gated (planted:
  ``plant_lesion``; twin: the model itself, or for a random tiny model the gender-channel model ``referent_channel``; confounds: ``plant_lesion(unrelated=size)`` and
  ``plant_lesion_prior``);
- patching: ``test_patching.layer_verdicts(ctx, "ratio")`` per layer (planted: ``plant_patching`` at ``--layer``, and at
  2.5 x ``--size``, where the MLP writes the answer whatever the prompt and the unrelated-source control must pass);
- qk: claims A and C with their controls (``test_rsa.gated``) (planted: ``plant_qk`` at every layer, since the rule
  asks for more than half the layers; confound: ``plant_qk_mean_projection`` at every layer).
Runs longer than ~30 s: ``flock /tmp/mechclaims-heavy.lock nice -n 5 python scripts/plant_check.py ...``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "claims")]

from mechclaims.claim.context import Context  # noqa: E402
from mechclaims.model.load import load_model  # noqa: E402
from mechclaims.model.plant import (plant_lesion, plant_lesion_prior, plant_patching, plant_qk,  # noqa: E402
                                    plant_qk_mean_projection, plant_silent_mlp, referent_channel)


def context(lm, module, tmp: str, null_sets: int = 200, permutations: int = 1000) -> Context:
    return Context.direct(lm, module, tmp, lesion_null_sets=null_sets, permutations=permutations)


def show(tag: str, v, controls: bool = True) -> None:
    line = f"  {tag:<38} {v.outcome:<13} {v.statistic_name}={v.statistic:.4g}"
    if controls and v.controls:
        line += "  controls: " + ", ".join(f"{k}={'PASS' if c.passed else 'fail'}" for k, c in v.controls.items())
    print(line + (f"  ({v.reason})" if v.reason else ""), flush=True)


def layers_of(args, m) -> list[int]:
    return [int(x) for x in args.layers.split(",")] if args.layers else list(range(m.n_layers))


def twin_of(lm):
    """A random tiny model carries no gender: its twin is the gender-channel model; a real model is its own twin."""
    return referent_channel(lm, layer=0) if lm.name.startswith("tiny-") else lm


def additivity(args, tmp: str) -> None:
    import test_additivity as T

    lm = load_model(args.model)
    for m in (lm, plant_silent_mlp(lm, args.layer, 0.0)):
        ctx = context(m, T, tmp)
        print(m.name)
        for layer in layers_of(args, m):
            show(f"layer {layer}", T.layer_verdict(ctx, layer))


def lesion(args, tmp: str) -> None:
    import test_lesion as T

    lm = load_model(args.model)
    twin = twin_of(lm)
    for m in (twin, plant_lesion(twin, args.layer, args.size), plant_lesion(twin, args.layer, args.size,
                                                                             unrelated=args.size),
              plant_lesion_prior(twin, args.layer, args.size)):
        ctx = context(m, T, tmp, args.null_sets)
        print(m.name, round(T.preconditions(ctx)["p"], 4), "(paired precondition p)")
        for layer in layers_of(args, m):
            for rule, v in T.layer_results(ctx, layer).items():
                show(f"layer {layer} {rule}", v)
                print(f"      her effect {v.details.get('her.effect', float('nan')):+.3f} "
                      f"him effect {v.details.get('him.effect', float('nan')):+.3f}")


def patching(args, tmp: str) -> None:
    import test_patching as T

    lm = load_model(args.model)
    twin = twin_of(lm)
    for m in (twin, plant_patching(twin, args.layer, args.size), plant_patching(twin, args.layer, 2.5 * args.size)):
        ctx = context(m, T, tmp)
        print(m.name)
        for layer, v in T.layer_verdicts(ctx, "ratio").items():
            show(f"layer {layer}", v)


def qk(args, tmp: str) -> None:
    import test_rsa as T

    lm = load_model(args.model)
    planted, meanproj = lm, lm
    for layer in range(lm.n_layers):
        size = args.size
        while True:  # a real model's layer may cap what a category component can add: halve down to size / 16
            try:
                planted = plant_qk(planted, layer, size)
                break
            except ValueError as e:
                if size < args.size / 16:
                    raise
                print(f"  layer {layer}: {e}; halving", flush=True)
                size /= 2
        meanproj = plant_qk_mean_projection(meanproj, layer)
    for m in (lm, planted, meanproj):
        ctx = context(m, T, tmp, permutations=args.permutations)
        print(m.name)
        for which in (T.A, T.C):
            show(which, T.gated(ctx, which))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("claim", choices=["additivity", "lesion", "qk", "patching"])
    ap.add_argument("--model", default="tiny-gpt2")
    ap.add_argument("--layer", type=int, default=None)
    ap.add_argument("--size", type=float, default=0.2)
    ap.add_argument("--null-sets", type=int, default=200)
    ap.add_argument("--permutations", type=int, default=1000)
    ap.add_argument("--layers", default="", help="comma-separated layers to decide (lesion, additivity); default all")
    args = ap.parse_args()
    if args.layer is None:
        args.layer = {"additivity": 1, "lesion": 2, "qk": 1, "patching": 2}[args.claim]
    torch.set_num_threads(1)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        {"additivity": additivity, "lesion": lesion, "qk": qk, "patching": patching}[args.claim](args, tmp)
    print(f"[{time.time() - t0:.0f} s]")


if __name__ == "__main__":
    main()
