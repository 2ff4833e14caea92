"""Library versions, read from the installed packages' metadata: nothing is imported (torch stays unloaded)."""
from __future__ import annotations

import importlib.metadata

LIBRARIES = ("torch", "transformers", "numpy")


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def library_versions() -> dict[str, str]:
    """``{"torch": ..., "transformers": ..., "numpy": ...}`` (equal to each module's ``__version__``)."""
    return {d: version(d) for d in LIBRARIES}
