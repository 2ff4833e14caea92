"""Measure, on a real model, what the lesion calibration's ``NORM_GAP`` stands for: how much the final norm's scale
(1 / rms of ``ln_final.hook_in`` at the prediction position) differs between the "her" and "him" prompts of the lesion
stimuli, and how much it differs within pairs. Also the paired precondition on the same prompts (clean logit
differences), to set the structured null's prior and task margin.

Run: ``flock /tmp/mechclaims-heavy.lock nice -n 5 python scripts/lesion_norm_gap.py [model]`` (~1 min on CPU).
"""
from __future__ import annotations

import sys

import numpy as np

from mechclaims.forward.capture import capture, encode, single_token_id
from mechclaims.datasets.lesion import CAUSAL_PATH, load_causal_pairs
from mechclaims.model.load import load_model
from mechclaims.stats.lesion_precondition import paired_precondition


def main(name: str) -> None:
    lm = load_model(name)
    pairs = load_causal_pairs(CAUSAL_PATH)
    texts = [p.her for p in pairs] + [p.him for p in pairs]
    ids = encode(lm, texts)
    a = capture(lm, ids, ["ln_final.hook_in"], "last")["ln_final.hook_in"].astype(float)
    inv = 1.0 / np.sqrt((a ** 2).mean(axis=1) + 1e-5)  # RMSNorm (Llama family); LayerNorm would centre first
    n = len(pairs)
    her, him = inv[:n], inv[n:]
    print(f"{name}: {n} pairs; 1/rms her {her.mean():.4f} +- {her.std(ddof=1):.4f}, him {him.mean():.4f} +- "
          f"{him.std(ddof=1):.4f}; him/her - 1 = {him.mean() / her.mean() - 1:+.4f}; paired log-ratio "
          f"{np.mean(np.log(him / her)):+.4f} (SD {np.std(np.log(him / her), ddof=1):.4f})")
    import torch
    u = lm.model.get_output_embeddings().weight.detach()
    th, tm = single_token_id(lm, " her"), single_token_id(lm, " him")
    with torch.no_grad():
        logits = [lm.model(input_ids=torch.tensor([x])).logits[0, -1] for x in ids]
    ld = np.array([float(l[th] - l[tm]) for l in logits])  # her minus him on every prompt
    pre = paired_precondition(ld[:n], -ld[n:])
    print({k: round(v, 4) for k, v in pre.items()})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m")
