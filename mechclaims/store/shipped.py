"""The statistics store shipped with the repository (``statistics/``; ``mechclaims/statistics`` in a wheel).

A fresh clone's first ``make claims`` would otherwise recompute every statistic of the default model (7-9 minutes on
2 cores). The shipped store holds the entries that one claims run on the bundled models read, under the same keys as
the user's store (:mod:`mechclaims.store.statcache`): content keys on the captured arrays, model keys on the weights
and forward fingerprint, both with the code hash. On a local miss the statistics store looks here
(:class:`mechclaims.store.actcache.ActivationStore`, ``shipped=``), checks the entry's checksum and key, copies it into
the local store and reuses it, under the same verification as any reuse (a 5% sample of the model-keyed ones is
recomputed and must be bit-identical). Nothing here is trusted that the local store would not trust: an entry
whose captured arrays, weights, forward, code or statistics libraries differ has another key and is never read.

``python -m mechclaims.store.shipped --since EPOCH --models smollm2-135m --store DIR [--dest statistics]`` copies the entries that
a run touched since ``EPOCH`` (read or written: the store sets a manifest's mtime on each use) into ``dest`` and
writes ``MANIFEST.json`` (code hash, models, entries, bytes); ``make ship-statistics`` runs the claims and this.
The shipped entries go stale when the code hash changes (any edit under ``mechclaims/`` or to a claim module): then
the first run recomputes, as before, and says so; ``tests/test_shipped_statistics.py`` checks the mechanism and
reports whether the committed store matches this checkout.
Falsified by: a first run from a fresh clone whose outcomes differ from a ``--mc-statistics-cache off`` run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from mechclaims.store.statcache import code_version

PKG = Path(__file__).resolve().parents[1]
MANIFEST = "MANIFEST.json"
ENV = "MECHCLAIMS_SHIPPED_STATISTICS"


def shipped_dir(honour_env: bool = True) -> Path | None:
    """``mechclaims/statistics`` in a wheel, ``<checkout>/statistics`` in the repository; None when neither exists,
    or when ``$MECHCLAIMS_SHIPPED_STATISTICS`` is ``off`` (``make test`` sets it: the tests recompute everything)."""
    if honour_env and os.environ.get(ENV, "").strip().lower() in ("off", "0", "no"):
        return None
    for d in (PKG / "statistics", PKG.parent / "statistics"):
        if (d / MANIFEST).is_file():
            return d
    return None


def manifest(d: Path | None = None) -> dict:
    """The shipped store's manifest ({} when there is none)."""
    d = shipped_dir() if d is None else d
    return json.loads((d / MANIFEST).read_text()) if d is not None and (d / MANIFEST).is_file() else {}


def entries_since(store: Path, since: float, models: list[str]) -> list[Path]:
    """Manifests in ``store`` used (read or written) at or after ``since``, of ``models`` and their random-weight
    copies (the file name starts with the model's name)."""
    prefixes = tuple(f"{m}{sep}" for m in models for sep in ("-", "+"))
    return sorted(m for m in store.glob("*.json") if m.name.startswith(prefixes) and m.stat().st_mtime >= since)


def ship(store: Path, dest: Path, since: float, models: list[str], claim_files: list[Path]) -> dict:
    """Replace the entries in ``dest`` (its .npz and .json files; anything else, e.g. its README, stays) with the
    entries of ``models`` used since ``since``; returns the manifest written."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in [*dest.glob("*.npz"), *dest.glob("*.json")]:
        old.unlink()
    n, size = 0, 0
    for man in entries_since(store, since, models):
        npz = man.with_suffix(".npz")
        if not npz.exists():
            continue
        for f in (npz, man):
            shutil.copyfile(f, dest / f.name)
            size += f.stat().st_size
        n += 1
    meta = {"models": models, "entries": n, "bytes": size, "made": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "code": {f.name: code_version(str(f)) for f in claim_files}}
    (dest / MANIFEST).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return meta


def stale(claim_files: list[Path], d: Path | None = None) -> list[str]:
    """The claim modules whose shipped entries were made by other code than this checkout's (empty: all current)."""
    code = manifest(d).get("code", {})
    return [f.name for f in claim_files if code.get(f.name) != code_version(str(f))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mechclaims.store.shipped")
    ap.add_argument("--since", type=float, required=True, help="epoch seconds: the start of the claims run to ship")
    ap.add_argument("--models", required=True, help="comma-separated model names")
    ap.add_argument("--store", required=True, help="the statistics store the run used (<cache dir>/statistics)")
    ap.add_argument("--dest", default=str(PKG.parent / "statistics"))
    a = ap.parse_args(argv)
    store = Path(a.store)
    claims = sorted((PKG.parent / "claims").glob("test_*.py"))
    meta = ship(store, Path(a.dest), a.since, a.models.split(","), claims)
    print(f"shipped {meta['entries']} statistics ({meta['bytes'] / 1e6:.1f} MB) of {', '.join(meta['models'])} into "
          f"{a.dest}", flush=True)
    return 0 if meta["entries"] else 1


if __name__ == "__main__":
    sys.exit(main())
