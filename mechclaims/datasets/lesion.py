"""Stimuli for the MLP lesion claim: matched her/him prompt pairs, validated at load.

Two JSON Lines formats (``#`` comments allowed), one pair per line, fields ``id``, ``her``, ``him``:

- causal (``fixtures/lesion_causal.jsonl``): prompts whose correct next token is ``" her"`` (field ``her``) or
  ``" him"`` (field ``him``). The prompt stops right before the pronoun, with no trailing space (BPE spells the
  pronoun with its leading space).
- masked (``fixtures/lesion_masked.jsonl``): sentences with exactly one ``[MASK]`` where ``her``/``him`` belongs.

Both members of a pair share one frame, so the paired t-test of rule (a) compares like with like. Pairs are
split by referent name (:func:`split_by_name`): pairs that share a name (on either side) stay together, so no
held-out prompt names a referent that the selection saw. Pairs are put in a canonical order (by id) when loaded.
See ``fixtures/README_lesion.md``.

The two sides are the file's: a ``#!`` directive may name two single-token words, e.g. ``#! {"classes": ["she",
"he"]}`` (``mechclaims.datasets.contrast``); the records then have the fields ``id``, ``she``, ``he``, and the
causal targets are ``" she"`` and ``" he"``. Without it the sides are ``her`` and ``him`` (the bundled files). Read
the first side for "her" and the second for "him" below.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mechclaims.errors import StimuliError
from mechclaims.datasets.io import check_keys, read_jsonl_numbered, record_id, stimuli_hash
from mechclaims.datasets.io import bundled_fixtures
from mechclaims.datasets.contrast import read_contrast
from mechclaims.datasets.pronouns import missing_partner, partner_message

SIDES = ("her", "him")  # the bundled sides
FIXTURES = bundled_fixtures()
CAUSAL_PATH = FIXTURES / "lesion_causal.jsonl"
MASKED_PATH = FIXTURES / "lesion_masked.jsonl"
MASK = "[MASK]"
TARGETS = {"her": " her", "him": " him"}  # causal next tokens, BPE spelling
FIELDS = ("id", "her", "him")


@dataclass(frozen=True)
class PronounPair:
    """One matched pair: the same frame with the first side's referent (``her``: a female one in the bundled file)
    and the second side's (``him``); ``sides`` names the two sides (their target words)."""

    id: str
    her: str
    him: str
    sides: tuple[str, str] = SIDES

    def text(self, side: str) -> str:
        return self.her if side == self.sides[0] else self.him


def pair_sides(pairs: Sequence[PronounPair]) -> tuple[str, str]:
    """The sides (target words) of a loaded pair list."""
    return pairs[0].sides if pairs else SIDES


def _common(path: str | Path, what: str, min_pairs: int) -> list[PronounPair]:
    sides = read_contrast(path, what, SIDES, words=False).names
    s0, s1 = sides
    numbered = read_jsonl_numbered(path, ("id",), what)
    seen: dict[str, int] = {}
    texts: dict[str, str] = {}
    out = []
    for i, (line, r) in enumerate(numbered, 1):
        pid = record_id(r["id"], f"{what} {path}, line {line} (record {i})")
        lacks = missing_partner(r, sides)
        if lacks is not None:
            other = s1 if lacks == s0 else s0
            frame = (f"a {'female' if lacks == 'her' else 'male'} referent" if sides == SIDES
                     else f"the referent of side {lacks!r}")
            raise StimuliError(partner_message(f"{what} {path}, line {line} (record {i}, id {pid!r})", other, lacks,
                                               f"the same frame with {frame}"))
        check_keys(r, ("id", *sides), path, line, what)
        for k in sides:
            if not isinstance(r[k], str):
                raise StimuliError(f"{what} {path}, record {i} (id {pid!r}): field {k!r} must be a string.")
        if pid in seen:
            raise StimuliError(f"{what} {path}: id {pid!r} is used by records {seen[pid]} and {i}; ids must be "
                               f"unique so that splits and baselines can name pairs.")
        seen[pid] = i
        if r[s0] == r[s1]:
            raise StimuliError(f"{what} {path}, record {i} (id {pid!r}): {s0!r} and {s1!r} are the same text; a "
                               f"pair must differ in its referent.")
        for k in sides:
            if r[k] in texts:
                raise StimuliError(f"{what} {path}, record {i} (id {pid!r}): the {k!r} text duplicates a text of "
                                   f"pair {texts[r[k]]!r}; duplicates would sit on both sides of a split.")
            texts[r[k]] = pid
        out.append(PronounPair(pid, r[s0], r[s1], sides))
    if len(out) < min_pairs:
        raise StimuliError(f"{what} {path} has {len(out)} pairs; at least {min_pairs} are needed to select on one "
                           f"split and test on another with any power.")
    return sorted(out, key=lambda p: p.id)  # canonical order: the file's order never moves a seeded split


def load_causal_pairs(path: str | Path = CAUSAL_PATH, min_pairs: int = 10) -> list[PronounPair]:
    """Load and validate causal prompt pairs (no ``[MASK]``, no trailing whitespace)."""
    what = "lesion causal-prompt file"
    pairs = _common(path, what, min_pairs)
    for p in pairs:
        for side in p.sides:
            t = p.text(side)
            if MASK in t:
                raise StimuliError(f"{what} {path}, id {p.id!r}: the {side!r} prompt contains {MASK}; causal "
                                   f"prompts stop right before the pronoun. Use the masked file for [MASK].")
            if t != t.rstrip():
                raise StimuliError(f"{what} {path}, id {p.id!r}: the {side!r} prompt ends in whitespace; end it "
                                   f"right before the pronoun (the next token is {' ' + side!r}, space "
                                   f"included).")
    return pairs


def load_masked_pairs(path: str | Path = MASKED_PATH, min_pairs: int = 10) -> list[PronounPair]:
    """Load and validate masked-LM sentence pairs (exactly one ``[MASK]`` each, as a separate word)."""
    what = "lesion masked-sentence file"
    pairs = _common(path, what, min_pairs)
    for p in pairs:
        for side in p.sides:
            t = p.text(side)
            n = t.count(MASK)
            if n != 1:
                raise StimuliError(f"{what} {path}, id {p.id!r}: the {side!r} sentence has {n} {MASK} tokens; it "
                                   f"needs exactly one, where {side!r} belongs.")
            i = t.index(MASK)
            after = t[i + len(MASK):i + len(MASK) + 1]
            if (i > 0 and not t[i - 1].isspace()) or (after and after.isalnum()):
                raise StimuliError(f"{what} {path}, id {p.id!r}: {MASK} must stand alone as a word in {t!r}, so "
                                   f"filling it with {side!r} does not change the tokens around it.")
    return pairs


def fill_mask(text: str, word: str) -> str:
    """The sentence with its ``[MASK]`` replaced by ``word`` (the selection sentences of the masked design)."""
    return text.replace(MASK, word, 1)


def split_pairs(pairs: Sequence[PronounPair], test_fraction: float, seed: int
                ) -> tuple[list[PronounPair], list[PronounPair]]:
    """Seeded split by pair into (train, test); the test part gets ``round(test_fraction * n)`` pairs."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    n = len(pairs)
    n_test = int(round(test_fraction * n))
    if n_test < 2 or n - n_test < 3:
        raise StimuliError(f"{n} pairs cannot be split {1 - test_fraction:.0%}/{test_fraction:.0%} with at least "
                           f"3 training and 2 test pairs; add pairs.")
    perm = np.random.default_rng(seed).permutation(n)
    test = set(perm[:n_test].tolist())
    return ([p for i, p in enumerate(pairs) if i not in test], [p for i, p in enumerate(pairs) if i in test])


def pairs_hash(pairs: Sequence[PronounPair]) -> str:
    """Cache key of a pair list (the bundled sides add nothing, so their keys stay as they were)."""
    extra = [] if pair_sides(pairs) == SIDES else [list(pair_sides(pairs))]
    return stimuli_hash([[p.id, p.her, p.him] for p in pairs] + extra)


def referent_names(pair: PronounPair) -> tuple[str, str]:
    """The first word in which the two prompts differ: the referent's name on each side ("Mary", "John"). Pairs
    whose prompts differ only later (no name) give their first differing words, which still group pairs correctly."""
    for a, b in zip(pair.her.split(), pair.him.split()):
        if a != b:
            return a.strip(".,;:!?\"'"), b.strip(".,;:!?\"'")
    return pair.her, pair.him


def split_by_name(pairs: Sequence[PronounPair], test_fraction: float, seed: int
                  ) -> tuple[list[PronounPair], list[PronounPair]]:
    """Seeded split into (train, test) where no referent name occurs on both sides.

    Pairs sharing a name (either side) form one group (connected components); whole groups are drawn into the test
    part in a seeded order until it holds ``round(test_fraction * n)`` pairs or more. An error names the problem when
    the names tie so many pairs together that no such split exists."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    names = [referent_names(p) for p in pairs]
    for a, b in names:
        parent[find(a)] = find(b)
    groups: dict[str, list[int]] = {}
    for i, (a, _) in enumerate(names):
        groups.setdefault(find(a), []).append(i)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    n_test, test = int(round(test_fraction * len(pairs))), []
    for j in order:
        if len(test) >= n_test:
            break
        test += groups[keys[j]]
    if len(test) < 2 or len(pairs) - len(test) < 3:
        raise StimuliError(f"{len(pairs)} pairs in {len(groups)} groups of shared referent names cannot be split "
                           f"{1 - test_fraction:.0%}/{test_fraction:.0%} with at least 3 training and 2 test pairs and "
                           f"no name on both sides; use more distinct names.")
    held = set(test)
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]
