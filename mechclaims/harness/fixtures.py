"""What the per-test fixtures of a claim stand on: its artifact folder, its baseline, its stimuli files (the
fixtures themselves are one-liners in :mod:`mechclaims.plugin`)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import pytest

from mechclaims.harness.records import ART_FILES, DRIFT, NEW_BASELINE
from mechclaims.harness.settings import Settings
from mechclaims.store.baseline import check, environment
from mechclaims.store.paths import inside, safe_component
from mechclaims.datasets.io import stimuli_hash

class Artifacts:
    """This test's artifact folder: ``<run folder>/<model>/<test function>/<param id>/`` (each name one safe
    path component, see mechclaims.store.paths)."""

    def __init__(self, root: Path, node: pytest.Item):
        model = getattr(node, "callspec", None) and node.callspec.params.get("mc_model", "")
        test = node.originalname if hasattr(node, "originalname") else node.name
        pid = node.callspec.id if getattr(node, "callspec", None) else "default"
        self.dir = inside(root, model or "nomodel", test, pid)
        self.files: list[Path] = []

    @classmethod
    def for_test(cls, root: Path, request: pytest.FixtureRequest) -> "Artifacts":
        a = cls(root, request.node)
        request.node.stash[ART_FILES] = a.files  # listed in summary.json and the report
        return a

    def path(self, name: str) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        p = self.dir / name
        self.files.append(p)
        return p


class Baseline:
    def __init__(self, request: pytest.FixtureRequest, settings: Settings):
        self.request, self.s = request, settings

    def path(self) -> Path:
        node = self.request.node
        model = node.callspec.params.get("mc_model", "nomodel") if getattr(node, "callspec", None) else "nomodel"
        pid = node.callspec.id if getattr(node, "callspec", None) else "default"
        safe = safe_component(pid)
        if self.s.stimuli:
            # Own stimuli get their own baselines, keyed by the override set, never compared with the bundled ones.
            content = {k: hashlib.sha256(Path(v).read_bytes()).hexdigest() if Path(v).is_file() else v
                       for k, v in self.s.stimuli.items()}
            safe += f"@stimuli-{stimuli_hash(content)}"
        return inside(self.s.baselines, model, node.originalname) / f"{safe}.yml"

    def check(self, numbers: dict[str, float], lm: Any = None, tolerances: dict | None = None,
              default_tolerance: dict | None = None) -> None:
        """Check ``numbers`` against the baseline for this test id (``--force-regen`` rewrites). A missing baseline
        is written and the test goes on to its outcome: the terminal summary lists the baselines created."""
        __tracebackhide__ = True
        p = self.path()
        # The "obtained" copy goes with the artifacts, never next to the committed baselines.
        obtained = self.s.out / "obtained" / p.relative_to(self.s.baselines)
        obtained.parent.mkdir(parents=True, exist_ok=True)
        drift = self.request.node.stash.setdefault(DRIFT, [])
        created = check(self.request, p, numbers, environment(lm), tolerances or {}, default_tolerance, obtained,
                        drift.extend)
        if created:
            self.request.node.stash[NEW_BASELINE] = str(p)


def stimuli_getter(request: pytest.FixtureRequest, mc: Settings) -> Callable[[str], Path]:
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

