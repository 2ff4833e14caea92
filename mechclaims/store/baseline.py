"""Committed baselines: one thin check over pytest-regressions' ``perform_regression_check``.

A baseline file ``baselines/<model>/<test>/<id>.yml`` holds the numbers and the environment they were made in.
A mismatch names every number that moved, by how much, against which tolerance, the max/mean/median error,
and the environment change (torch, transformers, dtype, device, model fingerprint) that may explain it.
"""
from __future__ import annotations

import math
import platform
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml
from pytest_regressions.common import perform_regression_check

from mechclaims.store.diskio import atomic_write, write_error
from mechclaims.versions import library_versions

from mechclaims.errors import MechClaimsError

DEFAULT_TOL = {"rtol": 1e-3, "atol": 1e-6}


class BaselineMismatch(Exception):
    """Numbers moved against the committed baseline. Deliberately not an AssertionError: a claim recorded as an
    expected failure (strict xfail, raises=AssertionError) must still fail when its baseline numbers move."""


def environment(lm: Any) -> dict[str, str]:
    return {**library_versions(), "python": platform.python_version(), "dtype": str(getattr(lm, "dtype", "?")),
            "device": str(getattr(lm, "device", "?")), "model_fingerprint": str(getattr(lm, "fingerprint", "?"))}


class BaselineFileError(MechClaimsError):
    """A baseline file that cannot be read as one: empty, not YAML, or not a mapping with ``numbers``. A
    MechClaimsError, so the test fails with this one message (no PyYAML traceback), and not an AssertionError, so
    no expected-failure marker swallows it."""


def _fix(path: Path) -> str:
    return (f"Restore it if it is committed (`git checkout -- {path}`), or delete it and rerun to write it again "
            f"(`--force-regen` rewrites it in place).")


def _load(path: Path) -> dict[str, Any]:
    """The baseline at ``path``; a :class:`BaselineFileError` naming the file and the fix if it is not one."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BaselineFileError(f"baseline {path} cannot be read ({e.strerror or e}).") from None
    if not raw.strip():
        raise BaselineFileError(f"empty baseline: {path} is {len(raw)} bytes long, so there are no numbers to check "
                                f"against (a write that was cut short, e.g. by a full disk, leaves such a file). "
                                f"{_fix(path)}")
    try:
        doc = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise BaselineFileError(f"baseline {path} is not valid YAML ({what}{where}): it was damaged (a merge "
                                f"conflict, an edit, a write cut short). {_fix(path)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("numbers"), dict):
        raise BaselineFileError(f"baseline {path} is YAML but not a mechclaims baseline (it needs a 'numbers' "
                                f"mapping; it holds a {type(doc).__name__}). {_fix(path)}")
    return doc


def compare(expected: Mapping[str, float], obtained: Mapping[str, float],
            tolerances: Mapping[str, Mapping[str, float]] | None = None,
            default: Mapping[str, float] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows for every number outside tolerance, plus keys present on one side only."""
    tolerances = tolerances or {}
    default = {**DEFAULT_TOL, **(default or {})}
    rows, keys = [], []
    for k in sorted(set(expected) | set(obtained)):
        if k not in expected or k not in obtained:
            keys.append(f"{k}: {'new (not in baseline)' if k not in expected else 'missing (only in baseline)'}")
            continue
        e, o = expected[k], obtained[k]
        tol = {**default, **tolerances.get(k, {})}
        if e is None or o is None or (isinstance(e, float) and math.isnan(e)) or (isinstance(o, float) and math.isnan(o)):
            same = (e is None or math.isnan(e)) and (o is None or math.isnan(o))
            if not same:
                rows.append({"key": k, "baseline": e, "obtained": o, "abs": float("nan"), "rel": float("nan"), "tol": tol})
            continue
        err = abs(o - e)
        if err > tol["atol"] + tol["rtol"] * abs(e):
            rows.append({"key": k, "baseline": e, "obtained": o, "abs": err,
                         "rel": err / abs(e) if e else float("inf"), "tol": tol})
    return rows, keys


def format_mismatch(path: Path, rows: list[dict[str, Any]], keys: list[str], env_then: Mapping[str, str],
                    env_now: Mapping[str, str], limit: int = 12) -> str:
    lines = [f"baseline {path} does not match ({len(rows)} number(s) moved, {len(keys)} key change(s))."]
    if rows:
        errs = np.array([r["abs"] for r in rows if not math.isnan(r["abs"])] or [float("nan")])
        lines.append(f"abs error: max {np.nanmax(errs):.4g}, mean {np.nanmean(errs):.4g}, median {np.nanmedian(errs):.4g}")
        lines.append(f"{'number':<32} {'baseline':>12} {'obtained':>12} {'abs err':>10} {'rel err':>10}  tolerance")
        for r in rows[:limit]:
            lines.append(f"{r['key'][:32]:<32} {r['baseline']!s:>12.12} {r['obtained']!s:>12.12} {r['abs']:>10.3g} "
                         f"{r['rel']:>10.3g}  rtol={r['tol']['rtol']:g} atol={r['tol']['atol']:g}")
        if len(rows) > limit:
            lines.append(f"... and {len(rows) - limit} more")
    lines += keys
    diff = {k: (env_then.get(k), env_now.get(k)) for k in set(env_then) | set(env_now) if env_then.get(k) != env_now.get(k)}
    if diff:
        lines.append("environment drift (baseline -> now): " +
                     "; ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(diff.items())))
    else:
        lines.append("same environment as the baseline: the change comes from code or stimuli.")
    lines.append("If the change is intended, regenerate deliberately with --force-regen and commit the file.")
    return "\n".join(lines)


def check(request: Any, path: Path, numbers: Mapping[str, float], env: Mapping[str, str],
          tolerances: Mapping[str, Mapping[str, float]] | None = None,
          default_tolerance: Mapping[str, float] | None = None, obtained: Path | None = None,
          on_drift: Any = None) -> bool:
    """Compare ``numbers`` against the baseline at ``path``. A missing baseline is written, and True returned: the
    caller reports it as created (unlike pytest-regressions, whose first run fails every test)."""
    __tracebackhide__ = True
    numbers = {k: (None if v is None else float(v)) for k, v in numbers.items()}
    doc = {"environment": dict(env), "numbers": numbers}

    force = bool(request.config.getoption("force_regen", False)) or bool(
        request.config.getoption("regen_all", False))

    text = yaml.safe_dump(doc, sort_keys=True, default_flow_style=False)

    def dump(target: Path) -> None:
        # Whole or not at all (temp file + rename): a full disk leaves the old baseline, or none, never a 0-byte one.
        atomic_write(target, text, fix="pass a writable --mc-baselines-dir")

    def check_fn(obtained_file: Path, expected_file: Path) -> None:
        __tracebackhide__ = True
        try:
            exp = _load(expected_file)
        except BaselineFileError as e:
            if force:  # pytest-regressions rewrites the file only when check_fn raises AssertionError
                raise AssertionError(str(e)) from None
            raise
        rows, keys = compare(exp.get("numbers", {}), numbers, tolerances, default_tolerance)
        if rows or keys:
            if on_drift is not None:  # the report's drift section lists what moved, from which env to which
                on_drift([{**r, "env_from": exp.get("environment", {}), "env_to": dict(env)} for r in rows]
                         + [{"key": k, "env_from": exp.get("environment", {}), "env_to": dict(env)} for k in keys])
            # pytest-regressions regenerates on --force-regen only when check_fn raises AssertionError; otherwise a
            # BaselineMismatch, which an expected-failure marker (raises=AssertionError) cannot swallow.
            exc = AssertionError if force else BaselineMismatch
            raise exc(format_mismatch(expected_file, rows, keys, exp.get("environment", {}), env))

    force = bool(request.config.getoption("force_regen", False)) or bool(
        request.config.getoption("regen_all", False))
    if not force and not path.exists():
        dump(path)  # an ArtifactsWriteError (a MechClaimsError) names the file, the cause and the fix
        return True
    try:
        perform_regression_check(datadir=path.parent, original_datadir=path.parent, request=request,
                                 check_fn=check_fn, dump_fn=dump, extension=".yml", fullpath=path, force_regen=force,
                                 obtained_filename=obtained)
    except OSError as e:  # a read-only --mc-baselines-dir, or a full disk: one line naming the file, not a traceback
        where = Path(e.filename) if getattr(e, "filename", None) else path
        raise write_error(where, e, "pass a writable --mc-baselines-dir (the obtained copy goes to "
                                    "--mc-artifacts-dir)") from None
    return False
