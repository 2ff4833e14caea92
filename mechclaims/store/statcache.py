"""On-disk statistics cache: a claim's per-layer results (Verdicts, null draws) computed once per input.

A `-k` re-run of one layer of the lesion claim needs the Bonferroni family of all its layers, and a second run of
the suite on the same model recomputes every null. Both read the stored results instead. An entry is keyed by
everything that can change the numbers:

- the model's weight fingerprint, dtype and device type, and the torch/transformers/numpy versions (as for the
  activation cache, :mod:`mechclaims.store.actcache`, whose store it reuses: checksummed, atomic, locked);
- the claim's own inputs, passed by the claim as ``parts``: stimuli hashes, seed, draw counts, layer;
- the code: a hash of every ``mechclaims/**/*.py`` file and of the claim module itself, so that an edit to a
  statistic, a constant in a claim file or a bug fix can never reuse an old result.

A statistic that reads only captured arrays is keyed on what it reads instead (``ctx.stored(fn, ..., reads=...)``,
a *content key*): a sha256 of exactly those arrays (dtype, shape, bytes; ``actcache.content_digest``), the model's
name, ``parts``, the code hash and :func:`statistics_environment` (the versions of the libraries that compute the
statistic from the arrays: numpy, scipy, scikit-learn, statsmodels). It holds no weight fingerprint, dtype, device,
torch or transformers version: the arrays carry those. So a transformers or torch release recomputes the captures
(their key holds the versions), and a statistic whose arrays came back bit-identical is reused. Statistics that
read the model (lesion, patching, the rotated-weights null, which runs W_Q/W_K through torch) get a *model key*:
the weight fingerprint, the model's forward fingerprint (:mod:`mechclaims.forward.probe`: the clean outputs at every
residual/attention/MLP site and the logits under one probe ablation, on a fixed probe text), dtype, device, ``parts``,
the code hash and :func:`statistics_environment`, without the torch/transformers versions. A release that leaves the
probe bit-identical reuses them, under verification: a seeded sample of the entries read is recomputed and must be
bit-identical, and a mismatch recomputes every remaining one of the session (:mod:`mechclaims.store.verify`).

Modes (``--mc-statistics-cache``): ``on`` (default: read and write), ``off`` (never touch the disk), ``refresh``
(recompute and overwrite). ``make bench``'s "recomputed" row runs with ``refresh``. The environment variable
``MECHCLAIMS_STATISTICS_CACHE`` sets the default (the repository's own tests of repeatability set it to ``off``).

Falsified by: a cached run whose numbers differ from a recomputed one (tests/test_statcache.py checks equality on
a tiny model, and that a changed seed, stimuli file or code hash misses).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
from pathlib import Path

ENV = "MECHCLAIMS_STATISTICS_CACHE"
PACKAGE = Path(__file__).resolve().parents[1]  # the mechclaims package
MAPPED = ("claims", "fixtures", "baselines", "statistics")  # pyproject package-dir: repository folders in a wheel


@functools.lru_cache(maxsize=None)
def code_version(*extra: str) -> str:
    """sha256 over the mechclaims package's sources and ``extra`` files (the claim module), 16 hex digits. Read once
    per process: the code a run imported is the code its results came from, even if a file is edited meanwhile."""
    h = hashlib.sha256()
    # The folders a wheel maps in from the repository (claims/, fixtures/, baselines/, statistics/) are not the
    # library: left out, so that a wheel and a checkout of one commit hash alike (the claim module comes in ``extra``)
    files = sorted(f for f in PACKAGE.rglob("*.py") if f.relative_to(PACKAGE).parts[0] not in MAPPED)
    files += [Path(e).resolve() for e in extra]
    for f in files:
        h.update(str(f.relative_to(PACKAGE) if f.is_relative_to(PACKAGE) else f.name).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def statistics_environment() -> tuple[tuple[str, str], ...]:
    """The versions of the libraries that compute a statistic from its arrays (stats/, verdict/): in a content key,
    since a LAPACK or RNG change there moves a number even when the arrays did not. Not torch or transformers."""
    out = []
    for dist in ("numpy", "scipy", "scikit-learn", "statsmodels"):
        try:
            out.append((dist, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            out.append((dist, "absent"))
    return tuple(out)


def default_mode() -> str:
    return os.environ.get(ENV, "").strip().lower() or "on"
