"""Verified reuse: statistics that read the model are reused on a forward fingerprint, and a sample is recomputed.

A statistic keyed on the model's forward (``"forward"`` in its key: lesion, patching, the rotated-weights null; see
:mod:`mechclaims.forward.probe`) holds no torch or transformers version, so a library release that leaves the probe
bit-identical reuses it. The probe cannot see everything a statistic runs (another kernel for another batch shape,
a changed intervention path). So each session recomputes a sample of the entries it reuses and requires the
recomputed value to encode to the same tree and bit-identical arrays (:func:`mechclaims.store.actcache.
same_encoding`):

- the sample: an entry is drawn when ``sha256(seed | UTC date | its stored key)`` falls below ``RATE`` (5%), so the
  same entries are drawn by every run of one day with one seed, whatever else the run selects, and another 5% the
  next day (with a fixed key alone, the same 5% were rechecked on every run and the other 95% never: after 30 daily
  runs an entry has now been left unchecked with probability 0.95^30 = 0.21, after 90 with 0.01); and the first
  reused entry of a session is always checked when no entry was drawn before it, so a session that reuses any is
  checked at least once;
- a mismatch: the recomputed value is used and stored, a :class:`ReuseMismatchWarning` names the entry, and every
  remaining model-keyed entry of the session is recomputed instead of read ("recompute everything, and say so"; the
  terminal line says it too).

Falsified by: a stored model-keyed statistic that differs from its recomputation and is reused without a warning in
a session where it was drawn (tests/test_verified_reuse.py plants one).
"""
from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any

from mechclaims.errors import CacheWarning

RATE = 0.05


class ReuseMismatchWarning(CacheWarning):
    """A reused statistic differed from its recomputation: the run recomputes every model-keyed statistic."""


class ReuseCheck:
    """The session's verification state: which reused entries to recompute, and what the recomputations found."""

    def __init__(self, seed: int = 0, rate: float = RATE, salt: str | None = None):
        # ``salt``: what rotates the sample (default: today's UTC date; a test pins it)
        self.seed, self.rate = seed, rate
        self.salt = datetime.datetime.now(datetime.timezone.utc).date().isoformat() if salt is None else salt
        self.verified = 0  # reused entries recomputed and found bit-identical
        self.mismatched: list[str] = []  # entries whose recomputation differed
        self.reused = 0  # model-keyed entries read from the disk this session

    @property
    def distrust(self) -> bool:
        """After a mismatch: recompute (and overwrite) every remaining model-keyed entry of the session."""
        return bool(self.mismatched)

    def score(self, stored_key: dict[str, Any]) -> float:
        """Uniform in [0, 1), a function of the seed, the salt and the key only (stable across the runs and selections
        of one day)."""
        h = hashlib.sha256(f"{self.seed}|{self.salt}|{json.dumps(stored_key, sort_keys=True)}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2 ** 64

    def wants(self, stored_key: dict[str, Any]) -> bool:
        """Whether to recompute this reused entry: drawn by :meth:`score`, or the session's first with none drawn."""
        first = self.reused == 0 and self.verified == 0
        self.reused += 1
        return first or self.score(stored_key) < self.rate

    def mismatch(self, where: str) -> ReuseMismatchWarning:
        self.mismatched.append(where)
        return ReuseMismatchWarning(
            f"the stored statistic {where} differs from its recomputation on this model and these library versions "
            f"although its weights and forward fingerprint match: using the recomputed value, and recomputing every "
            f"remaining statistic that reads the model in this run. To recompute the whole store: "
            f"--mc-statistics-cache refresh.")
