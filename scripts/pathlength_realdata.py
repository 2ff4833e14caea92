"""Path-length claim on a real model, old rule vs new rule (spline position + shift Freedman-Lane).

Computes the claim's per-token arrays with claims/test_pathlength.py's own capture (``_path_data``), then runs
``mechclaims.stats.pathlength.path_length_claim`` (old) and ``mechclaims.stats.pathlength_serial.path_length_rule``
(new) on the claim and its two controls, and the old FL null SD beside the jackknife SE. Writes nothing under
claims/ or baselines/; prints, and dumps the arrays to ``--save`` (an .npz) when asked.

    OMP_NUM_THREADS=2 flock /tmp/mechclaims-heavy.lock nice -n 5 python scripts/pathlength_realdata.py smollm2-135m
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "claims"))


class _MC:
    seed = 0

    def stimuli_path(self, name, default):
        return default


class _Pool:
    def activations(self, lm, tag, parts, fn):
        return fn()


def arrays(model: str, shuffle_words: bool = False) -> dict[str, np.ndarray]:
    from test_pathlength import _path_data  # noqa: E402  (the claim's own capture)

    from mechclaims.models import load_model
    lm = load_model(model)
    return _path_data(lm, _MC(), _Pool(), shuffle_words)


def compare(d: dict, w: dict, n_perm: int, seed: int) -> None:
    from mechclaims.stats.pathlength import path_length_claim
    from mechclaims.stats.pathlength_serial import path_length_rule
    from mechclaims.stats.within_doc import partial_rho

    keep = d["pos"] >= 1
    total = d["steps"].sum(1)
    tid_old = float(partial_rho(total[keep], d["logprob"][keep], np.column_stack([d["pos"], d["target"]])[keep],
                                d["doc"][keep])[0])
    sets = {"claim": (d, "logprob", "logit"), "shuffled_targets": (d, "shuffled_logprob", "shuffled_logit"),
            "word_shuffled_text": (w, "logprob", "logit")}
    for name, (a, lp, lg) in sets.items():
        kw = dict(n_perm=n_perm, seed=seed)
        t = time.perf_counter()
        old = path_length_claim(a["steps"], a[lp], a[lg], a["pos"], a["doc"], **kw)
        t_old = time.perf_counter() - t
        t = time.perf_counter()
        new = path_length_rule(a["steps"], a[lp], a[lg], a["pos"], a["doc"], target_ids=a["target"],
                               entropy=a["entropy"] if name == "claim" else None, **kw)
        t_new = time.perf_counter() - t
        for tag, v, sec in (("old", old, t_old), ("new", new, t_new)):
            print(f"{name:20s} {tag}: rho {v.effect:+.4f} CI [{v.effect_ci[0]:+.4f}, {v.effect_ci[1]:+.4f}] "
                  f"p {v.p:.4g} passed {v.passed} absent {v.absent} FL null sd {v.null['sd']:.4f} "
                  f"JK se {v.details['jackknife_se']:.4f} ({sec:.1f} s)")
        print(f"{'':20s} new details: " + ", ".join(f"{k} {new.details[k]:+.4f}" for k in (
            "partial_rho_linear_position", "partial_rho_ctrl_target_id", "partial_rho_ctrl_target_id_ci_low",
            "partial_rho_ctrl_target_id_ci_high", "lag1_path_residual", "lag1_logprob_residual", "ci90_low",
            "ci90_high") if k in new.details) + (f"; old target-id variant {tid_old:+.4f}" if name == "claim" else ""))
        print(f"{'':20s} new absence: {new.absence}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--perm", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--load", default="", help="an .npz written by --save (skips the model)")
    ap.add_argument("--save", default="")
    a = ap.parse_args()
    if a.load:
        z = np.load(a.load)
        d = {k[2:]: z[k] for k in z.files if k.startswith("d_")}
        w = {k[2:]: z[k] for k in z.files if k.startswith("w_")}
    else:
        t = time.perf_counter()
        d, w = arrays(a.model), arrays(a.model, shuffle_words=True)
        print(f"capture {time.perf_counter() - t:.0f} s")
        if a.save:
            np.savez_compressed(a.save, **{f"d_{k}": v for k, v in d.items()}, **{f"w_{k}": v for k, v in w.items()})
    print(f"{a.model}: {len(d['pos'])} tokens, {len(np.unique(d['doc']))} documents")
    compare(d, w, a.perm, a.seed)


if __name__ == "__main__":
    main()
