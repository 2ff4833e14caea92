"""The wheel holds every wing of the package and the data the wheel needs (a fast check, no build).

Claim under test: pyproject.toml's ``packages`` lists every ``mechclaims/**/__init__.py`` folder (a wing missing there
is missing from the wheel: the wings move left seven out and the wheel failed at import), and the package data globs
match the tokenizer assets and the summary schema. Falsified by: a package folder or data file the lists miss.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed():
    listed = set(_setuptools()["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "mechclaims").rglob("__init__.py")
             if "__pycache__" not in p.parts}
    assert found - listed == set(), f"add to pyproject.toml [tool.setuptools] packages: {sorted(found - listed)}"


def test_package_data_matches_the_files_the_code_reads():
    data = _setuptools()["package-data"]
    for pkg, rel in (("mechclaims.model", "mechclaims/model/assets/smollm2-tokenizer.json.gz"),
                     ("mechclaims.model", "mechclaims/model/assets/minilm-wordpiece.json.gz"),
                     ("mechclaims.report", "mechclaims/report/summary.schema.json")):
        base = ROOT / pkg.replace(".", "/")
        assert any(p == ROOT / rel for g in data[pkg] for p in base.glob(g)), (pkg, rel)
