"""This repository's short option names (``--model``, ``--seed``, ...) as aliases of the plugin's ``--mc-*``.

Not an entry point: an installed plugin must not claim names as common as ``--model``. This repo's conftest.py
and its test helpers load it (``-p mechclaims.harness.aliases``), so ``make claims``, the README's commands and the tests
keep their spelling. Each alias writes to the same destination as its ``--mc-`` twin.
"""
from __future__ import annotations

import pytest

from mechclaims.harness.settings import add_options


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser, prefix="--", ini=False)
