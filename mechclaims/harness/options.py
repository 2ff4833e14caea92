"""Option values checked at the boundary: every bad value is an OptionError naming the option and the fix.

The plugin turns an OptionError raised while it configures into a pytest usage error (exit 4, no traceback), so
nothing has run and nothing was written when a value is wrong. Upper bounds keep a typo from allocating hundreds of
GiB (``--mc-permutations 1000000000``) or expanding a range of 10^11 layers.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from mechclaims.errors import OptionError

SEED_MAX = 2**32 - 1  # numpy's legacy RandomState and scikit-learn's random_state take 0 .. 2**32-1; torch more
MIN_DRAWS = 20  # fewer cannot give a permutation p-value below 0.05
# The nulls are held whole: the path-length null is permutations x tokens floats (20,000 x 3,189 = 0.5 GB), RSA's
# permutations x word pairs; 20,000 draws resolve p = 5e-5, far below the Bonferroni alpha over 2 x 30 layers.
MAX_PERMUTATIONS = 20_000
MAX_NULL_SETS = 10_000  # each lesion null set is a forward pass per held-out prompt
MAX_KEEP_RUNS = 10_000
LAYER_SYNTAX = "'all' or layers and ranges separated by commas, e.g. '0,5,10-12'"


def integer(opt: str, value: object, lo: int, hi: int, why: str = "") -> int:
    """``value`` as an int in [lo, hi], or an OptionError naming ``opt``, the range and why it is bounded."""
    s = str(value).strip()
    if not re.fullmatch(r"[+-]?\d+", s):
        raise OptionError(f"{opt} {value!r}: not an integer; pass a whole number from {lo:,} to {hi:,}"
                          f"{f' ({why})' if why else ''}.")
    n = int(s)
    if not lo <= n <= hi:
        bound = f"at least {lo:,}" if n < lo else f"at most {hi:,}"
        raise OptionError(f"{opt} {n}: {bound}; pass a whole number from {lo:,} to {hi:,}"
                          f"{f' ({why})' if why else ''}.")
    return n


def seed(value: object) -> int:
    return integer("--mc-seed", value, 0, SEED_MAX, "numpy, scikit-learn and torch all accept seeds in that range")


MIN_HELDOUT_PER_LABEL = 5  # mechclaims.datasets.pronouns: the Welch t-test and bootstrap need 5 per label
MAX_HELDOUT = 1_000_000


def ged_heldout_n(value: object) -> int | None:
    """``--mc-ged-heldout-n``: ``all`` (None: every window, the default) or n windows per label, seeded sample."""
    if value is None or str(value).strip().lower() in ("", "all"):
        return None
    return integer("--mc-ged-heldout-n", value, MIN_HELDOUT_PER_LABEL, MAX_HELDOUT,
                   f"held-out windows per label for the GED claim, or 'all'; the Welch t-test and bootstrap need "
                   f"at least {MIN_HELDOUT_PER_LABEL}")


def permutations(value: object) -> int:
    return integer("--mc-permutations", value, MIN_DRAWS, MAX_PERMUTATIONS,
                   f"at least {MIN_DRAWS} for a p-value below 0.05; the nulls are held in memory, and "
                   f"{MAX_PERMUTATIONS:,} already resolve p = {1 / MAX_PERMUTATIONS:.0e}")


def lesion_null_sets(value: object) -> int:
    return integer("--mc-lesion-null-sets", value, MIN_DRAWS, MAX_NULL_SETS,
                   f"at least {MIN_DRAWS} for a p-value below 0.05; each set costs a forward pass per prompt")


def keep_runs(value: object) -> int:
    return integer("--mc-keep-runs", value, 0, MAX_KEEP_RUNS, "0 keeps every run")


def parse_layers(spec: str) -> list[tuple[int, int]] | None:
    """``'all'`` -> None; ``'0,5,10-12'`` -> [(0, 0), (5, 5), (10, 12)]. Syntax only (no layer count needed)."""
    s = str(spec).strip()
    if s in ("", "all"):
        return None
    out = []
    for part in s.split(","):
        m = re.fullmatch(r"\s*(\d{1,9})\s*(?:-\s*(\d{1,9})\s*)?", part)
        if not m:
            hint = ("an empty item (two commas in a row, or a trailing comma)" if not part.strip() else
                    "a negative layer (layers count from 0)" if part.strip().startswith("-") else
                    "a number too long to be a layer" if re.fullmatch(r"\s*\d+\s*(-\s*\d+\s*)?", part) else
                    f"{part.strip()!r}")
            raise OptionError(f"--mc-layers {spec!r}: cannot read {hint}; use {LAYER_SYNTAX}.")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise OptionError(f"--mc-layers {spec!r}: the range {a}-{b} runs backwards; write it low-high, e.g. "
                              f"'{b}-{a}'.")
        out.append((a, b))
    return out


def layers_for(spec: str, n_layers: int) -> list[int]:
    """The selected layers that exist in a model with ``n_layers`` layers (never expands past ``n_layers``)."""
    ranges = parse_layers(spec)
    if ranges is None:
        return list(range(n_layers))
    return sorted({l for a, b in ranges for l in range(a, min(b, n_layers - 1) + 1)})


def check_layers(spec: str, n_layers: dict[str, int]) -> None:
    """Every selected layer must exist in at least one model, and every model must keep at least one layer."""
    ranges = parse_layers(spec)
    if ranges is None or not n_layers:
        return
    deepest = max(n_layers.values())
    top = max(b for _, b in ranges)
    counts = ", ".join(f"{m} has {n} (0-{n - 1})" for m, n in n_layers.items())
    if top >= deepest:
        raise OptionError(f"--mc-layers {spec!r}: layer {top} does not exist: {counts}. Pick layers below "
                          f"{deepest}, or 'all'.")
    empty = [m for m, n in n_layers.items() if not layers_for(spec, n)]
    if empty:
        raise OptionError(f"--mc-layers {spec!r} selects no layer of {', '.join(empty)} ({counts}). Pick layers every "
                          f"model has, or run those models separately.")


def writable_dir(opt: str, path: str | Path, create: bool = True) -> Path:
    """``path`` exists (created if ``create``) and a file can be written in it; else an OptionError."""
    p = Path(path).expanduser()
    try:
        if create:
            p.mkdir(parents=True, exist_ok=True)
        if not p.is_dir():
            raise NotADirectoryError(20, "not a directory")
        probe = p / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OptionError(f"{opt} {p} cannot be written ({e.strerror or e}); pass a writable directory.") from None
    return p


def worker_count() -> int:
    """pytest-xdist's worker count from ``PYTEST_XDIST_WORKER_COUNT`` (0 without xdist); a value that is not a
    whole number is an OptionError naming the variable, never an INTERNALERROR."""
    raw = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "").strip()
    if not raw:
        return 0
    try:
        n = int(raw)
    except ValueError:
        raise OptionError(f"PYTEST_XDIST_WORKER_COUNT={raw!r} is not a whole number; pytest-xdist sets it itself, so "
                          f"unset it (`unset PYTEST_XDIST_WORKER_COUNT`) and pass -n N instead.") from None
    return max(0, n)
