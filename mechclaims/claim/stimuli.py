"""Stimuli sets declared once: a name (what ``--mc-stimuli NAME=PATH`` overrides), a default path, a loader and
how the loaded set is hashed (the key of every capture and statistic that reads it).

A claim module declares ``STIMULI = {"ged_pairs": StimuliSet(...), ...}`` (plain paths still work: they are read
as text); ``ctx.stimuli("ged_pairs")`` returns the loaded set, parsed once per file content and loader arguments.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mechclaims.datasets.io import stimuli_hash


@dataclass(frozen=True)
class StimuliSet:
    """``loader(path, **kwargs)`` parses the file; ``hasher(loaded)`` names its content (default: ``.hash()`` of
    the loaded object when it has one, else a hash of the file's bytes)."""

    default: str | Path
    loader: Callable[..., Any]
    hasher: Callable[[Any], str] | None = None
    kwargs: tuple[tuple[str, Any], ...] = field(default=())

    def load(self, path: Path, **extra: Any) -> Any:
        return self.loader(path, **dict(self.kwargs), **extra)

    def content_hash(self, loaded: Any, path: Path) -> str:
        if self.hasher is not None:
            return self.hasher(loaded)
        h = getattr(loaded, "hash", None)
        if callable(h):
            return str(h())
        return file_digest(path)


def file_digest(path: Path) -> str:
    """sha256 of a file (or of a folder's files in name order), or the path itself when it does not exist (the
    loader then says what is wrong with it)."""
    p = Path(path)
    if p.is_file():
        return hashlib.sha256(p.read_bytes()).hexdigest()
    if p.is_dir():
        return stimuli_hash({f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(p.iterdir())
                             if f.is_file()})
    return str(p)
