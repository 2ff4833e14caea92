"""Run directories: every run writes its own outputs, and only a complete run becomes ``latest``.

Layout under the artifacts dir::

    runs/<UTC timestamp>-<pid>/   one folder per run: figures, obtained baselines, summary.json, report.html
    latest -> runs/<id>           the last run that finished complete (moved atomically: a symlink swap)
    summary.json, report.html     -> latest/summary.json, latest/report.html (the paths docs and tools read)

A run writes nothing outside its own folder until it ends. It then writes its ``summary.json`` whatever happened
(``"interrupted": true`` and the reason for Ctrl-C, SIGTERM, an internal error, a collection error or ``-x``), and
only a complete run with claim records moves ``latest``; so an interrupted rerun never replaces a complete report,
and two runs sharing one artifacts dir each keep their own records. The swap, the pruning of old runs and the
clean-up after killed runs happen under one file lock (``.runs.lock``).

A run killed with SIGKILL cannot write anything; its folder keeps a ``.running`` marker (pid and host). The next run
that takes the lock finds the marker of a dead process on this host, writes that folder's ``summary.json`` as
interrupted, and removes the temp files the killed run left.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mechclaims.errors import ArtifactsWriteError
from filelock import FileLock

from mechclaims.store.diskio import atomic_write, sweep_orphans, write_error

RUNS, LATEST, RUNNING, LOCK = "runs", "latest", ".running", ".runs.lock"
PUBLISHED = ("summary.json", "report.html")
DEFAULT_KEEP = 10  # finished runs kept besides latest (--mc-keep-runs; 0 keeps all)
TEMP_PATTERNS = (".*.tmp",)  # atomic writers' temp files (diskio.atomic_write, plots, reports)


def _now_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{os.getpid()}"


@dataclass
class Run:
    """One run's folder. ``start()`` creates it with its ``.running`` marker; ``finish()`` writes the summary."""

    root: Path
    id: str = field(default_factory=_now_id)
    started: float = field(default_factory=time.time)

    @property
    def dir(self) -> Path:
        return self.root / RUNS / self.id

    def start(self) -> "Run":
        self.made_root = not self.root.exists()  # a run that ends empty removes a root it made, and only that
        base, n = self.id, 1
        while True:
            try:
                self.dir.mkdir(parents=True)
                break
            except FileExistsError:  # two runs in one second with a reused pid, or a leftover folder
                n += 1
                self.id = f"{base}-{n}"
            except OSError as e:
                raise write_error(self.dir, e) from None
        atomic_write(self.dir / RUNNING, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                     "started": self.started}))
        return self

    def info(self, **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "dir": str(self.dir), "pid": os.getpid(), "host": socket.gethostname(),
                "started": _iso(self.started), "finished": _iso(time.time()), **extra}

    def discard_if_empty(self) -> bool:
        """A run that wrote nothing and needs no summary (library tests only) leaves no folder behind."""
        (self.dir / RUNNING).unlink(missing_ok=True)
        try:
            self.dir.rmdir()
        except OSError:
            return False
        try:
            (self.root / RUNS).rmdir()  # only if no other run is there
            if getattr(self, "made_root", False):
                self.root.rmdir()
        except OSError:
            pass
        return True

    def finish(self, summary: dict[str, Any], write_report: Callable[[dict, Path], Any] | None,
               complete: bool, keep: int = DEFAULT_KEEP) -> dict[str, str]:
        """Write this run's summary.json (always) and report.html, then, if ``complete`` and some claim test got
        past an error, move ``latest`` here.

        A run whose every claim test errored (a model that cannot load, a broken install) measured nothing: it keeps
        its own folder and summary but never replaces a ``latest`` that holds results. Returns the paths written;
        raises ArtifactsWriteError (temp files removed) when the disk refuses.
        """
        paths = {"summary": str(atomic_write(self.dir / "summary.json", dumps(summary))), "run": str(self.dir)}
        if write_report is not None:
            paths["report"] = str(write_report(summary, self.dir / "report.html"))
        (self.dir / RUNNING).unlink(missing_ok=True)
        with _lock(self.root):
            if complete and measured(summary):
                publish(self.root, self.dir)
                paths["latest"] = str(self.root / LATEST)
            housekeeping(self.root, keep)
        return paths


def measured(summary: dict[str, Any]) -> bool:
    """Whether some record of the summary is not an error (stand-ins that are not dicts count as measured)."""
    recs = summary.get("records") or []
    return not recs or any(not isinstance(r, dict) or r.get("outcome") != "error" for r in recs)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


NONFINITE = "nonfinite"  # summary.json's map of the values JSON cannot hold (see dumps)


def dumps(obj: Any) -> str:
    """Strict JSON for summaries (RFC 8259: ``JSON.parse``, ``jq`` and every schema validator read it).

    A NaN or infinite float (a p-value of a degenerate null, a margin of a broken model) is written as ``null``,
    and the top-level ``"nonfinite"`` map says which value it was, by JSON Pointer (RFC 6901):
    ``{"/records/3/verdicts/0/p": "NaN"}``; the value is ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``. The map is
    absent when every number is finite. :func:`loads` puts the values back. Anything odd (a pytest NOTSET, a Path)
    becomes its string instead of failing the whole write. The schema: mechclaims/report/summary.schema.json.
    """
    found: dict[str, str] = {}
    clean = _finite(obj, "", found)
    if found and isinstance(clean, dict):
        clean[NONFINITE] = found
    return json.dumps(clean, indent=1, sort_keys=True, allow_nan=False, default=str)


def _pointer_token(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _finite(obj: Any, where: str, found: dict[str, str]) -> Any:
    if isinstance(obj, float):
        if obj != obj:
            found[where] = "NaN"
            return None
        if obj in (float("inf"), float("-inf")):
            found[where] = "Infinity" if obj > 0 else "-Infinity"
            return None
        return obj
    if isinstance(obj, dict):
        return {k: _finite(v, f"{where}/{_pointer_token(k)}", found) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v, f"{where}/{i}", found) for i, v in enumerate(obj)]
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):  # numpy scalars and arrays
        return _finite(obj.tolist(), where, found)
    return obj


def _reject(token: str) -> Any:
    raise ValueError(f"summary.json holds the bare token {token}, which is not JSON")


def loads(text: str, strict: bool = False) -> Any:
    """Parse a summary written by :func:`dumps` and put its non-finite values back (as Python floats).

    ``strict``: refuse the bare ``NaN``/``Infinity`` tokens (summaries written before the ``nonfinite`` map had
    them); by default they are read as Python does.
    """
    data = json.loads(text, parse_constant=_reject) if strict else json.loads(text)
    if isinstance(data, dict) and isinstance(data.get(NONFINITE), dict):
        for pointer, value in data[NONFINITE].items():
            _set(data, pointer, float({"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}.get(value, "nan")))
    return data


def _set(doc: Any, pointer: str, value: Any) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    try:
        for p in parts[:-1]:
            doc = doc[int(p)] if isinstance(doc, list) else doc[p]
        if isinstance(doc, list):
            doc[int(parts[-1])] = value
        elif parts:
            doc[parts[-1]] = value
    except (KeyError, IndexError, ValueError, TypeError):
        pass  # a pointer that no longer fits (an edited file): leave the null


def _lock(root: Path):
    return FileLock(str(root / LOCK), timeout=600)


def _symlink_swap(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)  # atomic on POSIX: a reader sees the old or the new run, never neither
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def publish(root: Path, run_dir: Path) -> None:
    """Make ``run_dir`` the latest run: one atomic symlink swap; summary.json/report.html at the root follow it.

    A ``latest`` that is a real folder or file (someone replaced the symlink, e.g. by copying the artifacts) is
    never replaced: the root summary.json/report.html become copies of this run's, and an ArtifactsWriteError says
    that ``latest`` is stale and how to fix it (before, it was silently left showing an older run)."""
    link = root / LATEST
    if link.exists() and not link.is_symlink():
        _copy_published(root, run_dir)
        kind = "folder" if link.is_dir() else "file"
        raise ArtifactsWriteError(
            f"{link} is a {kind}, not the symlink mechclaims keeps there, so it was left as it is and now shows an "
            f"older run, not this one. This run is complete: its outputs are in {run_dir}, and {root / 'summary.json'} "
            f"and {root / 'report.html'} are copies of its own. Move the {kind} away (`mv {link} {link}.old`) and "
            f"the next complete run links {LATEST} again.")
    try:
        _symlink_swap(root / LATEST, os.path.relpath(run_dir, root))
        for name in PUBLISHED:
            top = root / name
            if not top.is_symlink() or os.readlink(top) != f"{LATEST}/{name}":
                _symlink_swap(top, f"{LATEST}/{name}")
    except OSError:
        _copy_published(root, run_dir)  # no symlinks here (e.g. Windows without the privilege): copies instead


def _copy_published(root: Path, run_dir: Path) -> None:
    for name in PUBLISHED:
        if (run_dir / name).exists():
            atomic_write(root / name, (run_dir / name).read_bytes())
    atomic_write(root / "LATEST", run_dir.name + "\n")


def latest(root: str | Path) -> Path | None:
    """The folder of the latest complete run, or None."""
    p = Path(root) / LATEST
    return p.resolve() if p.exists() else None


def housekeeping(root: Path, keep: int = DEFAULT_KEEP) -> None:
    """Under the lock: close the folders of runs killed on this host, remove old temp files, prune old runs."""
    runs = root / RUNS
    if not runs.is_dir():
        return
    host = socket.gethostname()
    for d in sorted(runs.iterdir()):
        marker = d / RUNNING
        if not marker.exists():
            continue
        try:
            m = json.loads(marker.read_text())
            pid, mhost = int(m["pid"]), m.get("host")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if mhost != host or _alive(pid):
            continue
        sweep_orphans(d, TEMP_PATTERNS, max_age_s=0, recursive=True)  # its writer is dead: every temp is an orphan
        if not (d / "summary.json").exists():
            try:
                atomic_write(d / "summary.json", dumps({
                    "interrupted": True, "complete": False, "records": [], "outcomes": [],
                    "reason": f"the run (pid {pid}) ended without writing its summary: killed (SIGKILL), out of "
                              f"memory, or the machine stopped. Its figures are kept in this folder.",
                    "run": {"id": d.name, "dir": str(d), "pid": pid, "host": mhost,
                            "started": _iso(float(m.get("started", 0)))}}))
            except OSError:
                continue
        marker.unlink(missing_ok=True)
    sweep_orphans(root, TEMP_PATTERNS)
    if keep > 0:
        _prune(runs, keep, latest(root))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _prune(runs: Path, keep: int, current: Path | None) -> None:
    done = [d for d in sorted(runs.iterdir()) if d.is_dir() and not (d / RUNNING).exists()
            and (d / "summary.json").exists() and (current is None or d.resolve() != current)]
    for d in done[:max(0, len(done) - keep)]:
        shutil.rmtree(d, ignore_errors=True)
