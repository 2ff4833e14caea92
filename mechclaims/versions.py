"""Library versions, read from the installed packages' metadata: nothing is imported (torch stays unloaded)."""
from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

LIBRARIES = ("torch", "transformers", "numpy")


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def library_versions() -> dict[str, str]:
    """``{"torch": ..., "transformers": ..., "numpy": ...}`` (equal to each module's ``__version__``)."""
    return {d: version(d) for d in LIBRARIES}


def git_commit(where: str | Path) -> str | None:
    """The commit checked out at ``where`` (short hash, ``+dirty`` with uncommitted changes), None outside git: the
    data run's commit that recorded outcomes cite (mechclaims.verdict.design)."""
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
