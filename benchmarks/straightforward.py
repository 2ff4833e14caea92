"""The straightforward way, for the benchmark: one analysis per process, as the original notebooks ran them.

    python benchmarks/straightforward.py {additivity,ged,rsa,lesion,pathlength}

Each run imports torch and transformers, loads SmolLM2 the plain HF way, runs one unbatched forward pass per
prompt (hooks registered by hand, ``output_hidden_states`` where the notebook used it), and computes the analysis's
core numbers at every layer, on the suite's own stimuli. It does none of the suite's extra work: no permutation
nulls, bootstraps, controls, held-out splits beyond the analysis itself, baselines or plots.
"""
from __future__ import annotations

import sys
import time

T0 = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import linalg, stats  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from statsmodels.stats.multitest import fdrcorrection  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from mechclaims.datasets.categories import load_categories  # noqa: E402
from mechclaims.datasets.lesion import load_causal_pairs, split_pairs  # noqa: E402
from mechclaims.datasets.passages import load_passages  # noqa: E402
from mechclaims.datasets.pronouns import load_heldout, load_pairs  # noqa: E402
from mechclaims.model.gguf import gguf_dir  # noqa: E402

FIX = "fixtures/"
torch.set_grad_enabled(False)
d = gguf_dir("smollm2-135m")
tok, model = AutoTokenizer.from_pretrained(d), AutoModelForCausalLM.from_pretrained(d).eval()
layers = model.model.layers
L = len(layers)


def grab(modules, pre=False):
    """Hooks that keep each module's output (or its input) of the last forward pass."""
    store, hs = {}, []
    for i, m in enumerate(modules):
        if pre:
            hs.append(m.register_forward_pre_hook(lambda mod, a, i=i: store.__setitem__(i, a[0][0])))
        else:
            hs.append(m.register_forward_hook(lambda mod, a, o, i=i: store.__setitem__(i, (o[0] if isinstance(o, tuple) else o)[0])))
    return store, hs


def run(text):
    return model(**tok(text, return_tensors="pt"), output_hidden_states=True)


def pos_of(text, word):
    ids, w = tok(text).input_ids, tok(" " + word, add_special_tokens=False).input_ids
    return ids.index(w[0]) if len(w) == 1 and w[0] in ids else None


def additivity():
    attn, h1 = grab([l.self_attn for l in layers])
    mlp, h2 = grab([l.mlp for l in layers])
    worst = np.zeros(L - 1)
    for p in load_passages(FIX + "passages.jsonl")[:4]:
        ids = tok(p.text, return_tensors="pt").input_ids[:, :256]
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
        for l in range(L - 1):
            err = (hs[l + 1][0] - hs[l][0] - attn[l] - mlp[l]).norm(dim=-1) / hs[l + 1][0].norm(dim=-1)
            worst[l] = max(worst[l], float(err.max()))
    return f"max rel err {worst.max():.2e}"


def ged():
    acts, hs = grab([l.mlp.down_proj for l in layers], pre=True)

    def vecs(texts, words):
        out = []
        for t, w in zip(texts, words):
            p = pos_of(t, w)
            if p is not None:
                run(t)
                out.append(np.stack([acts[l][p].numpy() for l in range(L)]))
        return np.stack(out)

    pairs = load_pairs(FIX + "ged_pairs.jsonl")
    held = load_heldout(FIX + "ged_heldout.jsonl", n_per_label=60)
    him, her = vecs(pairs.him, ["him"] * len(pairs)), vecs(pairs.her, ["her"] * len(pairs))
    nat = vecs(held.texts, held.labels)
    lab = np.array([x for x in held.labels])
    ts = []
    for l in range(L):
        pca = PCA(0.99).fit(np.vstack([him[:, l], her[:, l]]))
        S, R = np.cov(pca.transform(him[:, l]).T), np.cov(pca.transform(her[:, l]).T)
        R = 0.99 * R + 0.01 * np.mean(np.linalg.eigvalsh(R)) * np.eye(len(R))
        w = linalg.eigh(S, R)[1][:, -1]
        proj = pca.transform(nat[:, l]) @ w
        ts.append(stats.ttest_ind(proj[lab == "him"], proj[lab == "her"]).statistic)
    return f"held-out |t| median {np.median(np.abs(ts)):.2f}"


def rsa():
    cs = load_categories(FIX + "rsa_categories.json")
    q, hq = grab([l.self_attn.q_proj for l in layers])
    k, hk = grab([l.self_attn.k_proj for l in layers])
    Q, K = [], []
    for t in cs.texts():
        model(**tok(t, return_tensors="pt"))
        Q.append(np.stack([q[l][-1].numpy() for l in range(L)]))
        K.append(np.stack([k[l][-1].numpy() for l in range(L)]))
    Q, K, lab = np.stack(Q, 1), np.stack(K, 1), np.asarray(cs.labels)
    same, iu = lab[:, None] == lab[None, :], np.triu_indices(len(lab), 1)
    out = []
    for l in range(L):
        qn, kn = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (Q[l], K[l]))
        cq, ck = qn @ qn.T, kn @ kn.T  # cosine similarity, as the original
        out.append((cq[same & ~np.eye(len(lab), dtype=bool)].mean() - cq[~same].mean(),
                    stats.spearmanr(cq[iu], ck[iu])[0]))
    return f"within-across Q {np.mean([o[0] for o in out]):.3f}, RSA rho {np.mean([o[1] for o in out]):.3f}"


def lesion():
    pairs = load_causal_pairs(FIX + "lesion_causal.jsonl")
    train, test = split_pairs(pairs, 0.4, 0)
    acts, hs = grab([l.mlp.down_proj for l in layers], pre=True)
    her_id, him_id = (tok(" " + w, add_special_tokens=False).input_ids[0] for w in ("her", "him"))

    def last(texts):
        rows = []
        for t in texts:
            run(t)
            rows.append(np.stack([acts[l][-1].numpy() for l in range(L)]))
        return np.stack(rows)

    a_her, a_him = last([p.her for p in train]), last([p.him for p in train])
    for h in hs:
        h.remove()
    changes = []
    for l in range(L):
        t, p = stats.ttest_rel(a_her[:, l], a_him[:, l])
        rej = fdrcorrection(np.nan_to_num(p, nan=1.0))[0]
        sets = {"her": np.flatnonzero(rej & (t > 0)), "him": np.flatnonzero(rej & (t < 0))}
        for side, sign in (("her", 1), ("him", -1)):
            for pr in test:
                idx = torch.as_tensor(sets[side])

                def zero(mod, a):
                    x = a[0].clone()
                    x[0, -1, idx] = 0
                    return (x,)

                h = layers[l].mlp.down_proj.register_forward_pre_hook(zero)
                try:
                    logits = model(**tok(getattr(pr, side), return_tensors="pt")).logits[0, -1]
                finally:
                    h.remove()
                changes.append(sign * float(logits[her_id] - logits[him_id]))
    return f"{len(changes)} ablated passes"


def pathlength():
    xs, ys = [], []
    for p in load_passages(FIX + "passages.jsonl"):
        out = run(p.text)
        h = torch.stack(out.hidden_states)[:, 0]
        steps = (h[1:] - h[:-1]).norm(dim=-1).sum(0)[:-1]
        ids = tok(p.text, return_tensors="pt").input_ids[0]
        xs.append(steps.numpy())
        ys.append(out.logits[0, :-1].gather(1, ids[1:, None])[:, 0].numpy())
    return f"rho {stats.spearmanr(np.concatenate(xs), np.concatenate(ys))[0]:.3f}"


if __name__ == "__main__":
    name = sys.argv[1]
    res = {"additivity": additivity, "ged": ged, "rsa": rsa, "lesion": lesion, "pathlength": pathlength}[name]()
    print(f"STRAIGHTFORWARD {name} {time.perf_counter() - T0:.1f}s {res}")
