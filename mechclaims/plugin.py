"""pytest plugin (entry point ``pytest11: mechclaims.plugin``): hooks that delegate in one line, and fixtures.

Inert until needed: importing it imports neither torch nor transformers, and it resolves no model and creates no
folder until a test carries the ``claim`` marker or asks for ``lm``/``ctx``/``mc_model``, or a ``--mc-*`` option or
``mechclaims_*`` ini value is set (then bad values are usage errors at start-up). Its state is one
:class:`~mechclaims.harness.session.Session` on ``config.stash``, registered as a plugin whose methods are the
session's hooks; options live in :mod:`mechclaims.harness.settings`, the models in :mod:`mechclaims.harness.pool`.
"""
from __future__ import annotations

from typing import Any, Callable

import pytest

from mechclaims.errors import MechClaimsError
from mechclaims.harness import params, records, settings
from mechclaims.harness.fixtures import Artifacts, Baseline, stimuli_getter
from mechclaims.harness.pool import ModelPool
from mechclaims.harness.session import SESSION, WORKER_KEY, Session
from mechclaims.harness.settings import Settings

MARKERS = {
    "claim": "claim(name, family='observational', controls=(), control_of=None, aggregate=None, kinds=None): a "
             "mechanistic claim test (name may use the test's parameters, e.g. 'lesion_{rule}'); controls= names the "
             "claim's controls, control_of= marks a control and names its claim; family is 'observational' or "
             "'causal'; kinds= limits the model kinds.",
    "xdist_group": "xdist_group(name): pytest-xdist --dist loadgroup grouping",
    **{m: f"mechclaims {m} tests" for m in ("observational", "causal", "control", "slow")},
}


def pytest_addoption(parser: pytest.Parser) -> None:
    settings.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}" if not text.startswith(name) else text)
    ses = config.stash[SESSION] = Session(config)
    config.pluginmanager.register(ses, f"mechclaims-session-{id(config)}")
    wi = getattr(config, "workerinput", None)
    if settings.given(config) or (wi is not None and wi.get(WORKER_KEY)):
        ses.activate()


def pytest_unconfigure(config: pytest.Config) -> None:
    ses = config.stash.get(SESSION, None)
    if ses is not None:
        ses.close()
        config.pluginmanager.unregister(ses)


def pytest_report_header(config: pytest.Config) -> list[str]:
    ses = config.stash.get(SESSION, None)
    return [] if ses is None or not ses.active else settings.header(ses.settings)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    params.generate(metafunc.config.stash[SESSION], metafunc)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    params.modify_items(config.stash[SESSION], config, items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    rep = yield
    records.report_row(item, call, rep)
    return rep


# ---------------------------------------------------------------------------------------------------- fixtures
def _session(config: pytest.Config) -> Session:
    return config.stash[SESSION]


@pytest.fixture(scope="session")
def mc(pytestconfig: pytest.Config) -> Settings:
    """The resolved settings (options > ini > defaults). Usage: ``mc.seed``, ``mc.permutations``, ``mc.out``."""
    ses = _session(pytestconfig)
    ses.activate()
    ses.start_run()
    return ses.settings


@pytest.fixture(scope="session")
def model_pool(pytestconfig: pytest.Config) -> ModelPool:
    """The session's models. Usage: ``model_pool.get(name)``, ``model_pool.random_copy(lm, seed)``."""
    return _session(pytestconfig).activate()[1]


@pytest.fixture
def lm(model_pool: ModelPool, mc_model: str) -> Any:
    """The model of this test's ``mc_model`` parameter (each --mc-model in turn; loaded once, read-only)."""
    try:
        return model_pool.get(mc_model)
    except MechClaimsError as e:
        msg = str(e)
    pytest.fail(msg, pytrace=False)  # outside the except: one message, no "During handling" copy


@pytest.fixture
def artifacts(mc: Settings, request: pytest.FixtureRequest) -> Artifacts:
    """This test's artifact folder. Usage: ``fig.savefig(artifacts.path("effect.png"))``."""
    return Artifacts.for_test(mc.out, request)


@pytest.fixture
def baseline(request: pytest.FixtureRequest, mc: Settings) -> Baseline:
    """This test's committed numbers. Usage: ``baseline.check(verdict.numbers(), lm)`` (first run writes it)."""
    return Baseline(request, mc)


@pytest.fixture
def stimuli_path(request: pytest.FixtureRequest, mc: Settings) -> Callable[[str], Any]:
    """``stimuli_path(NAME)``: ``--mc-stimuli NAME=PATH``, else the module's ``STIMULI[NAME]``."""
    return stimuli_getter(request, mc)


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``record(verdict, layer=..., **extra)``: the verdict goes to summary.json and the report."""
    return records.recorder(request)


@pytest.fixture
def expect(request: pytest.FixtureRequest) -> Callable[[Any], None]:
    """``expect(verdict)``: the outcome must be the recorded one (default: claim supported, control failed)."""
    return records.expecter(request)


@pytest.fixture
def ctx(request: pytest.FixtureRequest, lm: Any, mc: Settings, model_pool: ModelPool) -> Any:
    """The claim kit's context. Usage: ``ctx.memo(fn, *args)``, ``ctx.stimuli(NAME)``, ``ctx.alpha``."""
    from mechclaims.claim.context import Context  # local: the kit imports numpy and the model wing

    return Context.for_test(request, lm, mc, model_pool)


@pytest.fixture
def check(request: pytest.FixtureRequest, record: Any, baseline: Baseline, expect: Any, mc: Settings) -> Any:
    """``check(verdict, **where)``: record, check the baseline, then the recorded outcome, in that order."""
    from mechclaims.claim.check import Checker

    return Checker(request, record, baseline, expect)


@pytest.fixture(autouse=True)
def _hook_guard(request: pytest.FixtureRequest):
    """Fails any test that leaves a hook on a shared model (nothing to check before a model is loaded)."""
    pool = _session(request.config).pool
    yield from records.hook_guard(request, pool)


@pytest.fixture(scope="module", autouse=True)
def _evict_after_module(pytestconfig: pytest.Config):
    """Peak memory is one claim module's working set: its activations reload from the disk cache if needed."""
    yield
    pool = _session(pytestconfig).pool
    if pool is not None and pool.loaded():
        pool.evict()
