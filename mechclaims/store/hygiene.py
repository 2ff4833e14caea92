"""Store hygiene: what the activation and statistics stores hold, and least-recently-used eviction to a size budget.

An entry is a manifest (``<stem>-<digest>.json``), its arrays (``.npz``) and its lock (``.lock``); its last use is
the manifest's mtime, which :class:`mechclaims.store.actcache.DiskCache` touches on every hit. ``prune`` removes whole
entries, oldest use first, until the store fits its budget; an entry whose lock another process holds is skipped.
``mechclaims cache info`` and ``mechclaims cache prune`` are the command line; every run ends by pruning each store
to its budget (``MECHCLAIMS_CACHE_BUDGET_ACTIVATIONS`` / ``_STATISTICS``, e.g. ``4G``, ``500M``; ``0`` disables).
Falsified by a pruned store above its budget, a removed entry that was used more recently than a kept one, or half an
entry left behind.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

STORES = ("activations", "statistics")
DEFAULT_BUDGET = {"activations": 4 * 2**30, "statistics": 512 * 2**20}  # bytes; the statistics store was 69 MB a day
PARTS = (".npz", ".json")


@dataclass(frozen=True)
class Entry:
    manifest: Path
    size: int
    last_used: float

    def files(self) -> list[Path]:
        return [self.manifest.with_name(self.manifest.stem + ext) for ext in (*PARTS, ".lock")]


def parse_size(text: str) -> int:
    """``"4G"``, ``"500M"``, ``"123456"`` (bytes), ``"0"``: bytes; a clear error otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?\s*", str(text))
    if not m:
        raise ValueError(f"size {text!r}: use a number of bytes with an optional K, M, G or T suffix, e.g. 4G")
    return int(float(m.group(1)) * 1024 ** "_KMGT".index(m.group(2).upper() or "_"))


def budget(store: str) -> int:
    env = os.environ.get(f"MECHCLAIMS_CACHE_BUDGET_{store.upper()}")
    return parse_size(env) if env else DEFAULT_BUDGET[store]


def entries(root: Path) -> list[Entry]:
    """Every complete entry under ``root``, least recently used first."""
    out = []
    for man in root.glob("*.json") if root.is_dir() else []:
        try:
            size = sum(p.stat().st_size for p in (man, man.with_suffix(".npz")) if p.exists())
            out.append(Entry(man, size, man.stat().st_mtime))
        except OSError:
            continue  # removed meanwhile by another process
    return sorted(out, key=lambda e: e.last_used)


def info(cache_root: Path) -> dict[str, dict[str, float]]:
    """Per store: entries, bytes, budget, oldest and newest use (epoch seconds)."""
    out = {}
    for s in STORES:
        es = entries(cache_root / s)
        out[s] = {"entries": len(es), "bytes": sum(e.size for e in es), "budget": budget(s),
                  "oldest_use": es[0].last_used if es else None, "newest_use": es[-1].last_used if es else None}
    return out


def prune(root: Path, max_bytes: int) -> tuple[int, int]:
    """Remove least-recently-used entries until ``root`` holds at most ``max_bytes``; returns (entries, bytes)
    removed. ``max_bytes`` 0 disables. An entry in use (its lock held) is skipped."""
    es = entries(root)
    total, removed, freed = sum(e.size for e in es), 0, 0
    if max_bytes <= 0:
        return 0, 0
    for e in es:
        if total <= max_bytes:
            break
        try:
            with FileLock(str(e.files()[-1]), timeout=0):
                for f in e.files()[:2]:
                    f.unlink(missing_ok=True)
        except (Timeout, OSError):
            continue
        e.files()[-1].unlink(missing_ok=True)
        total, removed, freed = total - e.size, removed + 1, freed + e.size
    return removed, freed


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
