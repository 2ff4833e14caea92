"""What a plant reads before it writes: MLP inputs at chosen positions, fitted directions, and the stimuli's tokens.

Every read runs the model through the forward engine's batching (length-sorted, right-padded, no LM head), so a plant
is fitted on exactly the tensors the claims capture. Fitting data is the claims' *training* side where a claim has
one (the lesion split by name, the GED windows' fitting half), so a plant's held-out behaviour is a measurement.
"""
from __future__ import annotations

import difflib
from typing import Sequence

import numpy as np
import torch

from mechclaims.datasets.lesion import load_causal_pairs
from mechclaims.datasets.patching import load_pairs as load_patching_pairs
from mechclaims.forward.capture import capture, encode, single_token_id
from mechclaims.forward.engine import batches, run_batch
from mechclaims.model.plant_core import mlp_parts
from mechclaims.model.registry import LoadedModel

# Gendered context words for the GED windows' channel (never the pronoun pair itself, which the claims render).
FEMALE_WORDS = ("she", "She", "hers", "herself", "woman", "women", "girl", "girls", "mother", "wife", "sister",
                "daughter", "queen", "lady", "Mrs", "Miss", "Mary", "Jane", "Sally", "Alice", "Ann")
MALE_WORDS = ("he", "He", "his", "His", "himself", "man", "men", "boy", "boys", "father", "husband", "brother", "son",
              "king", "gentleman", "Mr", "John", "Jack", "Tom", "Bill", "George", "Fred")


def positions_of(ids: Sequence[Sequence[int]], positions: str | Sequence[int]) -> np.ndarray:
    if isinstance(positions, str):
        if positions != "last":
            raise ValueError("positions: 'last' or one index per sequence")
        return np.array([len(x) - 1 for x in ids])
    return np.asarray(positions, int)


def mlp_input(lm: LoadedModel, ids: Sequence[Sequence[int]], layer: int, positions: str | Sequence[int] = "last",
              batch_size: int = 32) -> np.ndarray:
    """``[n, d_model]`` float64: the input of the MLP at ``layer`` (after its norm: what ``mlp.hook_pre``'s projection
    reads) at one position per sequence."""
    pos = positions_of(ids, positions)
    fc = mlp_parts(lm, layer).fc
    out = np.zeros((len(ids), fc.weight.shape[0] if type(fc).__name__ == "Conv1D" else fc.weight.shape[1]))
    got: list[torch.Tensor] = []
    handle = fc.register_forward_pre_hook(lambda mod, args: got.append(args[0].detach()))
    try:
        for rows in batches([len(x) for x in ids], batch_size):
            got.clear()
            run_batch(lm, [list(ids[r])[:pos[r] + 1] for r in rows] if lm.kind == "causal" else
                      [ids[r] for r in rows], base_only=True)
            x = got[0]
            b = torch.arange(len(rows))
            out[rows] = x[b, torch.as_tensor(pos[rows])].double().cpu().numpy()
    finally:
        handle.remove()
    return out


def norm_scale(lm: LoadedModel, ids: Sequence[Sequence[int]], positions: str | Sequence[int] = "last") -> np.ndarray:
    """``[n]``: 1 / the final norm's scale at one position per sequence (the direct-logit linearisation)."""
    pos = positions_of(ids, positions)
    a = capture(lm, [list(x)[:p + 1] for x, p in zip(ids, pos)], ["ln_final.hook_in"], "last", show=False)
    return a.norm_scale(lm).astype(np.float64)


def centred_contrast(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The mean difference ``mean(a) - mean(b)`` made orthogonal to the midpoint of the two means: projections of the
    two class means onto it are then ``+c`` and ``-c``, so a unit without a bias reads it with its threshold at 0."""
    d, mid = a.mean(0) - b.mean(0), (a.mean(0) + b.mean(0)) / 2
    m = mid / max(np.linalg.norm(mid), 1e-30)
    return d - (d @ m) * m


def separation(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d of two 1-d samples (pooled SD)."""
    s = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return float((a.mean() - b.mean()) / s) if s > 0 else float("inf")


def differing_tokens(lm: LoadedModel, a_texts: Sequence[str], b_texts: Sequence[str]
                     ) -> tuple[list[int], list[int]]:
    """Token ids in the spans where matched texts differ (difflib over the token lists, so a name of two tokens
    against a name of one counts too), per side, minus any id found on both sides."""
    fa: set[int] = set()
    fb: set[int] = set()
    for x, y in zip(encode(lm, list(a_texts)), encode(lm, list(b_texts))):
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=x, b=y, autojunk=False).get_opcodes():
            if op != "equal":
                fa.update(x[i1:i2])
                fb.update(y[j1:j2])
    return sorted(fa - fb), sorted(fb - fa)


def referent_tokens(lm: LoadedModel, exclude: Sequence[str] = (" her", " him")) -> tuple[list[int], list[int]]:
    """(female, male) token ids of the referents' names in the lesion and patching stimuli (the tokens where a pair's
    prompts differ), minus the pronoun targets."""
    les = load_causal_pairs()
    pat = load_patching_pairs()
    f1, m1 = differing_tokens(lm, [p.her for p in les], [p.him for p in les])
    fem_first = [p.target == " her" for p in pat]
    f2, m2 = differing_tokens(lm, [p.clean if w else p.corrupt for p, w in zip(pat, fem_first)],
                              [p.corrupt if w else p.clean for p, w in zip(pat, fem_first)])
    drop = {single_token_id(lm, w) for w in exclude}
    return sorted((set(f1) | set(f2)) - drop), sorted((set(m1) | set(m2)) - drop)


def lexicon_tokens(lm: LoadedModel) -> tuple[list[int], list[int]]:
    """(female, male) single-token ids of the gendered context words, with and without a leading space."""
    def ids(words: Sequence[str]) -> set[int]:
        out = set()
        for w in words:
            for s in (w, " " + w):
                t = lm.tokenizer(s, add_special_tokens=False)["input_ids"]
                if len(t) == 1:
                    out.add(t[0])
        return out
    f, m = ids(FEMALE_WORDS), ids(MALE_WORDS)
    return sorted(f - m), sorted(m - f)


def last_logit_diff(lm: LoadedModel, ids: Sequence[Sequence[int]], target: int, foil: int) -> np.ndarray:
    """``[n]``: logit(target) - logit(foil) at each sequence's last token (from the final norm's output, so the LM
    head never runs over the vocabulary)."""
    out = lm.model.get_output_embeddings()
    u = out.weight.detach().double().cpu().numpy()
    b = out.bias.detach().double().cpu().numpy() if getattr(out, "bias", None) is not None else np.zeros(len(u))
    x = capture(lm, [list(i) for i in ids], ["ln_final.hook_normalized"], "last", show=False)
    return x["ln_final.hook_normalized"].astype(np.float64) @ (u[target] - u[foil]) + (b[target] - b[foil])
