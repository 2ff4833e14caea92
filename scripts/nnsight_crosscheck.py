"""Cross-check mechclaims' residual patching against nnsight 0.8 on the same model and pairs.

For the first ``--pairs`` pairs of ``fixtures/patching_pairs.jsonl`` and every layer l, the clean run's
``hook_resid_pre[l]`` (the input of decoder layer l) is copied into the corrupt run, once at the name position(s)
and once at the last token, and the logit difference logit(target) - logit(foil) at the last token is read. The
numbers come once from ``mechclaims.forward.patching_runs.residual_sweep`` (batched, with its block-skip and last-token
shortcuts) and once from a plain nnsight trace per (pair, layer, position), written the way an nnsight user would.
They must agree to float tolerance: ``|a - b| <= atol + rtol * |b|``.

nnsight is a test dependency only (``pip install -e ".[crosscheck]"``, or ``pip install --no-deps nnsight==0.8.1
greenlet httpx httpcore websocket-client zstandard`` beside the CPU torch). Run:

    python scripts/nnsight_crosscheck.py [--model smollm2-135m] [--pairs 6]

Exit status 0 when every number agrees, 1 otherwise.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def nnsight_sweep(lm, tp, positions, layers) -> np.ndarray:
    """``[n, n_layers]`` logit differences, patched with nnsight (one trace per pair, layer and position set)."""
    import nnsight
    import torch
    from nnsight import TransformersModel

    model = TransformersModel(lm.model, tokenizer=lm.tokenizer)
    out = np.zeros((len(tp.pairs), len(layers)))
    for i in range(len(tp.pairs)):
        clean = torch.tensor([tp.clean[i]])
        corrupt = torch.tensor([tp.corrupt[i]])
        pos = torch.as_tensor(positions[i])
        with model.trace(clean):
            saved = nnsight.save([])  # a trace body's own names do not escape it: save the container
            for l in layers:
                saved.append(model.model.layers[l].input)
        for j, l in enumerate(layers):
            with model.trace(corrupt):
                model.model.layers[l].input[:, pos, :] = saved[j][:, pos, :]
                logits = model.lm_head.output.save()
            out[i, j] = float(logits[0, -1, tp.target[i]] - logits[0, -1, tp.foil[i]])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--atol", type=float, default=1e-3)
    args = ap.parse_args(argv)

    import nnsight

    from mechclaims.forward import patching_runs as R
    from mechclaims.datasets.patching import PAIRS_PATH, load_pairs, tokenize_pairs
    from mechclaims.model.load import load_model

    lm = load_model(args.model)
    if lm.sitemap.family != "llama":
        raise SystemExit(f"this cross-check addresses decoder layers as model.model.layers[l] (Llama family); "
                         f"{args.model} is {lm.sitemap.family}")
    tp = tokenize_pairs(lm, load_pairs(PAIRS_PATH)[:args.pairs], PAIRS_PATH)
    layers = list(range(lm.n_layers))
    where = {"name": tp.swap, "last": [np.array([n - 1]) for n in tp.length]}
    worst = 0.0
    print(f"nnsight {nnsight.__version__}; {args.model}; {len(tp.pairs)} pairs x {len(layers)} layers")
    for name, pos in where.items():
        t0 = time.perf_counter()
        ours = R.residual_sweep(lm, tp.corrupt, tp.clean, pos, tp.target, tp.foil, layers)
        t1 = time.perf_counter()
        theirs = nnsight_sweep(lm, tp, pos, layers)
        t2 = time.perf_counter()
        diff = np.abs(ours - theirs)
        excess = float(np.max(diff - (args.atol + args.rtol * np.abs(theirs))))
        worst = max(worst, excess)
        print(f"{name:>4} position: max |mechclaims - nnsight| = {diff.max():.2e} logits (LD range "
              f"{theirs.min():.2f}..{theirs.max():.2f}); mechclaims {t1 - t0:.1f} s, nnsight {t2 - t1:.1f} s")
    ok = worst <= 0
    print("AGREE" if ok else f"DISAGREE: exceeds atol {args.atol} + rtol {args.rtol} by {worst:.3g}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
