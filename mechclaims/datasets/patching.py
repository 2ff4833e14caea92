"""Stimuli for the activation-patching claims: clean/corrupt prompt pairs, validated at load and per model.

JSON Lines (``#`` comments allowed), one pair per line: ``id``, ``clean``, ``corrupt``, ``target``, ``foil``, and
an optional ``group``. The clean prompt's correct next token is ``target``; the corrupt prompt's is ``foil``. The
metric is the logit difference ``logit(target) - logit(foil)`` at the last token. ``group`` (default: the id) is the
unit the train/held-out split keeps together: the bundled file groups by name pair, so held-out prompts never share
a name with the prompts that chose anything. See ``fixtures/README_patching.md``.

Per model (:func:`tokenize_pairs`): clean and corrupt must have the same number of tokens (patching copies
activations position by position), must differ in at least one token (the "swap" positions: the name), and
``target``/``foil`` must be single tokens. A pair that breaks a rule fails with the file, the record and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mechclaims.errors import StimuliError
from mechclaims.model.tokens import encode, single_token_id
from mechclaims.datasets.io import bundled_fixtures
from mechclaims.datasets.io import read_jsonl_numbered, stimuli_hash

FIXTURES = bundled_fixtures()
PAIRS_PATH = FIXTURES / "patching_pairs.jsonl"
FIELDS = ("id", "clean", "corrupt", "target", "foil")
WHAT = "patching pairs file"


@dataclass(frozen=True)
class PatchPair:
    id: str
    clean: str
    corrupt: str
    target: str
    foil: str
    group: str
    line: int = 0


@dataclass
class TokenizedPairs:
    """Pairs as token ids for one model. Row i: ``clean[i]``/``corrupt[i]`` (equal length), ``swap[i]`` (positions
    where they differ), ``target[i]``/``foil[i]`` (token ids), ``length[i]``."""

    pairs: list[PatchPair]
    clean: list[list[int]]
    corrupt: list[list[int]]
    swap: list[np.ndarray]
    target: np.ndarray
    foil: np.ndarray

    @property
    def length(self) -> np.ndarray:
        return np.array([len(x) for x in self.clean])

    def subset(self, idx: Sequence[int]) -> "TokenizedPairs":
        idx = list(idx)
        return TokenizedPairs([self.pairs[i] for i in idx], [self.clean[i] for i in idx],
                              [self.corrupt[i] for i in idx], [self.swap[i] for i in idx], self.target[idx],
                              self.foil[idx])


def load_pairs(path: str | Path = PAIRS_PATH, min_pairs: int = 10) -> list[PatchPair]:
    """Read and validate the pairs file (fields, unique ids and texts, clean != corrupt, target != foil)."""
    out: list[PatchPair] = []
    seen: dict[str, int] = {}
    for line, r in read_jsonl_numbered(path, FIELDS, WHAT):
        where = f"{WHAT} {path}, line {line} (id {r['id']!r})"
        for k in FIELDS[1:]:
            if not isinstance(r[k], str):
                raise StimuliError(f"{where}: field {k!r} must be a string.")
        if str(r["id"]) in seen:
            raise StimuliError(f"{where}: the id is also used on line {seen[str(r['id'])]}; ids must be unique.")
        seen[str(r["id"])] = line
        if r["clean"] == r["corrupt"]:
            raise StimuliError(f"{where}: clean and corrupt are the same text; the corrupt prompt must differ "
                               f"(e.g. the name swapped).")
        if r["target"] == r["foil"]:
            raise StimuliError(f"{where}: target and foil are both {r['target']!r}; the metric is "
                               f"logit(target) - logit(foil), so they must differ.")
        for k in ("clean", "corrupt"):
            if r[k] != r[k].rstrip():
                raise StimuliError(f"{where}: the {k} prompt ends in whitespace; end it right before the next "
                                   f"token (BPE spells it with its leading space, e.g. target ' her').")
        out.append(PatchPair(str(r["id"]), r["clean"], r["corrupt"], r["target"], r["foil"],
                             str(r.get("group") or r["id"]), line))
    if len(out) < min_pairs:
        raise StimuliError(f"{WHAT} {path} has {len(out)} pairs; at least {min_pairs} are needed to choose on one "
                           f"split and decide on another.")
    return out


def tokenize_pairs(lm: Any, pairs: Sequence[PatchPair], path: str | Path = "") -> TokenizedPairs:
    """Token ids per pair for ``lm``, with the per-model rules (equal length, a swap, one-token target/foil)."""
    clean, corrupt = encode(lm, [p.clean for p in pairs]), encode(lm, [p.corrupt for p in pairs])
    swap, tgt, foil = [], [], []
    for p, a, b in zip(pairs, clean, corrupt):
        where = f"{WHAT} {path}, line {p.line} (id {p.id!r})"
        if len(a) != len(b):
            raise StimuliError(f"{where}: clean is {len(a)} tokens and corrupt {len(b)} for model {lm.name}; "
                               f"patching copies activations position by position, so they need the same length. "
                               f"Swap in a name with the same number of tokens.")
        d = np.flatnonzero(np.asarray(a) != np.asarray(b))
        if d.size == 0:
            raise StimuliError(f"{where}: clean and corrupt tokenize identically for model {lm.name}.")
        swap.append(d)
        tgt.append(single_token_id(lm, p.target, where))
        foil.append(single_token_id(lm, p.foil, where))
    return TokenizedPairs(list(pairs), clean, corrupt, swap, np.array(tgt), np.array(foil))


def split_by_group(pairs: Sequence[PatchPair], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of pair indices into (train, held-out) by ``group``; each side keeps a seeded order."""
    groups = sorted({p.group for p in pairs})
    if len(groups) < 2:
        raise StimuliError(f"{WHAT}: all pairs share one group ({groups}); the split needs at least two groups "
                           f"(or leave 'group' out to split by pair).")
    rng = np.random.default_rng(seed)
    perm = [groups[i] for i in rng.permutation(len(groups))]
    n_test = min(len(groups) - 1, max(1, int(round(test_fraction * len(groups)))))
    test_groups = set(perm[:n_test])
    order = rng.permutation(len(pairs))
    return ([int(i) for i in order if pairs[i].group not in test_groups],
            [int(i) for i in order if pairs[i].group in test_groups])


def pairs_hash(pairs: Sequence[PatchPair]) -> str:
    return stimuli_hash([[p.id, p.clean, p.corrupt, p.target, p.foil, p.group] for p in pairs])
