"""The converted-weights cache: one directory per converted model, built once under a lock, checksummed.

A cache directory is valid only if its MANIFEST.json exists and every file's sha256 matches. It is built in a temp
directory that is renamed into place, so a killed run never leaves half a cache. A read-only or full cache dir
gives one CacheWarning and a build into a temp dir for this process only.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

from filelock import FileLock

from mechclaims.errors import CacheWarning, ModelError
from mechclaims.store.diskio import cannot_write, file_sha256, sweep_orphans

# A conversion killed with SIGKILL (or out of memory) leaves ``<name>.tmp<pid>/`` (517 MB for smollm2): swept the
# first time a process touches the cache root, not only on a cache miss (which a warm cache never has).
CONVERSION_ORPHANS = ("*.tmp[0-9]*",)
_SWEPT: set[Path] = set()


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """Where converted weights and activation caches live: option > $MECHCLAIMS_CACHE > ~/.cache/mechclaims.

    The first call for a root in a process removes the conversion folders that killed runs left there over an hour
    ago (:func:`mechclaims.store.diskio.sweep_orphans`: never raises, never touches a younger one)."""
    root = Path(override or os.environ.get("MECHCLAIMS_CACHE") or Path.home() / ".cache" / "mechclaims").expanduser()
    if root not in _SWEPT:
        _SWEPT.add(root)
        sweep_orphans(root, CONVERSION_ORPHANS)
    return root


def atomic_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """Build a directory under a lock, in a temp dir, then rename: a killed run never leaves a half cache."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if cache_ok(final):
            return final
        sweep_orphans(final.parent, ("*.tmp[0-9]*",))  # conversions killed (SIGKILL) over an hour ago
        if final.exists():
            warnings.warn(f"mechclaims: the cache {final} is incomplete or corrupted; rebuilding it.")
            shutil.rmtree(final, ignore_errors=True)
        tmp = final.with_name(final.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            write_manifest(tmp)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# Builds in a temp dir when the cache dir cannot be written: one per directory and process (a memo, harmless).
_FALLBACK: dict[Path, Path] = {}


def cached_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """:func:`atomic_dir`, or, when the cache dir is read-only or full, a build into a temp dir for this process
    only, with one CacheWarning: the run goes on, it just converts again next time."""
    if final in _FALLBACK:
        return _FALLBACK[final]
    try:
        return atomic_dir(final, build)
    except Exception as e:  # noqa: BLE001 - tokenizers and safetensors raise their own types for ENOSPC
        no = cannot_write(e)
        if no is None:
            raise
        warnings.warn(CacheWarning(
            f"mechclaims: the cache dir {final.parent} cannot be written ({os.strerror(no)}); converting {final.name} "
            f"into a temporary dir for this run only. Pass a writable --mc-cache-dir (or set $MECHCLAIMS_CACHE) to "
            f"keep it."), stacklevel=3)
    tmp = Path(tempfile.mkdtemp(prefix=f"mechclaims-{final.name[:40]}-"))
    atexit.register(shutil.rmtree, tmp, True)
    try:
        build(tmp)
    except Exception as e2:  # noqa: BLE001 - as above
        no2 = cannot_write(e2)
        if no2 is None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"cannot convert {final.name}: neither the cache dir {final.parent} nor the temp dir "
                         f"{tmp.parent} can be written ({os.strerror(no2)}). Free space, or pass a writable "
                         f"--mc-cache-dir.") from None
    _FALLBACK[final] = tmp
    return tmp


def write_manifest(d: Path) -> None:
    files = {p.name: file_sha256(p) for p in sorted(d.iterdir()) if p.is_file() and p.name != "MANIFEST.json"}
    (d / "MANIFEST.json").write_text(json.dumps(files, indent=1))


def cache_ok(d: Path) -> bool:
    """A cache dir is valid only if its manifest exists and every checksum matches (detects truncation)."""
    m = d / "MANIFEST.json"
    if not m.exists():
        return False
    try:
        files = json.loads(m.read_text())
        return all((d / n).exists() and file_sha256(d / n) == h for n, h in files.items())
    except (OSError, ValueError):
        return False


