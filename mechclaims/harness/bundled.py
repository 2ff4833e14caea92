"""``mechclaims run``: the bundled claims, run from an installed wheel (or this checkout) on the user's models.

The wheel ships the claims (``mechclaims/claims``, with their recorded outcomes in ``claims/expected``), their
stimuli (``mechclaims/fixtures``) and this repository's committed baselines (``mechclaims/baselines``), mapped from
the repository's ``claims/``, ``fixtures/`` and ``baselines/`` at build time (pyproject's ``package-dir``).

``mechclaims run [--bundled-baselines] [pytest arguments]`` runs pytest on the bundled claims with the current
directory as the rootdir: baselines go to ``./baselines`` (the first run writes them and shows the outcomes, the
next checks against them), figures and summaries to ``./artifacts``. The short option names of this repository are
on (``--model`` for ``--mc-model``, ``--seed``, ``--permutations``, ...). The current directory's ``pytest.ini`` or
``pyproject.toml`` (with ``[tool.pytest.ini_options]``) is the configuration when there is one; otherwise none is
read (never one found above site-packages).

``--bundled-baselines`` first copies the committed baselines of the selected models into the baselines directory
(never overwriting a file there), so the run checks the bundled claims against this repository's numbers. It is
off by default: the tiny models are seeded random initialisations and the GGUF models are dequantised by the
installed libraries, so on other torch/transformers versions the weights (their fingerprint, which the baselines
record) and numbers may differ for reasons that have nothing to do with the claims.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mechclaims.model.registry import DEFAULT_MODEL

PKG = Path(__file__).resolve().parents[1]  # the mechclaims package


def _bundled(name: str) -> Path:
    """``mechclaims/<name>`` in a wheel, ``<checkout>/<name>`` in this repository."""
    return PKG / name if (PKG / name).is_dir() else PKG.parent / name


def claims_dir() -> Path:
    return _bundled("claims")


def baselines_dir() -> Path:
    return _bundled("baselines")


def _values(args: list[str], names: tuple[str, ...]) -> list[str]:
    """Every value of the options ``names`` in ``args`` (``--x V`` or ``--x=V``)."""
    out = []
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                out.append(args[i + 1])
            elif a.startswith(n + "="):
                out.append(a.split("=", 1)[1])
    return out


def seed_baselines(dest: Path, models: list[str]) -> int:
    """Copy the committed baselines of ``models`` into ``dest`` (existing files win); returns the files copied."""
    n = 0
    for m in models:
        src = baselines_dir() / m
        if not src.is_dir():
            continue
        for f in src.rglob("*.yml"):
            target = dest / m / f.relative_to(src)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, target)
                n += 1
    return n


def _config_file(cwd: Path) -> str:
    if (cwd / "pytest.ini").is_file():
        return str(cwd / "pytest.ini")
    pp = cwd / "pyproject.toml"
    if pp.is_file() and "[tool.pytest.ini_options]" in pp.read_text(encoding="utf-8", errors="replace"):
        return str(pp)
    return os.devnull


def pytest_args(rest: list[str], cwd: Path) -> list[str]:
    """The pytest command line of ``mechclaims run``: the bundled claims, rootdir and configuration from ``cwd``."""
    # `mechclaims run` imports mechclaims before pytest starts, so pytest's assertion rewriting cannot take the
    # plugin's module: a warning on every run that says nothing to the user (the claims' asserts are rewritten).
    quiet = ["-W", "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning"]
    return [str(claims_dir()), "--rootdir", str(cwd), "-c", _config_file(cwd), "-p", "mechclaims.plugin",
            "-p", "mechclaims.harness.aliases", "-p", "no:cacheprovider", *quiet, *rest]


def run(argv: list[str]) -> int:
    """``mechclaims run`` (see the module docstring); returns pytest's exit code."""
    rest = [a for a in argv if a != "--bundled-baselines"]
    cwd = Path.cwd()
    if "--bundled-baselines" in argv:
        models = _values(rest, ("--model", "--mc-model")) or [DEFAULT_MODEL]
        given = _values(rest, ("--baselines-dir", "--mc-baselines-dir"))
        dest = Path(given[-1]).expanduser() if given else cwd / "baselines"
        n = seed_baselines(dest.resolve(), models)
        print(f"mechclaims run: {n} committed baseline file(s) of {', '.join(models)} copied into {dest} "
              f"(existing files kept); the run checks the bundled claims against them.")
    return int(pytest.main(pytest_args(rest, cwd)))
