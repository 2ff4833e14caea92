"""Per-test fixtures of a claim: its artifact folder, its baseline, its stimuli files.

Imported into :mod:`mechclaims.plugin`, so they are the plugin's fixtures.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from mechclaims.harness.recorder import ART_FILES, DRIFT, NEW_BASELINE
from mechclaims.harness.settings import Settings

class Artifacts:
    """This test's artifact folder: ``<run folder>/<model>/<test function>/<param id>/`` (each name one safe
    path component, see mechclaims.store.paths)."""

    def __init__(self, root: Path, node: pytest.Item):
        from mechclaims.store.paths import inside

        model = getattr(node, "callspec", None) and node.callspec.params.get("model_name", "")
        test = node.originalname if hasattr(node, "originalname") else node.name
        pid = node.callspec.id if getattr(node, "callspec", None) else "default"
        self.dir = inside(root, model or "nomodel", test, pid)
        self.files: list[Path] = []

    def path(self, name: str) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        p = self.dir / name
        self.files.append(p)
        return p


@pytest.fixture
def artifacts(mc: Settings, request: pytest.FixtureRequest) -> Artifacts:
    """This test's artifact folder under the run folder. Usage::

        fig.savefig(artifacts.path("effect.png"))   # listed in summary.json and the report
    """
    a = Artifacts(mc.out, request.node)
    request.node.stash[ART_FILES] = a.files
    return a


COUNT_KEYS = ("n_null", "mean_draws", "frac_lowered", "n_draws")
COUNT_TOL = {"rtol": 0.25, "atol": 0.05}


class Baseline:
    def __init__(self, request: pytest.FixtureRequest, settings: Settings):
        self.request, self.s = request, settings

    def path(self) -> Path:
        from mechclaims.store.paths import inside, safe_component

        node = self.request.node
        model = node.callspec.params.get("model_name", "nomodel") if getattr(node, "callspec", None) else "nomodel"
        pid = node.callspec.id if getattr(node, "callspec", None) else "default"
        safe = safe_component(pid)
        if self.s.stimuli:
            # Own stimuli get their own baselines, keyed by the override set, never compared with the bundled ones.
            import hashlib

            from mechclaims.datasets.io import stimuli_hash

            content = {k: hashlib.sha256(Path(v).read_bytes()).hexdigest() if Path(v).is_file() else v
                       for k, v in self.s.stimuli.items()}
            safe += f"@stimuli-{stimuli_hash(content)}"
        return inside(self.s.baselines, model, node.originalname) / f"{safe}.yml"

    def check(self, numbers: dict[str, float], lm: Any = None, tolerances: dict | None = None,
              default_tolerance: dict | None = None) -> None:
        """Check ``numbers`` against the baseline for this test id (``--force-regen`` rewrites). A missing baseline
        is written and the test goes on to its outcome: the terminal summary lists the baselines created."""
        from mechclaims.store.baseline import check, environment

        __tracebackhide__ = True
        p = self.path()
        # The "obtained" copy goes with the artifacts, never next to the committed baselines.
        obtained = self.s.out / "obtained" / p.relative_to(self.s.baselines)
        obtained.parent.mkdir(parents=True, exist_ok=True)
        drift = self.request.node.stash.setdefault(DRIFT, [])
        # Reported counts of sequential draws and thresholded fractions move in whole steps when the last float bits
        # move (another thread count, another batch split): a tolerance of their resolution, never deciding.
        loose = {k: COUNT_TOL for k in numbers if k.endswith(COUNT_KEYS)}
        created = check(self.request, p, numbers, environment(lm), {**loose, **(tolerances or {})},
                        default_tolerance, obtained, drift.extend)
        if created:
            self.request.node.stash[NEW_BASELINE] = str(p)


@pytest.fixture
def baseline(request: pytest.FixtureRequest, mc: Settings) -> Baseline:
    """The test's baseline file under --mc-baselines-dir. Usage::

        baseline.check(verdict.numbers(), lm)   # first run: writes it; later runs: compares within tolerance
    """
    return Baseline(request, mc)


@pytest.fixture
def stimuli_path(request: pytest.FixtureRequest, mc: Settings) -> Callable[[str], Path]:
    """``stimuli_path(NAME)``: the file for stimuli set NAME: ``--mc-stimuli NAME=PATH`` if given, else the
    default the claim module declares in ``STIMULI = {NAME: "relative/to/the/module.jsonl"}``. Usage::

        STIMULI = {"my_pairs": "data/my_pairs.jsonl"}

        def test_my_claim(lm, stimuli_path):
            rows = load_my_pairs(stimuli_path("my_pairs"))
    """
    declared = getattr(request.module, "STIMULI", None) or {}
    here = Path(request.module.__file__).parent

    def get(name: str) -> Path:
        if name in mc.stimuli:
            return Path(mc.stimuli[name])
        if name not in declared:
            raise KeyError(f"stimuli set {name!r} is not declared: add it to {request.module.__name__}.STIMULI "
                           f"({{{name!r}: 'path/to/file'}}) or pass --mc-stimuli {name}=PATH")
        return (here / declared[name]).resolve()
    return get

