"""Figures. One module per claim, one function per figure kind, all saving through :func:`save_figure`."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless everywhere: CI, xdist workers, the GPU box
import matplotlib.pyplot as plt  # noqa: E402

from ..errors import OptionError  # noqa: E402


def save_figure(fig: "plt.Figure", path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` atomically as PNG (temp file + rename) and close it; returns the path."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        os.replace(tmp, p)
    except OSError as e:
        raise OptionError(f"cannot write the figure {p}: {e.strerror}. Pass a writable directory with "
                          f"--artifacts-dir (or the artifacts_dir ini option).") from None
    finally:
        plt.close(fig)
    return p
