"""Natural prose passages: the documents of the path-length (and residual-additivity) claims.

Two formats, both validated at load so a bad file fails here with its name and line:

- ``.jsonl``: one object per line with ``doc_id``, ``source`` and ``text`` (other keys are kept, unused).
  ``fixtures/passages.jsonl`` is the shipped set; ``fixtures/README_passages.md`` documents it.
- ``.txt`` (any other extension): plain UTF-8 text, documents separated by one or more blank lines. Lines inside a
  document are joined with single spaces (so wrapped prose works); ids are ``<file stem>-<n>``.

Tokens of one document are not independent, so claims resample documents: several documents are needed, each
long enough to hold a few dozen tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mechclaims.errors import StimuliError
from mechclaims.datasets.io import bundled_fixtures
from mechclaims.datasets.io import read_jsonl, read_text, stimuli_hash

DEFAULT_PASSAGES = bundled_fixtures() / "passages.jsonl"
WHAT = "passages file"


@dataclass(frozen=True)
class Passage:
    """One document: its id, where its text came from, the text, and the line it starts on in the file."""

    doc_id: str
    source: str
    text: str
    line: int = 0


def _from_txt(path: Path) -> list[Passage]:
    out: list[Passage] = []
    buf: list[str] = []
    start = 0
    for i, line in enumerate(read_text(path, WHAT).splitlines() + [""], 1):
        if line.strip():
            if not buf:
                start = i
            buf.append(line.strip())
        elif buf:
            out.append(Passage(doc_id=f"{path.stem}-{len(out) + 1}", source=f"{path.name}, line {start}",
                               text=" ".join(buf), line=start))
            buf = []
    return out


def _from_jsonl(path: Path) -> list[Passage]:
    rows = read_jsonl(path, ("doc_id", "source", "text"), WHAT)
    # read_jsonl skips comments and blanks; recover each record's line for error messages.
    lines = [i for i, s in enumerate(read_text(path, WHAT).splitlines(), 1)
             if s.strip() and not s.strip().startswith("#")]
    out = []
    for row, line in zip(rows, lines):
        for key in ("doc_id", "source", "text"):
            if not isinstance(row[key], str):
                raise StimuliError(f"{WHAT} {path}, line {line}: field {key!r} must be a string, got "
                                   f"{type(row[key]).__name__}.")
        out.append(Passage(doc_id=row["doc_id"].strip(), source=row["source"].strip(), text=row["text"].strip(),
                           line=line))
    return out


def load_passages(path: str | Path = DEFAULT_PASSAGES, *, min_docs: int = 1, min_words: int = 10) -> list[Passage]:
    """Read and validate passages from ``.jsonl`` or plain text (see the module docstring).

    Raises :class:`StimuliError` naming the file and line for a duplicate ``doc_id``, a document shorter than
    ``min_words`` words, or fewer than ``min_docs`` documents.
    """
    p = Path(path)
    passages = _from_jsonl(p) if p.suffix.lower() in (".jsonl", ".ndjson") else _from_txt(p)
    seen: dict[str, int] = {}
    for ps in passages:
        if ps.doc_id in seen:
            raise StimuliError(f"{WHAT} {p}, line {ps.line}: doc_id {ps.doc_id!r} repeats line {seen[ps.doc_id]}; "
                               f"every document needs its own id (they are the bootstrap's clusters).")
        seen[ps.doc_id] = ps.line
        if len(ps.text.split()) < min_words:
            raise StimuliError(f"{WHAT} {p}, line {ps.line}: document {ps.doc_id!r} has "
                               f"{len(ps.text.split())} words; at least {min_words} are needed. Merge it with its "
                               f"neighbour (in a .txt file, remove the blank line between them).")
    if len(passages) < min_docs:
        raise StimuliError(f"{WHAT} {p} holds {len(passages)} document(s); this claim resamples whole documents "
                           f"and needs at least {min_docs}. Add documents (separated by blank lines in a .txt).")
    # Canonical order (by text): the order of the file never moves a seeded draw or a result.
    return sorted(passages, key=lambda ps: (ps.text, ps.doc_id))


def check_token_counts(passages: Sequence[Passage], n_tokens: Sequence[int], max_len: int, *,
                       min_tokens: int = 3, source: str = WHAT) -> None:
    """Fail at the boundary when a tokenized document is too short to have a next token, or longer than the
    model's context ``max_len`` (split it: truncation would silently drop text)."""
    for ps, n in zip(passages, n_tokens):
        if n < min_tokens:
            raise StimuliError(f"{source}, line {ps.line}: document {ps.doc_id!r} is {n} token(s) long; at least "
                               f"{min_tokens} are needed (position 0 is excluded and the last has no next token).")
        if n > max_len:
            raise StimuliError(f"{source}, line {ps.line}: document {ps.doc_id!r} is {n} tokens long, past the "
                               f"model's context of {max_len}. Split it into shorter documents.")


def passages_hash(passages: Sequence[Passage]) -> str:
    """Stable hash of the texts and ids, for activation-cache keys."""
    return stimuli_hash([[p.doc_id, p.text] for p in passages])
