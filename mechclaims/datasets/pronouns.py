"""Stimuli for the GED claim: matched sentence pairs and held-out natural-text windows of two classes (him/her).

The classes come from the file: a ``#!`` directive (``mechclaims.datasets.contrast``) names two classes and the
words of each, e.g. ``#! {"classes": ["he", "she"]}`` or ``#! {"classes": {"animal": ["dog", "cat"], "tool":
["saw", "drill"]}}``. Without one, the classes are ``him`` and ``her``, each its own word (the bundled files), and
every rule below reads as written for them. With other classes, read "the class's word" for "the pronoun".

Formats (full description in ``fixtures/README_ged.md``):

* pairs (``.jsonl`` or ``.csv``): ``id``, ``him``, ``her`` and optional ``frame``. The two sentences must be
  identical except that ``him`` holds the word ``him`` exactly once where ``her`` holds ``her``; neither may
  contain the other pronoun. Matching is what lets the design compare the pronoun and nothing else.
* a pair's class stated apart from its read word (``.jsonl``; the nulls a control needs): a side may be an object
  ``{"text": ..., "word": ...}``, read at ``word`` (exactly once in the text, whole word), whatever its class; and a
  ``#! {"classes": [a, b], "read": word or [words]}`` directive makes the classes labels with no words of their own,
  each sentence read at its one ``read`` word. Such a record ("stated") is checked for its read words and for two
  sentences that differ; the class-word and matching rules above do not apply to it (the class may be carried by
  another word: the same pronoun on both sides with a time word varied, ``fixtures/ged_same_word.jsonl``; or him and
  her on either side, labels shuffled within pairs).
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

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mechclaims.errors import StimuliError
from mechclaims.harness.options import MIN_HELDOUT_PER_LABEL
from mechclaims.datasets.io import check_keys, read_records_numbered, read_text, record_id, stimuli_hash
from mechclaims.datasets.contrast import Contrast, any_case, default, find_one, hits, read_contrast
from mechclaims.datasets.corpus import OBJECT_NEXT, parquet_docs, extract_windows, is_object_position  # noqa: F401  (re-exported)

PRONOUNS = ("him", "her")
_OTHER = {"him": "her", "her": "him"}


BUNDLED = default(PRONOUNS)
_hits = hits


@dataclass(frozen=True)
class PronounPairs:
    """Matched sentences: row i of ``first`` (class ``contrast.names[0]``) and ``second`` differ only in the class
    word, ``words[0][i]`` and ``words[1][i]``."""

    ids: list[str]
    frames: list[str]
    first: list[str]
    second: list[str]
    source: str
    contrast: Contrast = BUNDLED
    words: tuple[list[str], list[str]] | None = None
    stated: bool = False  # some record states its read word apart from its class (the words then enter the hash)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def him(self) -> list[str]:  # the bundled contrast's names (first class = him)
        return self.first

    @property
    def her(self) -> list[str]:
        return self.second

    def texts(self, cls: str) -> list[str]:
        return self.first if cls == self.contrast.names[0] else self.second

    def word_list(self, cls: str) -> list[str]:
        """The class word each sentence of ``cls`` holds (the position the claim reads)."""
        i = self.contrast.names.index(cls)
        return list(self.words[i]) if self.words is not None else [cls] * len(self)

    def hash(self) -> str:
        read = [["words", list(self.words[0]), list(self.words[1])]] if self.stated and self.words else []
        return stimuli_hash([self.ids, self.first, self.second] + self.contrast.key() + read)

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
    """Natural-text windows, each holding one word of its label's class (him or her, in object position)."""

    ids: list[str]
    labels: list[str]
    texts: list[str]
    sources: list[str]
    source: str
    contrast: Contrast = BUNDLED
    words: list[str] | None = None  # the class word each window holds (default: its label)

    def __len__(self) -> int:
        return len(self.ids)

    def hash(self) -> str:
        return stimuli_hash([self.ids, self.labels, self.texts] + self.contrast.key())

    def of(self, label: str) -> list[int]:
        return [i for i, lab in enumerate(self.labels) if lab == label]

    def word_list(self) -> list[str]:
        return list(self.words) if self.words is not None else list(self.labels)

    def rendered(self, cls_of_row) -> list[str]:
        """Each text with its word replaced by the token of class ``cls_of_row(label)``."""
        return [_replace(t, w, self.contrast.token(cls_of_row(lab)))
                for t, w, lab in zip(self.texts, self.word_list(), self.labels)]

    def swapped(self) -> list[str]:
        """Each text with its word replaced by the other class's token (token-fixed control: context kept)."""
        return self.rendered(self.contrast.other)


def _replace(text: str, word: str, new: str) -> str:
    (i,) = _hits(text, word)
    return text[:i] + new + text[i + len(word):]


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
# MIN_HELDOUT_PER_LABEL (mechclaims.harness.options): Welch t-test and bootstrap CI of d per label; 50 or more is sensible


def _one_word(text: str, cls: str, con: Contrast) -> tuple[int, str] | str:
    """(offset, word) of the one word of class ``cls`` in ``text``, or the message saying why there is not one."""
    ws, other = con.words_of(cls), con.words_of(con.other(cls))
    found = find_one(text, ws)
    what = f"the lower-case word {ws[0]!r}" if len(ws) == 1 else f"one of the words {list(ws)} (case-sensitive)"
    if len(found) != 1:
        return f"must contain {what} exactly once, found {len(found)}"
    bad = any_case(text, other)
    if bad:
        return f"also contains {', '.join(repr(b) for b in bad)}"
    return found[0]


def load_pairs(path: str | os.PathLike) -> PronounPairs:
    """Read and validate matched pairs; every problem names the file, the line and record, and the fix."""
    what = "GED pairs file"
    con = read_contrast(path, what, PRONOUNS)
    a, b = con.names
    numbered = read_records_numbered(path, ("id",), what=what)
    rows = [r for _, r in numbered]
    seen: set[str] = set()
    same: dict[tuple[str, str], tuple[str, int]] = {}  # the pair's two sentences -> (id, line) of its first record
    for k, (line, r) in enumerate(numbered, 1):
        where = f"{what} {path}, line {line} (record {k}, id {r['id']!r})"
        r["id"] = record_id(r["id"], f"{what} {path}, line {line} (record {k})")
        lacks = missing_partner(r, con.names)
        if lacks is not None:
            raise StimuliError(partner_message(where, con.other(lacks), lacks))
        check_keys(r, con.names, path, line, what)
        if r["id"] in seen:
            raise StimuliError(f"{where}: duplicate id; ids must be unique.")
        seen.add(str(r["id"]))
        if con.read or any(isinstance(r[lab], dict) for lab in con.names):
            r["_texts"], r["_words"] = _stated(r, con, where)
        else:
            r["_texts"], r["_words"] = _class_words(r, con, where)
        texts = tuple(" ".join(t.split()) for t in r["_texts"])
        if texts in same:
            first_id, first_line = same[texts]
            raise StimuliError(f"{where}: the same pair as id {first_id!r} (line {first_line}) under another id. A "
                               f"pair listed twice can land in both the training and the held-out split, so the "
                               f"held-out test would score a pair it was trained on. Delete one of {first_id!r} and "
                               f"{r['id']!r}.")
        same[texts] = (str(r["id"]), line)
    if len(rows) < MIN_PAIRS:
        raise StimuliError(f"{what} {path}: {len(rows)} pairs; the claim needs at least {MIN_PAIRS} (it splits them "
                           f"into train and test and fits covariances). Add pairs.")
    rows.sort(key=lambda r: str(r["id"]))  # canonical order: the file's order never moves a seeded split
    stated = bool(con.read) or any(r["_stated"] for r in rows)
    return PronounPairs([str(r["id"]) for r in rows], [str(r.get("frame") or "-") for r in rows],
                        [r["_texts"][0] for r in rows], [r["_texts"][1] for r in rows], str(path), con,
                        ([r["_words"][0] for r in rows], [r["_words"][1] for r in rows])
                        if con.declared or stated else None, stated)


def _class_words(r: dict, con: Contrast, where: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """The texts and class words of a record whose sides are plain sentences: each holds one word of its class,
    none of the other's, and the two match apart from that word."""
    a, b = con.names
    r["_stated"] = False
    got = {}
    for lab in con.names:
        s = str(r[lab])
        got[lab] = _one_word(s, lab, con)
        if isinstance(got[lab], str):
            fix = (" Each sentence may hold only its own class's words." if "also" in got[lab] else "")
            raise StimuliError(f"{where}: the {lab!r} sentence {got[lab]}: {s!r}.{fix}")
    (i, wa), (j, wb), sa, sb = got[a], got[b], str(r[a]), str(r[b])
    if sa[:i] != sb[:j] or sa[i + len(wa):] != sb[j + len(wb):]:
        raise StimuliError(f"{where}: the sentences are not matched. Replacing {wa!r} by {wb!r} in {sa!r} "
                           f"must give exactly {sb!r}.")
    return (sa, sb), (wa, wb)


_SIDE_EXAMPLE = '{"text": "On Monday, I saw him at the station.", "word": "him"}'


def _stated(r: dict, con: Contrast, where: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """The texts and read words of a record that states its read word apart from its class: a side given as
    ``{"text", "word"}`` is read at ``word``; a plain side at its one ``read`` word (directive) or, without one, at
    its one class word. Each read word occurs exactly once (whole word, case-sensitive); the sides differ."""
    r["_stated"] = True
    texts, words = [], []
    for lab in con.names:
        v = r[lab]
        if isinstance(v, dict):
            if set(v) != {"text", "word"} or not isinstance(v["text"], str) or not v["text"].strip() \
                    or not isinstance(v["word"], str) or not v["word"].strip() or len(v["word"].split()) != 1:
                raise StimuliError(f"{where}: the {lab!r} side is an object, so it must have exactly the keys "
                                   f"\"text\" (a non-empty sentence) and \"word\" (one word of it to read at), e.g. "
                                   f"{_SIDE_EXAMPLE}; got {json.dumps(v)[:120]}.")
            text, cands = v["text"], (v["word"],)
        elif isinstance(v, str):
            text = v
            if not con.read:  # a plain side beside an object side: read at its class word, as always
                one = _one_word(text, lab, con)
                if isinstance(one, str):
                    raise StimuliError(f"{where}: the {lab!r} sentence {one}: {text!r}. Give it as {_SIDE_EXAMPLE} "
                                       f"to read it at another word.")
                texts.append(text)
                words.append(one[1])
                continue
            cands = con.read
        else:
            raise StimuliError(f"{where}: the {lab!r} side must be a sentence or an object {_SIDE_EXAMPLE}; got a "
                               f"JSON {type(v).__name__}.")
        found = find_one(text, tuple(cands))
        if len(found) != 1:
            what = f"the word {cands[0]!r}" if len(cands) == 1 else f"one of the read words {list(cands)}"
            raise StimuliError(f"{where}: the {lab!r} sentence must contain {what} exactly once (whole word, "
                               f"case-sensitive: it is where the claim reads), found {len(found)}: {text!r}. Fix the "
                               f"sentence or name the word to read at with {_SIDE_EXAMPLE}.")
        texts.append(text)
        words.append(found[0][1])
    if " ".join(texts[0].split()) == " ".join(texts[1].split()):
        raise StimuliError(f"{where}: the two sentences are identical ({texts[0]!r}); a pair must differ somewhere "
                           f"(in the word that carries its class).")
    return (texts[0], texts[1]), (words[0], words[1])


def load_heldout(path: str | os.PathLike, n_per_label: int | None = None, seed: int = 0,
                 contrast: Contrast | None = None, **extract: int) -> HeldoutWindows:
    """Held-out windows from a windows file (.jsonl/.csv), a text corpus (.txt) or Parquet.

    ``contrast``: the pairs file's classes; a windows file may repeat its ``#!`` directive (it must then agree) or
    leave it out. A corpus (.txt, Parquet) is cut by the him/her object-position rule, so only for him/her.

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
    own = read_contrast(p, "GED held-out file", PRONOUNS)
    con = contrast or own
    if own.declared and own != con:
        raise StimuliError(f"GED held-out file {p} declares the classes {dict(zip(own.names, own.words))} but the "
                           f"pairs declare {dict(zip(con.names, con.words))}; declare the same classes (or leave the "
                           f"#! line out of the held-out file: it then takes the pairs' classes).")
    names = con.names
    corpus = p.endswith(".txt") or p.endswith(".parquet") or os.path.isdir(p) or any(c in p for c in "*?[")
    if corpus and con.declared and con != default(PRONOUNS):
        raise StimuliError(f"GED held-out source {p}: windows are cut from a corpus by the him/her object-position "
                           f"rule only; for the classes {list(names)} give the windows as a .jsonl or .csv file "
                           f"(fields id, label, text).")
    if p.endswith(".txt"):
        what = "GED held-out corpus"
        text = read_text(p, what)
        docs = [(f"{Path(p).name}#{i}", d) for i, d in enumerate(re.split(r"\n\s*\n", text)) if d.strip()]
        rows, why = extract_windows(docs, **extract)
    elif p.endswith(".parquet") or os.path.isdir(p) or any(c in p for c in "*?["):
        what = "GED held-out Parquet source"
        rows, why = extract_windows(parquet_docs(p), **extract)
    else:
        what = "GED held-out file"
        numbered = read_records_numbered(p, ("id", "label", "text"), what=what)
        rows = [r for _, r in numbered]
        for k, (line, r) in enumerate(numbered, 1):
            where = f"{what} {p}, line {line} (record {k}, id {r['id']!r})"
            r["id"] = record_id(r["id"], f"{what} {p}, line {line} (record {k})")
            if r["label"] not in names:
                raise StimuliError(f"{where}: label must be {' or '.join(repr(x) for x in names)}, got "
                                   f"{r['label']!r}.")
            if con.read:  # labels with no words of their own: read at the window's one read word
                found = find_one(str(r["text"]), con.read)
                if len(found) != 1:
                    raise StimuliError(f"{where}: the text must contain exactly one of the read words "
                                       f"{list(con.read)} (found {len(found)}): {r['text']!r}.")
                r["_word"] = found[0][1]
                continue
            one = _one_word(str(r["text"]), r["label"], con)
            if isinstance(one, str):
                ws = con.words_of(r["label"])
                what_ = f"the lower-case word {ws[0]!r}" if len(ws) == 1 else f"one of the words {list(ws)}"
                raise StimuliError(f"{where}: the text must contain {what_} exactly once "
                                   f"and not {' or '.join(repr(w) for w in con.words_of(con.other(r['label'])))}: "
                                   f"{r['text']!r}.")
            r["_word"] = one[1]
    n = {lab: sum(r["label"] == lab for r in rows) for lab in names}
    if min(n.values()) < MIN_HELDOUT_PER_LABEL:
        short = [lab for lab in names if n[lab] < MIN_HELDOUT_PER_LABEL]
        if why is None:
            found, fix = "", (f"Add windows labelled {' and '.join(repr(x) for x in short)} to the file")
        else:
            n_docs = len(rows) + why["no_pronoun"] + why["none_eligible"]
            found = (f" cut from {n_docs} documents by the object-position rule ({why['no_pronoun']} hold no "
                     f"him/her, {why['none_eligible']} none in object position)")
            fix = "Use a larger corpus"
        raise StimuliError(f"{what} {p}: {n[names[0]]} {names[0]!r} and {n[names[1]]} {names[1]!r} windows{found}; "
                           f"the Welch t-test "
                           f"and bootstrap need at least {MIN_HELDOUT_PER_LABEL} of each label (50 or more is "
                           f"sensible). {fix}, or point --mc-stimuli ged_heldout=PATH at another source.")
    rows = sorted(rows, key=lambda r: (str(r["text"]), str(r["id"])))
    if n_per_label is not None:
        rng = np.random.default_rng([seed, 4243])
        keep_idx: list[int] = []
        for lab in names:
            idx = [i for i, r in enumerate(rows) if r["label"] == lab]
            keep_idx += sorted(rng.permutation(idx)[:n_per_label].tolist())
        rows = [rows[i] for i in sorted(keep_idx)]
    return HeldoutWindows([str(r["id"]) for r in rows], [r["label"] for r in rows], [str(r["text"]) for r in rows],
                          [str(r.get("source") or "") for r in rows], p, con,
                          [str(r.get("_word", r["label"])) for r in rows] if con.declared else None)
