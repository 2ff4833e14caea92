"""Names become path components here, and only here.

Model names (``..``, ``../x``, ``/path/to/model``, ``org/name``), test ids (``test_x[a/b-L3]``) and stimuli names
end up in file names: artifact folders, baselines, the activation cache, the cross-model files, the version matrix.
:func:`safe_component` turns any such name into one component that cannot leave its directory; :func:`inside`
joins sanitized components under a root.

Rules: every character other than a word character, ``.``, ``+`` or ``-`` becomes ``_`` (so no separator survives); a
name made only of dots (``.``, ``..``) or empty gets a leading ``_``; a name that had to change gets a short hash of
the original appended, so two different names (``a/b`` and ``a_b``) never share a folder; and a long name is cut,
keeping the hash, below the 255-byte file-name limit. A clean name (``smollm2-135m``, ``tiny-gpt2-L3``) is kept
as it is, so existing baselines keep their paths.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

_BAD = re.compile(r"[^\w.+-]")
MAX_BYTES = 150  # well under NAME_MAX (255 bytes), leaving room for suffixes like ".yml" or ".npz.<rand>.tmp"


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def safe_component(name: object) -> str:
    """One path component for ``name`` that stays inside the directory it is joined to (see module docstring)."""
    raw = str(name)
    s = _BAD.sub("_", raw)
    if s.strip(".") == "":
        s = "_" + s  # "", ".", ".." would name the directory itself or its parent
    if s != raw:
        s = f"{s}-{_digest(raw)}"
    if len(s.encode("utf-8")) > MAX_BYTES:
        h = _digest(raw)
        cut = s.encode("utf-8")[:MAX_BYTES - len(h) - 1].decode("utf-8", "ignore")
        s = f"{cut}-{h}"
    return s


def inside(root: str | Path, *names: object) -> Path:
    """``root / safe_component(n1) / safe_component(n2) ...``: never above ``root``, whatever the names hold."""
    return Path(root).joinpath(*(safe_component(n) for n in names))
