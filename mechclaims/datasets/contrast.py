"""The contrast a stimuli file declares: which two classes its records compare, and the words of each.

A JSON Lines stimuli file may declare its contrast in one directive line starting with ``#!`` (any ``#`` line is
a comment to the record reader, so files without it, and older readers, are unaffected)::

    #! {"classes": ["she", "he"]}                                    # two classes, each its own word
    #! {"classes": {"animal": ["dog", "cat"], "tool": ["saw", "drill"]}}   # two classes of words (GED)
    #! {"classes": ["monday", "friday"], "read": "him"}               # classes as labels, read at "him" (GED)
    #! {"classes": ["side_a", "side_b"], "read": ["him", "her"]}     # classes that share their words (GED)

With ``"read"`` (GED pairs only) the classes are labels and hold no words of their own: each sentence is read at
the one occurrence of a ``read`` word, wherever its class's content lies (a same-word null: the same pronoun on both
sides, the class carried by another word; a shuffled-label null: him and her on either side). A pairs record may
also state one side's read word itself, ``{"text": ..., "word": ...}`` (``mechclaims.datasets.pronouns``).

Without a directive the bundled contrast applies (GED: him vs her; lesion: her vs him), so the bundled files and
every file written for them read exactly as before. The class names are the record fields (pairs) or the label
values (held-out windows); the first word of each class is its *token*, the word the GED token-fixed design
renders every window with. Every problem is a :class:`~mechclaims.errors.StimuliError` naming the file, the
line and the fix.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from mechclaims.errors import StimuliError
from mechclaims.datasets.io import read_text

DIRECTIVE = "#!"
RESERVED = frozenset({"id", "frame", "label", "text", "source", "word"})
_WORD = re.compile(r"[^\s\[\]]+")  # one whitespace-free word, not a [MASK]-like placeholder


@dataclass(frozen=True)
class Contrast:
    """Two classes (``names[0]`` vs ``names[1]``) and the words each class may hold; ``declared`` is False for the
    bundled default."""

    names: tuple[str, str]
    words: tuple[tuple[str, ...], tuple[str, ...]]
    declared: bool = False
    read: tuple[str, ...] = ()  # "read" directive: the classes are labels; a sentence is read at one of these words

    def token(self, cls: str) -> str:
        """The class's rendering word (its first word)."""
        return self.words[self.names.index(cls)][0]

    def words_of(self, cls: str) -> tuple[str, ...]:
        return self.words[self.names.index(cls)]

    def other(self, cls: str) -> str:
        return self.names[1 - self.names.index(cls)]

    def key(self) -> list:
        """What the contrast adds to a stimuli hash: nothing for the default (so its cache keys stay as they were)."""
        if not self.declared:
            return []
        return [list(self.names), [list(w) for w in self.words]] + ([["read"] + list(self.read)] if self.read else [])


def default(names: tuple[str, str]) -> Contrast:
    return Contrast(names, ((names[0],), (names[1],)), False)


def read_directive(path: str | os.PathLike, what: str, keys: frozenset[str] = frozenset({"classes"})
                   ) -> tuple[int, dict] | None:
    """The ``#!`` directive of a JSON Lines file as (line, object), or None. CSV, .txt and Parquet have none.
    ``keys``: the keys it may hold besides the required ``"classes"``."""
    if str(path).lower().rsplit(".", 1)[-1] not in ("jsonl", "json", "ndjson"):
        return None
    found = None
    for i, line in enumerate(read_text(path, what).splitlines(), 1):
        s = line.strip()
        if not s.startswith(DIRECTIVE):
            continue
        if found is not None:
            raise StimuliError(f"{what} {path}, line {i}: a second {DIRECTIVE} directive (the first is on line "
                               f"{found[0]}); declare the contrast once.")
        try:
            obj = json.loads(s[len(DIRECTIVE):])
        except json.JSONDecodeError as e:
            raise StimuliError(f"{what} {path}, line {i}: the {DIRECTIVE} directive is not JSON ({e.msg}); write "
                               f'e.g. {DIRECTIVE} {{"classes": ["she", "he"]}}.') from None
        if not isinstance(obj, dict) or "classes" not in obj or not set(obj) <= set(keys) | {"classes"}:
            extra = (' (and optionally "read": the word every sentence is read at)' if "read" in keys else
                     ' (this file takes no "read": its classes are the words it reads)')
            raise StimuliError(f"{what} {path}, line {i}: the {DIRECTIVE} directive must be a JSON object with the "
                               f'one key "classes"{extra}, e.g. {DIRECTIVE} {{"classes": ["she", "he"]}}; got {s!r}.')
        found = (i, obj)
    return found


def read_contrast(path: str | os.PathLike, what: str, bundled: tuple[str, str], *, words: bool = True) -> Contrast:
    """The file's declared contrast, or the bundled one. ``words=False``: each class is exactly one word (lesion)."""
    d = read_directive(path, what, frozenset({"classes", "read"}) if words else frozenset({"classes"}))
    if d is None:
        return default(bundled)
    line, obj = d
    cls = obj["classes"]
    where = f"{what} {path}, line {line}"
    if "read" in obj:
        return _read_contrast(where, cls, obj["read"])
    example = ('["she", "he"]' if not words else '["she", "he"] or {"animal": ["dog", "cat"], "tool": ["saw"]}')
    if isinstance(cls, list):
        cls = {c: [c] for c in cls} if all(isinstance(c, str) for c in cls) and len(set(cls)) == len(cls) else None
    if not isinstance(cls, dict) or len(cls) != 2:
        raise StimuliError(f"{where}: \"classes\" must name exactly two distinct classes, e.g. {example}; got "
                           f"{obj['classes']!r}.")
    names = tuple(cls)
    for c in names:
        if not _WORD.fullmatch(c) or c in RESERVED:
            raise StimuliError(f"{where}: class name {c!r} must be one word without spaces or brackets and not one "
                               f"of the record fields {sorted(RESERVED)}.")
        ws = cls[c]
        if not isinstance(ws, list) or not ws or not all(isinstance(w, str) and _WORD.fullmatch(w) for w in ws):
            raise StimuliError(f"{where}: class {c!r} must list one or more words (strings without spaces); got "
                               f"{ws!r}.")
        if not words and ws != [c]:
            raise StimuliError(f"{where}: this claim compares two single tokens, so each class is its own word: "
                               f"write {DIRECTIVE} {{\"classes\": [{', '.join(json.dumps(n) for n in names)}]}}.")
    shared = set(cls[names[0]]) & set(cls[names[1]])
    if shared:
        raise StimuliError(f"{where}: the word(s) {sorted(shared)} belong to both classes; the classes must not "
                           f"share words.")
    return Contrast((names[0], names[1]), (tuple(cls[names[0]]), tuple(cls[names[1]])), True)


def _read_contrast(where: str, cls: object, read: object) -> Contrast:
    """``{"classes": [a, b], "read": word or [words]}``: two labels that hold no words of their own; every sentence
    is read at its one occurrence of a ``read`` word (so two classes may share their words)."""
    ok = isinstance(cls, list) and len(cls) == 2 and all(isinstance(c, str) for c in cls) and cls[0] != cls[1]
    if not ok:
        raise StimuliError(f"{where}: with \"read\", \"classes\" is a list of two distinct class names (labels "
                           f"holding no words of their own), e.g. {DIRECTIVE} {{\"classes\": [\"monday\", "
                           f"\"friday\"], \"read\": \"him\"}}; got {cls!r}.")
    for c in cls:
        if not _WORD.fullmatch(c) or c in RESERVED:
            raise StimuliError(f"{where}: class name {c!r} must be one word without spaces or brackets and not one "
                               f"of the record fields {sorted(RESERVED)}.")
    ws = [read] if isinstance(read, str) else read
    if not isinstance(ws, list) or not ws or not all(isinstance(w, str) and _WORD.fullmatch(w) for w in ws) \
            or len(set(ws)) != len(ws):
        raise StimuliError(f"{where}: \"read\" must be a word or a list of distinct words (strings without spaces): "
                           f"the word each sentence is read at; got {read!r}.")
    return Contrast((cls[0], cls[1]), ((cls[0],), (cls[1],)), True, tuple(ws))


def hits(text: str, word: str) -> list[int]:
    """Start offsets of ``word`` as a whole word (case-sensitive; apostrophes count as word characters)."""
    return [m.start() for m in re.finditer(rf"(?<![\w']){re.escape(word)}(?![\w'])", text)]


def find_one(text: str, words: tuple[str, ...]) -> list[tuple[int, str]]:
    """Every (offset, word) of ``words`` in ``text`` (whole words, case-sensitive)."""
    return sorted((i, w) for w in words for i in hits(text, w))


def any_case(text: str, words: tuple[str, ...]) -> list[str]:
    """Which of ``words`` occur in ``text`` in any case (a sentence must not hold the other class's words)."""
    low = text.lower()
    return [w for w in words if hits(low, w.lower())]
