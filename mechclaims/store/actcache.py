"""On-disk activation cache: a capture is computed once per model, stimuli and environment, then reused.

An entry is keyed by everything that can change the numbers: the model's weight fingerprint, the stimuli hash and
capture settings (``parts``), dtype, device type, and the torch, transformers and numpy versions. A version change
therefore never reuses stale activations: it simply misses.

Layout under ``<cache-dir>/activations/``: ``<model>-<tag>-<digest>.npz`` (the arrays) and ``.json`` (the key, the
structure and the npz's sha256). Writes go to a temp file that is renamed into place, npz first and manifest last,
under a file lock, so:
- two processes that build one entry at once: the second waits, then reads what the first wrote;
- a run killed mid-write leaves either no manifest (a miss) or a manifest whose checksum does not match (rebuilt
  with a warning), never a half-read array;
- a truncated or edited file fails its checksum and is rebuilt with an :class:`ActivationCacheWarning`;
- a read-only or full cache dir gives one :class:`ActivationCacheWarning` and the run keeps its activations in
  memory (mode ``off`` from then on); no temp file is left;
- temp files of writes killed over an hour ago are removed by the first writer that takes a lock.

Content keys (the statistics store only): a key that holds ``reads``, a :func:`content_digest` of exactly the arrays
the value was computed from, leaves out the torch/transformers/numpy versions (the arrays already carry what those
libraries did to them); whoever builds such a key leaves out the weight fingerprint, dtype and device for the same
reason (``ModelPool.statistic``). Captures never carry ``reads``: they keep the version key, so a library upgrade
recomputes the capture, and a statistic keyed on its content is reused when the new capture is bit-identical.

Model keys (the statistics store only): a key that holds ``forward``, the model's forward fingerprint
(:mod:`mechclaims.forward.probe`), also leaves out the torch/transformers/numpy versions (the fingerprint carries what
they did to the forward; the builder adds the statistics libraries' versions, ``ModelPool.statistic``). Such an entry
is reused under verification (:mod:`mechclaims.store.verify`): a seeded sample of the entries read is recomputed and
must encode bit-identically (:func:`same_encoding`); a mismatch recomputes every remaining one of the session.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mechclaims.errors import CacheWarning
import torch
import transformers
from filelock import FileLock

from mechclaims.store.diskio import cannot_write, disk_errno, file_sha256, sweep_orphans
from mechclaims.store.paths import safe_component
from mechclaims.store.verify import ReuseCheck

FORMAT = 1  # bump when the stored structure or a capture's meaning changes
# Result types the statistics cache may store (class name -> module): decoded by name from this list only.
_DATACLASSES = {"Verdict": "mechclaims.verdict.verdict", "GEDLayer": "mechclaims.stats.ged",
               "SelectivityProfile": "mechclaims.stats.rsa"}
ACTIVATIONS = ("mechclaims.forward.activations", "Activations")  # by name: the store sits below the forward wing
MODES = ("on", "off", "refresh")


class ActivationCacheWarning(CacheWarning):
    """A cache entry was unreadable or failed its checksum and is being rebuilt, or the cache dir cannot be
    written and activations stay in memory."""


def environment_key() -> dict[str, str]:
    return {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__}


def content_digest(value: Any) -> str:
    """sha256 (hex) of ``value`` (anything :func:`_encode` takes: arrays, Activations, dicts/lists/tuples of them):
    its structure and plain values, then each array's dtype, shape and bytes in the encoder's traversal order (dict
    insertion order, then list order). One flipped bit, a transposed view or another dtype gives another digest."""
    arrays: list[np.ndarray] = []
    try:
        tree = _encode(value, arrays)
    except TypeError as e:
        raise TypeError(f"reads= must be arrays or Activations (in dicts, lists, tuples): {e}") from None
    h = hashlib.sha256(json.dumps(tree, sort_keys=True).encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"|{a.dtype.str}{a.shape}|".encode())
        h.update(a.reshape(-1).view(np.uint8))  # no copy for a contiguous array (a 5 MB layer: ~3 ms)
    return h.hexdigest()


def key_environment(key: dict[str, Any]) -> dict[str, str]:
    """The library versions a key holds: none for a content key (``reads``) or a model key (``forward``), else
    :func:`environment_key`."""
    return {} if "reads" in key or "forward" in key else environment_key()


def same_encoding(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` encode (:func:`_encode`) to the same tree and bit-identical arrays (dtype, shape,
    bytes): what a stored value and its recomputation must satisfy for a verified reuse. NaNs compare by their bits."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    try:
        ta, tb = _encode(a, xs), _encode(b, ys)
    except TypeError:
        return False
    if json.dumps(ta, sort_keys=True) != json.dumps(tb, sort_keys=True) or len(xs) != len(ys):
        return False
    return all(x.dtype == y.dtype and x.shape == y.shape and np.ascontiguousarray(x).tobytes() ==
               np.ascontiguousarray(y).tobytes() for x, y in zip(xs, ys))


def _encode(obj: Any, arrays: list[np.ndarray]) -> Any:
    """JSON-able description of ``obj``; its arrays are appended to ``arrays`` and referred to by index."""
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("object arrays cannot be cached")
        arrays.append(obj)
        return {"t": "a", "i": len(arrays) - 1}
    if (type(obj).__module__, type(obj).__name__) == ACTIVATIONS:
        return {"t": "Activations", "sites": _encode(obj.sites, arrays), "seq": _encode(obj.seq, arrays),
                "pos": _encode(obj.pos, arrays), "meta": _encode(obj.meta, arrays)}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):  # e.g. layer numbers or (name, side) tuples: keys encoded too
            return {"t": "D", "items": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
        return {"t": "d", "items": [[k, _encode(v, arrays)] for k, v in obj.items()]}
    if type(obj).__name__ in _DATACLASSES and type(obj).__module__ == _DATACLASSES[type(obj).__name__]:
        return {"t": "dc", "cls": type(obj).__name__,
                "f": {f.name: _encode(getattr(obj, f.name), arrays) for f in dataclasses.fields(obj)}}
    if isinstance(obj, (list, tuple)):
        return {"t": "l" if isinstance(obj, list) else "u", "items": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):  # JSON has no NaN: manifests are committed and shipped
        return {"t": "f", "v": repr(obj)}  # 'nan', 'inf' or '-inf'
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"t": "v", "v": obj}
    raise TypeError(f"cannot cache a {type(obj).__name__}")


def _decode(tree: Any, arrays: Any) -> Any:
    t = tree["t"]
    if t == "a":
        return arrays[f"arr_{tree['i']}"]
    if t == "Activations":
        return getattr(importlib.import_module(ACTIVATIONS[0]), ACTIVATIONS[1])(_decode(tree["sites"], arrays), _decode(tree["seq"], arrays),
                           _decode(tree["pos"], arrays), _decode(tree["meta"], arrays))
    if t == "d":
        return {k: _decode(v, arrays) for k, v in tree["items"]}
    if t == "D":
        return {_decode(k, arrays): _decode(v, arrays) for k, v in tree["items"]}
    if t == "dc":  # only the allow-listed result types: a manifest never names a class to import
        cls = getattr(importlib.import_module(_DATACLASSES[tree["cls"]]), tree["cls"])
        obj = cls.__new__(cls)  # as stored: __post_init__ already ran when it was made (it would re-annotate)
        obj.__dict__.update({k: _decode(v, arrays) for k, v in tree["f"].items()})
        return obj
    if t in ("l", "u"):
        items = [_decode(v, arrays) for v in tree["items"]]
        return items if t == "l" else tuple(items)
    if t == "f":
        return float(tree["v"])
    return tree["v"]


def _stored_key(key: dict[str, Any]) -> dict[str, str]:
    """The key as the manifest holds it (after a JSON round trip)."""
    return json.loads(json.dumps({**key_environment(key), **{k: repr(v) for k, v in key.items()}}))


def _atomic_write(final: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ActivationStore:
    """``get(key, fn)``: the cached value for ``key`` if intact, else ``fn()`` (stored for next time).

    ``mode``: ``on`` (read and write), ``off`` (never touch the disk), ``refresh`` (recompute and overwrite).
    ``hits`` counts every reuse; ``content_hits`` the ones whose key was a content key (``reads``). A model key
    (``forward``) is reused under ``check`` (:class:`mechclaims.store.verify.ReuseCheck`): a sampled entry is
    recomputed, and a mismatch makes every later model-keyed entry of this store a recompute.
    """

    def __init__(self, root: str | os.PathLike, mode: str = "on", what: str = "activation",
                 shipped: str | os.PathLike | None = None):
        # ``shipped``: a read-only store made with the repository (``statistics/``, mechclaims.store.shipped),
        # read on a local miss in mode "on"; an entry found there is copied into ``root``, then reused as if local
        if mode not in MODES:
            raise ValueError(f"{what} cache mode {mode!r}: use one of {MODES}")
        self.root, self.mode, self.what = Path(root), mode, what
        self.shipped = Path(shipped) if shipped is not None and Path(shipped).is_dir() else None
        self.hits = self.content_hits = self.misses = self.rebuilt = self.shipped_hits = 0
        self.degraded = ""  # why the disk is no longer used (read-only, full); empty while it is
        self._swept = False
        self.check = ReuseCheck()

    def paths(self, key: dict[str, Any]) -> tuple[Path, Path, Path]:
        full = {"format": FORMAT, **key_environment(key), **key}
        digest = hashlib.sha256(json.dumps(full, sort_keys=True, default=repr).encode()).hexdigest()[:20]
        stem = safe_component(f"{key.get('model', 'model')}-{key.get('tag', 'acts')}")
        # Named, not with_suffix(): a stem with a dot in it (a function's qualified name) would lose its digest.
        return tuple(self.root / f"{stem}-{digest}{ext}" for ext in (".npz", ".json", ".lock"))

    def get(self, key: dict[str, Any], fn: Callable[[], Any]) -> Any:
        if self.mode == "off" or self.degraded:
            return fn()  # "off" never touches the disk, not even to create the directory
        npz, man, lock = self.paths(key)
        reading = self.mode == "on" and not ("forward" in key and self.check.distrust)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if reading and (val := self._load(npz, man, key)) is not None:
                return self._reuse(key, val, fn, npz, man, lock)
            if reading and self.shipped is not None and (val := self._from_shipped(npz, man, key)) is not None:
                return self._reuse(key, val, fn, npz, man, lock)
            held = FileLock(str(lock))
            held.acquire()
        except OSError as e:
            self._degrade(e)
            return fn()
        try:
            if not self._swept:
                sweep_orphans(self.root, (".*.tmp",))  # writes killed (SIGKILL) over an hour ago
                self._swept = True
            # Another process may have finished the same entry while this one waited for the lock.
            found = self._load(npz, man, key) if reading else None
            if found is None:
                self.misses += 1
                val = fn()
                self._write(npz, man, key, val)
                return val
        finally:
            held.release()
        return self._reuse(key, found, fn, npz, man, lock)

    def _write(self, npz: Path, man: Path, key: dict[str, Any], val: Any) -> None:
        """Store ``val`` (the caller holds the entry's lock); a read-only or full disk degrades to memory."""
        try:
            self._store(npz, man, key, val)
        except Exception as e:  # noqa: BLE001 - a full disk may surface as another type (zipfile, numpy)
            if not isinstance(e, OSError) and cannot_write(e) is None:
                raise
            try:
                npz.unlink(missing_ok=True)  # never an npz without its manifest's checksum
            except OSError:
                pass
            self._degrade(e)

    def _reuse(self, key: dict[str, Any], val: Any, fn: Callable[[], Any], npz: Path, man: Path, lock: Path) -> Any:
        """A stored value read back: returned as is, unless it is a model-keyed entry drawn for verification (then
        recomputed, and replaced by the recomputation if it differs: see :mod:`mechclaims.store.verify`)."""
        if "forward" not in key or not self.check.wants(_stored_key(key)):
            self._hit(key)
            return val
        fresh = fn()
        if same_encoding(val, fresh):
            self.check.verified += 1
            self._hit(key)
            return val
        self.misses += 1
        warnings.warn(self.check.mismatch(f"{key.get('tag', '?')} of {key.get('model', '?')} ({man})"),
                      stacklevel=4)
        held = FileLock(str(lock))
        try:
            held.acquire()
        except OSError as e:
            self._degrade(e)
            return fresh
        try:
            self._write(npz, man, key, fresh)
        finally:
            held.release()
        return fresh

    def _from_shipped(self, npz: Path, man: Path, key: dict[str, Any]) -> Any | None:
        """The shipped store's entry for ``key`` (same file names), checked like a local one and copied into the
        local store (so that eviction and verification treat it as local); None when absent or not intact."""
        src_npz, src_man = self.shipped / npz.name, self.shipped / man.name
        if not src_man.exists():
            return None
        try:
            meta = json.loads(src_man.read_text())
            if meta.get("format") != FORMAT or meta.get("key") != _stored_key(key) or not src_npz.exists() \
                    or file_sha256(src_npz) != meta["sha256"]:
                return None
            _atomic_write(npz, lambda f: f.write(src_npz.read_bytes()))
            _atomic_write(man, lambda f: f.write(src_man.read_text()), mode="w")
        except (OSError, ValueError, KeyError) as e:
            if isinstance(e, OSError) and disk_errno(e) is not None:
                self._degrade(e)
            return None
        val = self._load(npz, man, key)
        self.shipped_hits += val is not None
        return val

    def _hit(self, key: dict[str, Any]) -> None:
        self.hits += 1
        self.content_hits += "reads" in key

    def _degrade(self, e: BaseException) -> None:
        """Read-only or full: warn once, then keep every capture of this run in memory."""
        no = disk_errno(e)
        self.degraded = getattr(e, "strerror", None) or (os.strerror(no) if no else type(e).__name__)
        warnings.warn(ActivationCacheWarning(
            f"the {self.what} cache {self.root} cannot be written ({self.degraded}); keeping {self.what}s in memory "
            f"for this run (they are recomputed next time). Pass a writable --mc-cache-dir, free space, or "
            f"--mc-{self.what}-cache off."), stacklevel=3)

    def _load(self, npz: Path, man: Path, key: dict[str, Any]) -> Any | None:
        if not man.exists():
            return None
        try:
            meta = json.loads(man.read_text())
            if meta.get("format") != FORMAT:
                return None
            if meta.get("key") != _stored_key(key):  # a digest collision, or a file renamed by hand
                return None
            if not npz.exists():
                raise ValueError("the .npz named by its manifest is missing")
            if file_sha256(npz) != meta["sha256"]:
                raise ValueError("checksum mismatch (truncated or modified)")
            with np.load(npz, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
            try:
                os.utime(man)  # the entry's last use, for least-recently-used eviction (store.hygiene)
            except OSError:
                pass
            return _decode(meta["tree"], arrays)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
            self.rebuilt += 1
            warnings.warn(ActivationCacheWarning(f"{self.what} cache entry {npz} is unusable ({e}); rebuilding it. "
                                                 f"To clear the cache: rm -rf {self.root}"), stacklevel=3)
            man.unlink(missing_ok=True)
            return None

    def _store(self, npz: Path, man: Path, key: dict[str, Any], val: Any) -> None:
        arrays: list[np.ndarray] = []
        try:
            tree = _encode(val, arrays)
        except TypeError:
            return  # not an array structure: memo only, never half-written
        man.unlink(missing_ok=True)  # a stale manifest must never vouch for the new npz
        _atomic_write(npz, lambda f: np.savez(f, *arrays))
        meta = {"format": FORMAT, "key": _stored_key(key),
                "sha256": file_sha256(npz), "tree": tree}
        _atomic_write(man, lambda f: f.write(json.dumps(meta, allow_nan=False)), mode="w")
