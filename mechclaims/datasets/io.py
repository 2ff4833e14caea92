"""Stimuli are data, never code: generic readers that validate at the boundary and hash for caches.

Claim-specific formats live in ``mechclaims/datasets/``; they call these readers so every bad file
fails the same way: a :class:`StimuliError` naming the file, the line, and what to fix.
"""
from __future__ import annotations

import codecs
import csv
import logging
import difflib
import glob
import hashlib
import io
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from mechclaims.errors import OptionError, StimuliError

# Stimuli sets a claim reads through ``stimuli_path(NAME, default)``, overridable with ``--mc-stimuli NAME=PATH``.
# Keep in step with the table in fixtures/README.md.
STIMULI_NAMES: dict[str, str] = {
    "passages": "passages.jsonl",
    "ged_pairs": "ged_pairs.jsonl",
    "ged_heldout": "ged_heldout.jsonl",
    "rsa_categories": "rsa_categories.json",
    "lesion_causal": "lesion_causal.jsonl",
    "lesion_masked": "lesion_masked.jsonl",
    "patching_pairs": "patching_pairs.jsonl",
}
_GLOB_OK = frozenset({"ged_heldout"})  # Parquet shards may be given as a directory or a glob
# The bundled sets are under 100 kB. The claims keep activations for every token they read (path length: every
# token at every layer, plus its next-token logits), so time and memory grow with the file: a 10 MB passages file
# ran for over 4 minutes and 3.5 GB on tiny-gpt2 before it was stopped. Past this size a file gets a warning.
LARGE_STIMULI_BYTES = 2_000_000
_LOGGED: set[str] = set()
LOG = logging.getLogger("mechclaims")  # messages the user must see at once; the pytest session shows them live


class StimuliSizeWarning(UserWarning):
    """A stimuli file is large enough to take minutes and gigabytes."""


def warn_if_large(p: Path, size: int, what: str) -> None:
    """A warning for a file past LARGE_STIMULI_BYTES: in pytest's warnings summary (one per file: the warnings
    filter keeps one per message), and at once on the terminal through the ``mechclaims`` logger, which the pytest
    session writes through its terminal reporter (pytest holds warnings to the end, and its fd capture swallows a
    print to stderr while the user waits)."""
    if size <= LARGE_STIMULI_BYTES:
        return
    msg = (f"{what} {p} is {size / 1e6:.1f} MB, past {LARGE_STIMULI_BYTES / 1e6:.0f} MB: the claims keep "
           f"activations for every token they read, so expect minutes and gigabytes (a 10 MB passages file took "
           f"over 4 minutes and 3.5 GB on tiny-gpt2). Progress bars show on a terminal; a sample of the file is "
           f"usually enough.")
    warnings.warn(StimuliSizeWarning(msg), stacklevel=3)
    if str(p) not in _LOGGED:  # once per file and process on the terminal, however often it is read
        _LOGGED.add(str(p))
        LOG.warning(msg)


def check_stimuli_overrides(overrides: Mapping[str, str], names: Iterable[str] | None = tuple(STIMULI_NAMES)
                            ) -> None:
    """Validate ``--mc-stimuli NAME=PATH`` overrides up front: NAME must be a known set and PATH must exist.

    Raises :class:`OptionError` naming the option, the name or path, and the fix. Called by the plugin when it
    reads its options, so a typo is a usage error before any model loads, never a silently ignored override.
    """
    known = None if names is None else list(dict.fromkeys(names))
    for name, path in overrides.items():
        opt = f"--mc-stimuli {name}={path}"
        if known is not None and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise OptionError(f"{opt}: unknown stimuli name {name!r}; the names are "
                              f"{', '.join(known)} (bundled ones: fixtures/README.md; a claim module declares its "
                              f"own in its STIMULI dict).{hint}")
        if not str(path).strip():
            raise OptionError(f"{opt}: no path given; pass the file after '=', e.g. --mc-stimuli "
                              f"{name}=my_{STIMULI_NAMES.get(name, name + '.jsonl')}")
        p = Path(path)
        if p.exists():
            continue
        if name in _GLOB_OK and any(c in str(path) for c in "*?["):
            if glob.glob(str(path)):
                continue
            raise OptionError(f"{opt}: the pattern {path!r} matches no file. Check the path (relative paths are "
                              f"resolved from {Path.cwd()}).")
        raise OptionError(f"{opt}: the file {p} does not exist. Check the path (relative paths are resolved from "
                          f"{Path.cwd()}, the directory you run pytest in).")


def record_id(value: Any, where: str) -> str:
    """A record's id as a string. Ids are strings (whole numbers are accepted and kept as their digits); a list,
    an object, a float or a boolean is a StimuliError naming the record."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise StimuliError(f"{where}: the id {json.dumps(value)[:60]} is a JSON {_json_type(value)}; an id must be "
                           f"a string, e.g. \"pair-7\". Fix the record's id.")
    return str(value).strip()


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {list: "array", dict: "object", float: "number with a fraction", bool: "boolean"}.get(type(v),
                                                                                                type(v).__name__)


def read_text(path: str | Path, what: str = "stimuli file") -> str:
    """Read a UTF-8 text file; missing, unreadable, non-UTF-8 or empty files raise StimuliError. A UTF-8 byte-order
    mark (Windows editors write one) is dropped, as ``utf-8-sig`` does, so it never becomes part of the first record;
    a file past LARGE_STIMULI_BYTES gets one warning."""
    p = Path(path)
    if not p.exists():
        raise StimuliError(f"{what} {p} does not exist. Check the path (relative paths are resolved "
                           f"from the directory you run pytest in).")
    if p.is_dir():
        raise StimuliError(f"{what} {p} is a directory; pass the file inside it.")
    raw = p.read_bytes()
    warn_if_large(p, len(raw), what)
    wide = wide_encoding(raw)
    if wide is not None:
        enc, why = wide
        raise StimuliError(f"{what} {p} is not UTF-8 but {enc} ({why}). Convert it: "
                           f"`iconv -f {enc} -t UTF-8 {p.name} > {p.stem}-utf8{p.suffix}` and pass the new file.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise StimuliError(f"{what} {p} is not UTF-8 (byte {e.start}: {raw[e.start:e.start + 4]!r}). It is in "
                           f"an 8-bit encoding: find which (`file {p.name}`), then re-save it as UTF-8, e.g. for "
                           f"Windows' Western encoding `iconv -f WINDOWS-1252 -t UTF-8 {p.name} > "
                           f"{p.stem}-utf8{p.suffix}`.") from None
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        col = nul - (text.rfind("\n", 0, nul) + 1) + 1
        raise StimuliError(f"{what} {p}, line {line}: a NUL byte (\\x00) at column {col}. Text stimuli hold none: "
                           f"it would reach the tokenizer as a character and change the numbers. Remove it (e.g. "
                           f"`tr -d '\\000' < {p.name} > {p.stem}-clean{p.suffix}`), or check that the file is "
                           f"the text you meant (not a binary file).")
    if not text.strip():
        raise StimuliError(f"{what} {p} is empty. It needs at least one record; see fixtures/README.md "
                           f"for the format.")
    return text


# UTF-32 LE first: its byte-order mark begins with UTF-16 LE's.
_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
         (codecs.BOM_UTF16_BE, "UTF-16"))


def wide_encoding(raw: bytes) -> tuple[str, str] | None:
    """(iconv's name of the encoding, how it was told) for a UTF-16/UTF-32 file, by its byte-order mark, or, with
    none, by NUL bytes at every other position (ASCII text in UTF-16); None for anything else."""
    for bom, enc in _BOMS:
        if raw.startswith(bom):
            return enc, f"it starts with the {enc} byte-order mark {bom.hex(' ')}"
    head = raw[:4096]
    if len(head) >= 8 and head.count(0) >= len(head) // 3:
        odd, even = head[1::2].count(0), head[0::2].count(0)
        if max(odd, even) >= 0.8 * (len(head) // 2):  # ASCII in UTF-16: one byte of every two is NUL
            enc = "UTF-16LE" if odd > even else "UTF-16BE"
            return enc, "no byte-order mark, but every other byte is NUL"
    return None


def read_jsonl(path: str | Path, required: Sequence[str], what: str = "stimuli file") -> list[dict[str, Any]]:
    """Read JSON Lines (one object per line, ``#`` comments and blank lines allowed).

    Every record must hold the ``required`` keys with non-empty values.
    """
    return [r for _, r in read_jsonl_numbered(path, required, what)]


def read_jsonl_numbered(path: str | Path, required: Sequence[str], what: str = "stimuli file"
                        ) -> list[tuple[int, dict[str, Any]]]:
    """As :func:`read_jsonl`, with each record's line number in the file (for error messages)."""
    text = read_text(path, what)
    rows: list[tuple[int, dict[str, Any]]] = []
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            raise StimuliError(f"{what} {path}, line {i}: malformed JSON ({e.msg} at column {e.colno}). "
                               f"Each line must be one JSON object.") from None
        if not isinstance(obj, dict):
            raise StimuliError(f"{what} {path}, line {i}: expected a JSON object with keys "
                               f"{list(required)}, got {type(obj).__name__}.")
        check_keys(obj, required, path, i, what)
        rows.append((i, obj))
    if not rows:
        raise StimuliError(f"{what} {path} has no records (only comments or blank lines).")
    return rows


def read_csv(path: str | Path, required: Sequence[str], what: str = "stimuli file") -> list[dict[str, str]]:
    """Read a CSV with a header row holding at least the ``required`` columns."""
    return [r for _, r in _read_csv(path, required, what)]


def _read_csv(path: str | Path, required: Sequence[str], what: str) -> list[tuple[int, dict[str, str]]]:
    text = read_text(path, what)
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise StimuliError(f"{what} {path}: missing column(s) {missing}; the header is {header}. "
                               f"The first row must name the columns {list(required)}.")
        rows = []
        for i, row in enumerate(reader, 2):
            if None in row:
                raise StimuliError(f"{what} {path}, line {i}: more fields than the header has columns "
                                   f"(quote fields that contain commas).")
            check_keys(row, required, path, i, what)
            rows.append((i, row))
    except csv.Error as e:
        raise StimuliError(f"{what} {path}: malformed CSV ({e}).") from None
    if not rows:
        raise StimuliError(f"{what} {path} has a header but no rows.")
    return rows


def read_records(path: str | Path, required: Sequence[str], what: str = "stimuli file") -> list[dict[str, Any]]:
    """Dispatch on the extension: ``.jsonl``/``.json`` -> JSON Lines, ``.csv`` -> CSV."""
    return [r for _, r in read_records_numbered(path, required, what)]


def read_records_numbered(path: str | Path, required: Sequence[str], what: str = "stimuli file"
                          ) -> list[tuple[int, dict[str, Any]]]:
    """As :func:`read_records`, with each record's line number in the file (for error messages)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return read_jsonl_numbered(path, required, what)
    if suffix == ".csv":
        return _read_csv(path, required, what)
    raise StimuliError(f"{what} {path}: unsupported extension {suffix!r}; use .jsonl or .csv.")


def check_keys(obj: dict, required: Iterable[str], path: Any, line: int, what: str) -> None:
    for k in required:
        if k not in obj:
            raise StimuliError(f"{what} {path}, line {line}: missing field {k!r} (has {sorted(obj)}). Every "
                               f"record needs the fields {list(required)}.")
        v = obj[k]
        if v is None or (isinstance(v, str) and not v.strip()):
            raise StimuliError(f"{what} {path}, line {line}: field {k!r} is empty. Fill it in or delete the "
                               f"record.")


def stimuli_hash(obj: Any) -> str:
    """Stable short hash of any JSON-serialisable stimuli, for activation-cache keys."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def bundled_fixtures() -> Path:
    """The bundled stimuli: ``mechclaims/fixtures`` in an installed wheel, ``<repo>/fixtures`` in a checkout."""
    pkg = Path(__file__).resolve().parents[1]  # the mechclaims package
    return pkg / "fixtures" if (pkg / "fixtures").is_dir() else pkg.parent / "fixtures"
