"""Writing outputs that are either whole or absent, and cleaning up after runs that were killed.

:func:`atomic_write` writes a temp file beside the target and renames it into place; whatever goes wrong (a full
disk, a read-only directory, Ctrl-C), the temp file is removed and the target keeps its old content. An ``OSError``
becomes an :class:`~mechclaims.errors.ArtifactsWriteError` whose message names the file, the cause and the fix.

:func:`sweep_orphans` removes temp files and folders that a killed run left behind (a SIGKILL skips every
``finally``): the conversion cache's ``<name>.tmp<pid>/`` folders, the activation cache's ``.<file>.<rand>.tmp``
files and the artifacts' ``.<file>.<pid>.tmp`` files. Only entries older than :data:`ORPHAN_AGE_S` go, so a
write in progress in another process (seconds long) is never touched; callers hold the directory's lock.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import time
from pathlib import Path

from mechclaims.errors import ArtifactsWriteError

ORPHAN_AGE_S = 3600.0  # a conversion takes ~30 s and a cache write a few seconds: an hour-old temp file is dead
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})  # full disk, quota, file-size limit
# read-only file system, no permission, a path through a regular file: this directory cannot be written
UNWRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST})


# Libraries with native writers report the OS error in their message, not as an OSError: tokenizers' Rust code
# raises Exception("No space left on device (os error 28)"), safetensors SafetensorError("... IoError(Os { code: 28,
# kind: StorageFull, ... })"). The errno is read from the message (then from the strerror text).
_ERRNO_IN_TEXT = re.compile(r"os error (\d+)|Os \{ code: (\d+)")
_STRERRORS = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded",
              errno.EROFS: "Read-only file system", errno.EACCES: "Permission denied",
              errno.EFBIG: "File too large", errno.ENOTDIR: "Not a directory"}


def disk_errno(e: BaseException) -> int | None:
    """The errno of a disk error, whatever raised it (an OSError, or a native library's own exception that says
    ``os error N``), looking through the exception's causes; None if it is not one."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError) and e.errno is not None:
            return e.errno
        text = str(e)
        m = _ERRNO_IN_TEXT.search(text)
        if m:
            return int(m.group(1) or m.group(2))
        for no, words in _STRERRORS.items():
            if words.lower() in text.lower():
                return no
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def cannot_write(e: BaseException) -> int | None:
    """The errno if ``e`` says this disk is full or cannot be written here (NO_SPACE or UNWRITABLE), else None."""
    no = disk_errno(e)
    return no if no in NO_SPACE | UNWRITABLE else None


def write_error(path: Path, e: OSError, fix: str = "pass a writable directory with --mc-artifacts-dir",
                existed: bool | None = None) -> ArtifactsWriteError:
    """The one message for an output that cannot be written. ``existed``: whether ``path`` was there before (an
    atomic write keeps it as it was); None when the writer does not know, and then nothing is claimed about it."""
    why = e.strerror or type(e).__name__
    if e.errno in NO_SPACE:
        fix = f"free space on that disk, or {fix} on another disk"
    left = {True: " The file keeps its previous content; nothing partial was written.",
            False: " No file was created; nothing partial was left behind.", None: ""}[existed]
    return ArtifactsWriteError(f"cannot write {path} ({why}); {fix}.{left}")


def atomic_write(path: str | Path, data: bytes | str, *, fix: str = "pass a writable directory with --mc-artifacts-dir"
                 ) -> Path:
    """Write ``data`` to ``path`` whole or not at all (temp file + rename); see the module docstring."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    existed = p.exists()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, p)
    except OSError as e:
        raise write_error(p, e, fix, existed) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return p


def _age(p: Path, now: float) -> float:
    try:
        return now - p.lstat().st_mtime
    except OSError:
        return -1.0


def sweep_orphans(directory: str | Path, patterns: tuple[str, ...], max_age_s: float = ORPHAN_AGE_S,
                  recursive: bool = False) -> list[Path]:
    """Remove entries of ``directory`` matching ``patterns`` (globs) older than ``max_age_s``; returns them.

    Never raises: a sweep that cannot remove something leaves it for the next run.
    """
    d, now, gone = Path(directory), time.time(), []
    if not d.is_dir():
        return gone
    for pat in patterns:
        try:
            hits = list(d.rglob(pat) if recursive else d.glob(pat))
        except OSError:
            continue
        for p in hits:
            if _age(p, now) < max_age_s:
                continue
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
                gone.append(p)
            except OSError:
                pass
    return gone


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
