"""Word categories for the Q/K category-selectivity and Q/K RSA claims: load, validate, place on tokens.

Format (``fixtures/README_rsa.md``): a JSON object with ``categories`` (name -> list of words), a ``template``
holding ``{word}`` exactly once, and optional ``extra_templates``. Every problem is a :class:`StimuliError`
that names the file and what to fix. Token positions need the model's tokenizer, so they are checked in a
second step (:func:`word_positions`), which names the word and the model when a word is several tokens.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from mechclaims.errors import StimuliError
from mechclaims.datasets.io import bundled_fixtures
from mechclaims.datasets.io import read_text, stimuli_hash

DEFAULT_PATH = bundled_fixtures() / "rsa_categories.json"
DEFAULT_TEMPLATE = "The next word is {word}"
MIN_CATEGORIES = 2  # the statistics need across-category pairs
MIN_WORDS = 3  # ... and at least 3 within-category pairs per category
MultiToken = Literal["reject", "last"]
_WORD_RE = re.compile(r"^[^\s{}]+$")


@dataclass(frozen=True)
class CategorySet:
    """Validated categories. ``words[i]`` belongs to ``names[labels[i]]``. Canonical order: categories by name, words
    alphabetically within each, so the order of the file never moves a seeded draw or a result. ``zipf``: optional
    word frequency (Zipf scale, log10 per billion words) for the frequency control."""

    categories: dict[str, list[str]]
    template: str
    extra_templates: tuple[str, ...] = ()
    source: str = "<memory>"
    zipf: dict[str, float] = field(default_factory=dict)
    words: list[str] = field(init=False)
    labels: np.ndarray = field(init=False)
    names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", {c: sorted(self.categories[c]) for c in sorted(self.categories)})
        names = list(self.categories)
        words = [w for c in names for w in self.categories[c]]
        labels = np.repeat(np.arange(len(names)), [len(self.categories[c]) for c in names])
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "labels", labels)

    @property
    def templates(self) -> tuple[str, ...]:
        return (self.template,) + tuple(self.extra_templates)

    def texts(self, template: str | None = None) -> list[str]:
        """One text per word (in ``words`` order) from ``template`` (default: the main template)."""
        t = self.template if template is None else _check_template(template, self.source)
        return [t.replace("{word}", w) for w in self.words]

    def hash(self) -> str:
        return stimuli_hash({"categories": self.categories, "templates": list(self.templates), "zipf": self.zipf})

    def frequencies(self) -> np.ndarray | None:
        """Zipf frequency per word (``words`` order), or None when the file gives none for some word."""
        if not all(w in self.zipf for w in self.words):
            return None
        return np.array([self.zipf[w] for w in self.words], float)


def _check_template(t: Any, source: str) -> str:
    if not isinstance(t, str) or t.count("{word}") != 1:
        raise StimuliError(f"{source}: the template {t!r} must be a string holding '{{word}}' exactly once, "
                           f"e.g. {DEFAULT_TEMPLATE!r}.")
    if re.search(r"\{(?!word\})", t):
        raise StimuliError(f"{source}: the template {t!r} has a brace other than '{{word}}'; remove it.")
    return t


def make_category_set(categories: dict[str, Sequence[str]], template: str = DEFAULT_TEMPLATE,
                      extra_templates: Sequence[str] = (), source: str = "<memory>",
                      zipf: dict[str, float] | None = None) -> CategorySet:
    """Validate categories given as data (the same checks a file gets)."""
    if not isinstance(categories, dict) or len(categories) < MIN_CATEGORIES:
        raise StimuliError(f"{source}: 'categories' must map at least {MIN_CATEGORIES} category names to word "
                           f"lists (got {type(categories).__name__} with {len(categories or {})} entries).")
    seen: dict[str, str] = {}
    clean: dict[str, list[str]] = {}
    for name, ws in categories.items():
        if not isinstance(ws, list) or not all(isinstance(w, str) for w in ws):
            raise StimuliError(f"{source}: category {name!r} must be a list of strings.")
        if len(ws) < MIN_WORDS:
            raise StimuliError(f"{source}: category {name!r} has {len(ws)} word(s); it needs at least "
                               f"{MIN_WORDS} (10 or more for useful power) to have within-category pairs. Add "
                               f"words to it, or remove the category.")
        for w in ws:
            if not _WORD_RE.match(w):
                raise StimuliError(f"{source}: category {name!r}: {w!r} is not a single word (no spaces, braces "
                                   f"or empty strings; the template supplies the leading space).")
            if w in seen:
                where = "twice in" if seen[w] == name else f"in both {seen[w]!r} and"
                raise StimuliError(f"{source}: the word {w!r} appears {where} {name!r}; each word must belong "
                                   f"to exactly one category.")
            seen[w] = name
        clean[str(name)] = list(ws)
    zipf = dict(zipf or {})
    bad = [w for w, v in zipf.items() if not isinstance(v, (int, float)) or isinstance(v, bool) or w not in seen]
    if bad:
        raise StimuliError(f"{source}: 'zipf' must map words of the categories to numbers (Zipf frequencies); "
                           f"check {bad[:5]}.")
    return CategorySet(clean, _check_template(template, source),
                       tuple(_check_template(t, source) for t in extra_templates), source,
                       {w: float(v) for w, v in zipf.items()})


def load_categories(path: str | Path | None = None, template: str | None = None) -> CategorySet:
    """Load and validate a categories file (default ``fixtures/rsa_categories.json``).

    ``template`` overrides the file's template (the user's own prompt), e.g. ``"I saw a {word}"``.
    """
    p = Path(path) if path is not None else DEFAULT_PATH
    text = read_text(p, "word-categories file")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise StimuliError(f"word-categories file {p}, line {e.lineno}: malformed JSON ({e.msg}). See "
                           f"fixtures/README_rsa.md for the format.") from None
    if not isinstance(obj, dict) or "categories" not in obj:
        raise StimuliError(f"word-categories file {p}: expected a JSON object with a 'categories' key "
                           f"(name -> list of words); see fixtures/README_rsa.md.")
    extra = obj.get("extra_templates", [])
    if not isinstance(extra, list):
        raise StimuliError(f"word-categories file {p}: 'extra_templates' must be a list of template strings.")
    zipf = obj.get("zipf", {})
    if not isinstance(zipf, dict):
        raise StimuliError(f"word-categories file {p}: 'zipf' must be an object mapping words to Zipf frequencies.")
    return make_category_set(obj["categories"], template or obj.get("template", DEFAULT_TEMPLATE), extra, str(p),
                             zipf)


def word_positions(cs: CategorySet, tokenizer: Any, model_name: str, template: str | None = None,
                   multi_token: MultiToken = "reject") -> tuple[list[list[int]], np.ndarray]:
    """Token ids (with the model's special tokens) and the word's token position, per word.

    The position is that of the token holding the word's last character. A word that the tokenizer splits
    into several tokens is rejected (``multi_token="reject"``, the default) with a message naming the word,
    its pieces and the model, or represented by its last token (``multi_token="last"``, the stated rule).
    A token that reaches outside the word (merged with a neighbour) is always rejected.
    """
    if multi_token not in ("reject", "last"):
        raise ValueError(f"multi_token must be 'reject' or 'last', not {multi_token!r}")
    t = cs.template if template is None else _check_template(template, cs.source)
    pre = t.index("{word}")
    ids_all: list[list[int]] = []
    pos = np.empty(len(cs.words), dtype=int)
    for i, w in enumerate(cs.words):
        text = t.replace("{word}", w)
        start, end = pre, pre + len(w)
        enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        offs = [tuple(o) for o in enc["offset_mapping"]]
        cover = [j for j, (a, b) in enumerate(offs) if b > a and a < end and b > start]
        where = f"{cs.source}: the word {w!r} in {text!r} for model {model_name}"
        if not cover:
            raise StimuliError(f"{where} is covered by no token; is the tokenizer a fast tokenizer?")
        a0, b1 = offs[cover[0]][0], offs[cover[-1]][1]
        if b1 != end or text[a0:start].strip():
            pieces = [text[offs[j][0]:offs[j][1]] for j in cover]
            raise StimuliError(f"{where}: its token(s) {pieces} reach outside the word (merged with a "
                               f"neighbour). Change the template's text next to '{{word}}'.")
        if len(cover) > 1 and multi_token == "reject":
            pieces = [text[offs[j][0]:offs[j][1]] for j in cover]
            raise StimuliError(f"{where} is {len(cover)} tokens {pieces}; every word must be a single token. "
                               f"Replace the word, or pass multi_token='last' to use its last token.")
        ids_all.append(list(enc["input_ids"]))
        pos[i] = cover[-1]
    return ids_all, pos


def n_tokens(cs: CategorySet, tokenizer: Any) -> np.ndarray:
    """Tokens per word in the main template's context (a surface feature for the controls)."""
    t = cs.template
    pre = t.index("{word}")
    out = np.empty(len(cs.words), dtype=int)
    for i, w in enumerate(cs.words):
        enc = tokenizer(t.replace("{word}", w), add_special_tokens=True, return_offsets_mapping=True)
        out[i] = sum(1 for a, b in enc["offset_mapping"] if b > a and a < pre + len(w) and b > pre)
    return out
