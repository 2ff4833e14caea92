"""Figures. One module per claim, one function per figure kind, all saving through :func:`save_figure`."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless everywhere: CI, xdist workers, the GPU box
import matplotlib.pyplot as plt  # noqa: E402

from mechclaims.store.diskio import atomic_write  # noqa: E402



def save_figure(fig: "plt.Figure", path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG, whole or not at all (rendered in memory, then temp file + rename), close it, and
    return the path. A full or read-only disk raises ArtifactsWriteError naming the file and the fix."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=dpi, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return atomic_write(path, buf.getvalue(), fix="pass a writable directory with --mc-artifacts-dir (or the "
                                                   "artifacts_dir ini option)")
