"""him/her stimuli for the GED claim: matched sentence pairs and held-out natural-text windows.

Formats (full description in ``fixtures/README_ged.md``):

* pairs (``.jsonl`` or ``.csv``): ``id``, ``him``, ``her`` and optional ``frame``. The two sentences must be
  identical except that ``him`` holds the word ``him`` exactly once where ``her`` holds ``her``; neither may
  contain the other pronoun. Matching is what lets the design compare the pronoun and nothing else.
* held-out windows (``.jsonl`` or ``.csv``): ``id``, ``label`` (``him`` | ``her``), ``text``, optional ``source``.
  The text holds its label's pronoun exactly once (lower case) and not the other pronoun.
* a plain-text corpus (``.txt``): documents separated by blank lines; windows are cut by
  :func:`extract_windows`, the same rule that built ``fixtures/ged_heldout.jsonl``.
* Parquet (a file, a directory or a glob, e.g. FineWeb shards in your own HF cache): a ``text`` column, read
  with pandas (needs ``pyarrow`` or ``fastparquet``); windows are cut by the same rule.

Object position (pre-registered, never tuned): ``him`` is always an object pronoun, but ``her`` is often a
possessive determiner ("her book"). A window is kept only when the word after the pronoun is punctuation, the
end of the text, or a closed-class word that cannot start the noun phrase a possessive ``her`` would head
(:data:`OBJECT_NEXT`). The same rule applies to ``him``, so both labels are selected alike.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import StimuliError
from ..stimuli import _check_keys, read_records_numbered, read_text, record_id, stimuli_hash

PRONOUNS = ("him", "her")
_OTHER = {"him": "her", "her": "him"}
# Words that follow an object pronoun but cannot follow a possessive "her" ("told her that", "gave her the").
OBJECT_NEXT = frozenset("""to in on at for with from by about into onto up down off out over back away again and or
but so as like than when if because before after while until the a an that this what how why where too now then
there here not never alone yet once""".split())
_ANY_PRONOUN = re.compile(r"(?<![\w'])(him|her)(?![\w'])", re.IGNORECASE)
_WORD = re.compile(r"\S+")


def _hits(text: str, word: str) -> list[int]:
    return [m.start() for m in re.finditer(rf"(?<![\w']){word}(?![\w'])", text)]


@dataclass(frozen=True)
class PronounPairs:
    """Matched sentences: row i of ``him`` and ``her`` differ only in the pronoun."""

    ids: list[str]
    frames: list[str]
    him: list[str]
    her: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.ids)

    def hash(self) -> str:
        return stimuli_hash([self.ids, self.him, self.her])

    def split(self, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Train/test pair indices, stratified by frame so every frame sits on both sides where it can."""
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        rng = np.random.default_rng(seed)
        test: list[int] = []
        for f in sorted(set(self.frames)):
            idx = np.flatnonzero(np.asarray(self.frames) == f)
            idx = rng.permutation(idx)
            test.extend(idx[: int(round(test_fraction * len(idx)))].tolist())
        is_test = np.zeros(len(self), bool)
        is_test[test] = True
        return np.flatnonzero(~is_test), np.flatnonzero(is_test)


@dataclass(frozen=True)
class HeldoutWindows:
    """Natural-text windows, each holding one him or her (its label) in object position."""

    ids: list[str]
    labels: list[str]
    texts: list[str]
    sources: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.ids)

    def hash(self) -> str:
        return stimuli_hash([self.ids, self.labels, self.texts])

    def of(self, label: str) -> list[int]:
        return [i for i, lab in enumerate(self.labels) if lab == label]

    def swapped(self) -> list[str]:
        """Each text with its pronoun replaced by the other one (token-fixed control: context kept, token changed)."""
        return [swap_pronoun(t, lab) for t, lab in zip(self.texts, self.labels)]


def swap_pronoun(text: str, label: str) -> str:
    (i,) = _hits(text, label)
    return text[:i] + _OTHER[label] + text[i + len(label):]


def missing_partner(rec: dict, sides: Sequence[str]) -> str | None:
    """The side of a pair whose sentence is missing or empty while the other side has one (else None)."""
    def has(k: str) -> bool:
        v = rec.get(k)
        return v is not None and not (isinstance(v, str) and not v.strip())
    present = [k for k in sides if has(k)]
    return next((k for k in sides if not has(k)), None) if 0 < len(present) < len(sides) else None


def partner_message(where: str, have: str, lacks: str, matching: str = "") -> str:
    """Message for a pair with one side only: the him and her lists would differ in length."""
    matching = matching or f"the {have!r} sentence with {have!r} replaced by {lacks!r}"
    return (f"{where}: the pair has a {have!r} sentence but no {lacks!r} partner (the field is missing or empty). "
            f"The {have} and {lacks} lists must have the same length, one pair per record: add the matching "
            f"{lacks!r} sentence ({matching}) or delete the record.")


MIN_PAIRS = 8  # the claim splits pairs into train and test and fits covariances
MIN_HELDOUT_PER_LABEL = 5  # Welch t-test and bootstrap CI of d per label; 50 or more is sensible


def load_pairs(path: str | os.PathLike) -> PronounPairs:
    """Read and validate matched pairs; every problem names the file, the line and record, and the fix."""
    what = "GED pairs file"
    numbered = read_records_numbered(path, ("id",), what=what)
    rows = [r for _, r in numbered]
    seen: set[str] = set()
    for k, (line, r) in enumerate(numbered, 1):
        where = f"{what} {path}, line {line} (record {k}, id {r['id']!r})"
        r["id"] = record_id(r["id"], f"{what} {path}, line {line} (record {k})")
        lacks = missing_partner(r, PRONOUNS)
        if lacks is not None:
            raise StimuliError(partner_message(where, _OTHER[lacks], lacks))
        _check_keys(r, ("him", "her"), path, line, what)
        if r["id"] in seen:
            raise StimuliError(f"{where}: duplicate id; ids must be unique.")
        seen.add(str(r["id"]))
        for lab in PRONOUNS:
            s = str(r[lab])
            if len(_hits(s, lab)) != 1:
                raise StimuliError(f"{where}: the {lab!r} sentence must contain the lower-case word {lab!r} exactly "
                                   f"once, found {len(_hits(s, lab))}: {s!r}.")
            if _hits(s.lower(), _OTHER[lab]):
                raise StimuliError(f"{where}: the {lab!r} sentence also contains {_OTHER[lab]!r}: {s!r}. Each "
                                   f"sentence may hold only its own pronoun.")
        (i,) = _hits(str(r["him"]), "him")
        if str(r["him"])[:i] + "her" + str(r["him"])[i + 3:] != str(r["her"]):
            raise StimuliError(f"{where}: the sentences are not matched. Replacing 'him' by 'her' in {r['him']!r} "
                               f"must give exactly {r['her']!r}.")
    if len(rows) < MIN_PAIRS:
        raise StimuliError(f"{what} {path}: {len(rows)} pairs; the claim needs at least {MIN_PAIRS} (it splits them "
                           f"into train and test and fits covariances). Add pairs.")
    rows.sort(key=lambda r: str(r["id"]))  # canonical order: the file's order never moves a seeded split
    return PronounPairs([str(r["id"]) for r in rows], [str(r.get("frame") or "-") for r in rows],
                        [str(r["him"]) for r in rows], [str(r["her"]) for r in rows], str(path))


def is_object_position(after: str) -> bool:
    """Pre-registered rule on the text right after the pronoun (see module docstring)."""
    after = after.lstrip()
    if not after or not after[0].isalnum():
        return True
    word = re.match(r"[A-Za-z]+", after)
    return bool(word) and word.group(0) in OBJECT_NEXT


def extract_windows(docs: Iterable[tuple[str, str]], left_words: int = 16, right_words: int = 6,
                    ) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Cut at most one window per document, around its first lower-case object-position ``him``/``her``.

    ``docs`` yields ``(doc_id, text)``. One window per document keeps windows independent. The window holds up
    to ``left_words`` words before and ``right_words`` after the pronoun, and stops short of any other him/her
    (any case), so it holds its label's pronoun exactly once and never the other one. Returns the windows and
    counts of why documents gave none.
    """
    out: list[dict[str, str]] = []
    why = {"no_pronoun": 0, "none_eligible": 0}
    for doc_id, text in docs:
        text = " ".join(text.split())
        found = list(_ANY_PRONOUN.finditer(text))
        if not found:
            why["no_pronoun"] += 1
            continue
        j = next((j for j, m in enumerate(found)
                  if m.group(0) in PRONOUNS and is_object_position(text[m.end():])), None)
        if j is None:  # capitalised, or possessive/undeterminable "her"
            why["none_eligible"] += 1
            continue
        m = found[j]
        lo = found[j - 1].end() if j > 0 else 0
        hi = found[j + 1].start() if j + 1 < len(found) else len(text)
        words = [w for w in _WORD.finditer(text) if w.start() >= lo and w.end() <= hi]
        k = next(i for i, w in enumerate(words) if w.start() <= m.start() < w.end())
        a = words[max(0, k - left_words)].start()
        b = words[min(len(words) - 1, k + right_words)].end()
        out.append({"id": doc_id, "label": m.group(0), "text": text[a:b]})
    return out, why


def load_heldout(path: str | os.PathLike, n_per_label: int | None = None, seed: int = 0,
                 **extract: int) -> HeldoutWindows:
    """Held-out windows from a windows file (.jsonl/.csv), a text corpus (.txt) or Parquet.

    Windows are put in a canonical order (by text, then id), so the order of the file changes nothing.
    ``n_per_label`` keeps a seeded random sample of n windows of each label (all of them by default). A label with
    fewer than n windows keeps all it has; a label with fewer than :data:`MIN_HELDOUT_PER_LABEL` is an error
    naming the source and the counts.
    """
    if n_per_label is not None and n_per_label < MIN_HELDOUT_PER_LABEL:
        raise ValueError(f"n_per_label={n_per_label}: the held-out tests need at least {MIN_HELDOUT_PER_LABEL} "
                         f"windows per label.")
    p = str(path)
    why: dict[str, int] | None = None
    if p.endswith(".txt"):
        what = "GED held-out corpus"
        text = read_text(p, what)
        docs = [(f"{Path(p).name}#{i}", d) for i, d in enumerate(re.split(r"\n\s*\n", text)) if d.strip()]
        rows, why = extract_windows(docs, **extract)
    elif p.endswith(".parquet") or os.path.isdir(p) or any(c in p for c in "*?["):
        what = "GED held-out Parquet source"
        rows, why = extract_windows(_parquet_docs(p), **extract)
    else:
        what = "GED held-out file"
        numbered = read_records_numbered(p, ("id", "label", "text"), what=what)
        rows = [r for _, r in numbered]
        for k, (line, r) in enumerate(numbered, 1):
            where = f"{what} {p}, line {line} (record {k}, id {r['id']!r})"
            r["id"] = record_id(r["id"], f"{what} {p}, line {line} (record {k})")
            if r["label"] not in PRONOUNS:
                raise StimuliError(f"{where}: label must be 'him' or 'her', got {r['label']!r}.")
            if len(_hits(str(r["text"]), r["label"])) != 1 or _hits(str(r["text"]).lower(), _OTHER[r["label"]]):
                raise StimuliError(f"{where}: the text must contain the lower-case word {r['label']!r} exactly once "
                                   f"and not {_OTHER[r['label']]!r}: {r['text']!r}.")
    n = {lab: sum(r["label"] == lab for r in rows) for lab in PRONOUNS}
    if min(n.values()) < MIN_HELDOUT_PER_LABEL:
        short = [lab for lab in PRONOUNS if n[lab] < MIN_HELDOUT_PER_LABEL]
        if why is None:
            found, fix = "", (f"Add windows labelled {' and '.join(repr(x) for x in short)} to the file")
        else:
            n_docs = len(rows) + why["no_pronoun"] + why["none_eligible"]
            found = (f" cut from {n_docs} documents by the object-position rule ({why['no_pronoun']} hold no "
                     f"him/her, {why['none_eligible']} none in object position)")
            fix = "Use a larger corpus"
        raise StimuliError(f"{what} {p}: {n['him']} 'him' and {n['her']} 'her' windows{found}; the Welch t-test "
                           f"and bootstrap need at least {MIN_HELDOUT_PER_LABEL} of each label (50 or more is "
                           f"sensible). {fix}, or point --mc-stimuli ged_heldout=PATH at another source.")
    rows = sorted(rows, key=lambda r: (str(r["text"]), str(r["id"])))
    if n_per_label is not None:
        rng = np.random.default_rng([seed, 4243])
        keep_idx: list[int] = []
        for lab in PRONOUNS:
            idx = [i for i, r in enumerate(rows) if r["label"] == lab]
            keep_idx += sorted(rng.permutation(idx)[:n_per_label].tolist())
        rows = [rows[i] for i in sorted(keep_idx)]
    return HeldoutWindows([str(r["id"]) for r in rows], [r["label"] for r in rows], [str(r["text"]) for r in rows],
                          [str(r.get("source") or "") for r in rows], p)


def _parquet_docs(path: str, text_column: str = "text", max_docs: int = 200_000) -> Iterable[tuple[str, str]]:
    try:
        import pandas as pd
    except ImportError:
        raise StimuliError(f"reading Parquet ({path}) needs pandas with pyarrow: `pip install pandas pyarrow`. "
                           f"Or export the text to a .txt file (documents separated by blank lines).") from None
    files: Sequence[str] = (sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
                            if os.path.isdir(path) else sorted(glob.glob(path)))
    if not files:
        raise StimuliError(f"no Parquet files at {path!r}. For FineWeb in your HF cache pass e.g. "
                           f"~/.cache/huggingface/hub/datasets--HuggingFaceFW--fineweb/snapshots/*/sample/10BT/.")
    n = 0
    for f in files:
        try:
            df = pd.read_parquet(f, columns=[text_column])
        except ImportError as e:
            raise StimuliError(f"reading {f} needs a Parquet engine: `pip install pyarrow` ({e}).") from None
        except (KeyError, ValueError) as e:
            raise StimuliError(f"{f}: cannot read column {text_column!r} ({e}).") from None
        for i, t in enumerate(df[text_column].astype(str)):
            yield f"{Path(f).name}#{i}", t
            n += 1
            if n >= max_docs:
                return
