"""Natural-text windows cut from a corpus for the GED claim's him/her held-out set (the object-position rule).

Object position (pre-registered, never tuned): ``him`` is always an object pronoun, but ``her`` is often a
possessive determiner ("her book"). A window is kept only when the word after the pronoun is punctuation, the
end of the text, or a closed-class word that cannot start the noun phrase a possessive ``her`` would head
(:data:`OBJECT_NEXT`). The same rule applies to ``him``, so both labels are selected alike. The rule is about
these two pronouns: a contrast of other classes gives its windows as a file (``mechclaims.datasets.pronouns``).
"""
from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

from mechclaims.errors import StimuliError

PRONOUNS = ("him", "her")
# Words that follow an object pronoun but cannot follow a possessive "her" ("told her that", "gave her the").
OBJECT_NEXT = frozenset("""to in on at for with from by about into onto up down off out over back away again and or
but so as like than when if because before after while until the a an that this what how why where too now then
there here not never alone yet once""".split())
_ANY_PRONOUN = re.compile(r"(?<![\w'])(him|her)(?![\w'])", re.IGNORECASE)
_WORD = re.compile(r"\S+")


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


def parquet_docs(path: str, text_column: str = "text", max_docs: int = 200_000) -> Iterable[tuple[str, str]]:
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
