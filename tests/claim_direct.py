"""Fixtures for tests that call a claim module's own functions directly, outside a pytest claims run.

- ``claim_module(name)``: ``claims/<name>.py`` imported as a fresh module (its functions, constants, DESIGNS);
- ``claim_context(lm, module, tmp, **settings)``: ``Context.direct`` of the claim kit (both caches off, every
  number recomputed; keywords override the settings);
- ``one_thread``: torch on one thread for the test module (two shared cores: one thread is ~20x faster per tiny
  forward pass than two contending ones). Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def claim_module() -> Callable[[str], Any]:
    def load(name: str) -> Any:
        spec = importlib.util.spec_from_file_location(f"claims_{name}", ROOT / "claims" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return load


@pytest.fixture(scope="session")
def claim_context() -> Callable[..., Any]:
    from mechclaims.claim.context import Context

    return Context.direct


@pytest.fixture(scope="module")
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
