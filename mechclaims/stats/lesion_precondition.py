"""The lesion claim's precondition: the model does the task, as one paired test.

Claim: on held-out matched pairs the model's target-minus-foil logit difference is larger on the prompt where the
target is correct. Per pair i, ``c_i = LD_her(her prompt i) + LD_him(him prompt i)`` where ``LD_her = logit(her) -
logit(him)`` and ``LD_him = logit(him) - logit(her)``; c_i > 0 means the pair's her prompt pushes " her" further than its
him prompt does. Test: a one-sided sign test on the pairs (``scipy.stats.binomtest``, zeros dropped).
Falsified by: c_i > 0 on no more pairs than chance.

A prior toward one target is not inability. Per-side accuracy at a 0-logit threshold is: on smollm2-135m the "him"
side was right on 20/48 prompts, yet its mean margins (her +1.35, him +0.06) separate the sides by about 1.41 logits on
top of a ~0.65-logit prior for " her". The prior, the mean of ``logit(her) - logit(him)`` over every held-out prompt
(= mean of (LD_her - LD_him) / 2 over pairs), is reported beside the test, never used to decide.
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def _ci(x: np.ndarray, seed: int, n_resamples: int, confidence: float = 0.95) -> tuple[float, float]:
    if x.size < 3 or np.ptp(x) == 0 or n_resamples <= 0:
        return float("nan"), float("nan")
    r = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="BCa",
                        random_state=np.random.default_rng(seed))
    return float(r.confidence_interval.low), float(r.confidence_interval.high)


def paired_precondition(ld_her_prompts: np.ndarray, ld_him_prompts: np.ndarray, *, alpha: float = 0.05,
                        sides: tuple[str, str] = ("her", "him"), seed: int = 0,
                        n_resamples: int = 2000) -> dict[str, float]:
    """Sign test on ``c_i = ld_her_prompts[i] + ld_him_prompts[i]`` (row i of each from held-out pair i, each its
    own target minus its foil). ``passed`` (1.0/0.0): one-sided p < ``alpha``. Reported: the mean contrast and the prior
    for ``sides[0]`` with 95% BCa bootstrap intervals (``n_resamples`` 0: none, NaN), and each side's accuracy at 0
    logits (not deciding)."""
    a, b = np.asarray(ld_her_prompts, float), np.asarray(ld_him_prompts, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need matched [n_pairs] arrays; got {a.shape} and {b.shape}")
    c = a + b
    pos, neg = int(np.sum(c > 0)), int(np.sum(c < 0))
    n = pos + neg
    p = float(stats.binomtest(pos, n, 0.5, alternative="greater").pvalue) if n else float("nan")
    p_wrong = float(stats.binomtest(pos, n, 0.5, alternative="less").pvalue) if n else float("nan")
    prior = (a - b) / 2.0  # logit(s0) - logit(s1) averaged over the pair's two prompts
    s0, s1 = sides
    lo, hi = _ci(c, seed, n_resamples)
    plo, phi = _ci(prior, seed + 1, n_resamples)
    return {"passed": float(np.isfinite(p) and p < alpha), "p": p, "p_wrong": p_wrong, "n_pairs": float(a.size),
            "n_positive": float(pos), "n_ties": float(a.size - n), "contrast_mean": float(c.mean()),
            "contrast_ci_low": lo, "contrast_ci_high": hi, f"prior_{s0}": float(prior.mean()),
            f"prior_{s0}_ci_low": plo, f"prior_{s0}_ci_high": phi,
            f"{s0}.margin": float(a.mean()), f"{s1}.margin": float(b.mean()),
            f"{s0}.accuracy": float(np.mean(a > 0)), f"{s1}.accuracy": float(np.mean(b > 0))}
