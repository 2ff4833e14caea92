"""pytest plugin (entry point ``pytest11: mechclaims.plugin``): options, parametrization, fixtures, summary.

Inert until needed: importing it imports neither torch nor transformers, and it resolves no model and creates no
folder until a test asks for ``model_name``/``lm`` (or ``mc``), or a ``--mc-*`` option or ``mechclaims_*`` ini
value is set (then bad values are usage errors at start-up). A suite without claims sees only its options in
``--help`` and a few markers. State lives on ``config.stash``; options live in :mod:`mechclaims.harness.settings`, the
model pool in :mod:`mechclaims.harness.pool`, the recorder in :mod:`mechclaims.harness.recorder`.
"""
from __future__ import annotations

import os
import re
from typing import Any

import pytest

from mechclaims.harness import settings as _settings
from mechclaims.harness.fixtures import Artifacts, Baseline, artifacts, baseline, stimuli_path  # noqa: F401 (fixtures)
from mechclaims.errors import MechClaimsError
from mechclaims.harness.pool import ModelPool
from mechclaims.harness.recorder import (NEW_BASELINE, RECORDS, Recorder, claim_name, expect,  # noqa: F401 (fixtures, hooks)
                       pytest_runtest_makereport, record)
from mechclaims.harness.runstate import pytest_collectreport, pytest_internalerror, pytest_keyboard_interrupt  # noqa: F401
from mechclaims.harness.settings import Settings

SETTINGS = pytest.StashKey[Settings]()
POOL = pytest.StashKey[ModelPool]()
MUTATED = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "claim(name, family='observational', controls=(), control_of=None, "
                                       "aggregate=None, kinds=None): a mechanistic claim test (name may use the "
                                       "test's parameters, e.g. 'lesion_{rule}'); controls= names the claim's control "
                                       "tests, control_of= marks a control and names its claim; family is "
                                       "'observational' or 'causal'; kinds= limits the model kinds.")
    config.addinivalue_line("markers", "xdist_group(name): pytest-xdist --dist loadgroup grouping")
    for m in ("observational", "causal", "control", "slow"):
        config.addinivalue_line("markers", f"{m}: mechclaims {m} tests")
    config.pluginmanager.register(Recorder(config), f"mechclaims-recorder-{id(config)}")
    from mechclaims.harness.runstate import WORKER_KEY, prepare

    prepare(config)

    wi = getattr(config, "workerinput", None)
    if _settings.given(config) or (wi is not None and wi.get(WORKER_KEY)):
        activate(config)


def activate(config: pytest.Config, resolve: bool = True) -> tuple[Settings, ModelPool]:
    """Read and check the options once (a bad value is a usage error); ``resolve`` also resolves every model, so
    a bad name or a layer that does not exist never reaches a test."""
    if SETTINGS in config.stash:
        return config.stash[SETTINGS], config.stash[POOL]
    try:
        s = _settings.build(config)
        pool = ModelPool(s)
        if resolve:
            from mechclaims.harness.options import check_layers

            check_layers(s.layers, {name: pool.n_layers(name) for name in s.models})
        _settings.check_baselines_dir(config, s)
    except MechClaimsError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[SETTINGS], config.stash[POOL] = s, pool
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1 and s.device == "cpu":
        import torch

        # n workers x n intra-op threads on n cores spin against each other (10x slower on 2 cores): split them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    return s, pool


def start_run(config: pytest.Config) -> None:
    """This session's run folder (mechclaims.store.runs), once, after the options and stimuli names are checked."""
    from mechclaims.harness import runstate

    s = config.stash.get(SETTINGS, None)
    if s is not None and s.run_dir is None:
        s.run_dir = runstate.start(config, s.artifacts)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist (controller): one run folder for all workers, made before they start."""
    from mechclaims.harness.runstate import pytest_configure_node as hand_over

    activate(node.config, resolve=False)
    start_run(node.config)
    hand_over(node)


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = config.stash.get(SETTINGS, None)
    if s is None:
        return []
    import numpy
    import torch
    import transformers

    return [f"mechclaims: torch {torch.__version__}, transformers {transformers.__version__}, numpy "
            f"{numpy.__version__}; device {s.device}, dtype {s.dtype}, seed {s.seed}, permutations {s.permutations}",
            f"mechclaims models: {', '.join(s.models)}; artifacts: {s.artifacts}; baselines: {s.baselines}; "
            f"activation cache {s.activation_cache}, statistics cache {s.statistics_cache}"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``model_name`` (and ``layer``, jointly) with ids like ``smollm2-135m-L10``."""
    if "model_name" not in metafunc.fixturenames:
        return
    s, pool = activate(metafunc.config)
    m = metafunc.definition.get_closest_marker("claim")
    kinds = tuple(m.kwargs["kinds"]) if m and "kinds" in m.kwargs else None
    params = []
    for name in s.models:
        marks = []
        if kinds and pool.kind(name) not in kinds:
            marks = [pytest.mark.skip(reason=f"claim needs a {' or '.join(kinds)} model and {name} is "
                                             f"{pool.kind(name)}; run it with --mc-model on a {kinds[0]} model "
                                             f"(e.g. {'tiny-bert' if kinds[0] == 'masked' else 'smollm2-135m'})")]
        short = re.sub(r"[^\w.-]", "_", name.split("/")[-1]) if "/" in name or os.sep in name else name
        if "layer" in metafunc.fixturenames and marks:
            # One skip per model, not one per layer: the claim does not apply to this kind of model at all.
            params.append(pytest.param(name, -1, id=f"{short}-not-applicable", marks=marks))
        elif "layer" in metafunc.fixturenames:
            for l in s.layer_list(pool.n_layers(name)):
                params.append(pytest.param(name, l, id=f"{short}-L{l}", marks=marks))
        else:
            params.append(pytest.param(name, id=short, marks=marks))
    argnames = ["model_name", "layer"] if "layer" in metafunc.fixturenames else ["model_name"]
    metafunc.parametrize(argnames, params)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check --mc-stimuli names against the bundled sets and those the collected claim modules declare (before
    -k deselects any); add each claim's family marker and its model's xdist group."""
    s = config.stash.get(SETTINGS, None)
    if s is not None and s.stimuli:
        from mechclaims.datasets.io import STIMULI_NAMES, check_stimuli_overrides

        mods = {id(i.module): i.module for i in items if getattr(i, "module", None) is not None}
        names = [*STIMULI_NAMES, *(n for mod in mods.values() for n in (getattr(mod, "STIMULI", None) or {}))]
        try:
            check_stimuli_overrides(s.stimuli, names)
        except MechClaimsError as e:
            raise pytest.UsageError(str(e)) from None
    for item in items:
        m = item.get_closest_marker("claim")
        if m is not None:
            item.add_marker(getattr(pytest.mark, m.kwargs.get("family", "observational")))
            cs = getattr(item, "callspec", None)
            if cs is not None and "model_name" in cs.params:  # xdist --dist loadgroup: one worker loads each model
                item.add_marker(pytest.mark.xdist_group(cs.params["model_name"]))


def pytest_collection_finish(session: pytest.Session) -> None:
    from mechclaims.harness.runstate import pytest_collection_finish as count_claims

    if SETTINGS in session.config.stash:
        start_run(session.config)
    count_claims(session)


# ---------------------------------------------------------------------------------------------------------------
# Session fixtures


@pytest.fixture(scope="session")
def mc(pytestconfig: pytest.Config) -> Settings:
    """The resolved settings (options > ini > defaults). Usage: ``mc.seed``, ``mc.permutations``,
    ``mc.stimuli_path(NAME, default)``, ``mc.out`` (this run's folder)."""
    s, _ = activate(pytestconfig)
    start_run(pytestconfig)
    return s


@pytest.fixture(scope="session")
def model_pool(pytestconfig: pytest.Config) -> ModelPool:
    """The session's models and memo. Usage: ``model_pool.cached(key, fn)`` (key: every argument of ``fn`` and
    ``lm.fingerprint``), ``model_pool.activations(lm, tag, parts, fn)``, ``model_pool.random_copy(lm, seed)``."""
    return activate(pytestconfig)[1]


@pytest.fixture(scope="module", autouse=True)
def _evict_after_module(pytestconfig: pytest.Config):
    """Peak memory is one claim module's working set: its activations reload from the disk cache if needed."""
    yield
    pool = pytestconfig.stash.get(POOL, None)
    if pool is not None and pool.loaded():
        pool.evict()
        import gc

        gc.collect()


@pytest.fixture
def lm(model_pool: ModelPool, model_name: str) -> Any:
    """The session's model for this test's ``model_name`` (each --mc-model in turn; loaded once, read-only).
    Usage: ``def test_x(lm): acts = mechclaims.forward.capture(lm, ids, sites)``."""
    try:
        return model_pool.get(model_name)
    except MechClaimsError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(autouse=True)
def _hook_guard(request: pytest.FixtureRequest):
    """Fails any test that leaves a hook on a shared model (nothing to check before a model is loaded)."""
    pool = request.config.stash.get(POOL, None)
    if pool is None or not pool.loaded():
        yield
        return
    from mechclaims.forward.capture import clear_hooks, count_hooks

    before = {n: count_hooks(m.model) for n, m in pool.loaded().items()}
    yield
    for n, m in pool.loaded().items():
        after = count_hooks(m.model)
        if after != before.get(n, 0):
            clear_hooks(m.model)  # so one leaky test does not poison the rest of the session
            pytest.fail(f"{request.node.nodeid} left {after - before.get(n, 0)} hook(s) on the shared model {n}; "
                        f"use mechclaims.intervene(), whose hooks come off in finally.", pytrace=False)


# ---------------------------------------------------------------------------------------------------------------
# Session end


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Claims must never mutate the session models: compare each weight fingerprint with the one at load. Then
    the run's summary.json is written, whatever happened (mechclaims.harness.runstate)."""
    from mechclaims.harness import runstate

    config = session.config
    pool = config.stash.get(POOL, None)
    if pool is not None and pool.loaded():
        from mechclaims.model.fingerprint import weight_fingerprint

        for name, lm in pool.loaded().items():
            # A file fingerprint (st-...) says nothing about the loaded tensors: compare with the state-dict hash
            # taken at load, where the model was small enough to take one (mechclaims.model.load._fingerprint).
            ref = lm.extra.get("state_fingerprint", None if lm.fingerprint.startswith("st-") else lm.fingerprint)
            if ref is not None and weight_fingerprint(lm.model) != ref:
                config.stash.setdefault(MUTATED, []).append(name)
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
    recs = config.stash.get(RECORDS, [])
    if recs and SETTINGS not in config.stash:  # xdist controller of a lazily activated session
        activate(config, resolve=False)
        start_run(config)
    s = config.stash.get(SETTINGS, None)
    if s is not None and not hasattr(config, "workerinput"):
        runstate.finish(session, exitstatus, recs, s, pool)


def pytest_unconfigure(config: pytest.Config) -> None:
    from mechclaims.harness import runstate

    runstate.stop(config)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    from mechclaims.harness import runstate

    for name in config.stash.get(MUTATED, []):
        terminalreporter.write_line(f"mechclaims: ERROR: the weights of the shared model {name} changed during the "
                                    f"session; a test edited them in place instead of using intervene().", red=True)
    s = config.stash.get(SETTINGS, None)
    if s is None or hasattr(config, "workerinput"):
        return
    from mechclaims.report.summary import terminal_table

    st = config.stash.get(runstate.STATE, None)
    recs = config.stash.get(RECORDS, [])
    res = st.result if st is not None else {}
    if recs:
        terminalreporter.write_sep("=", "mechclaims verdicts")
        for line in terminal_table(recs):
            terminalreporter.write_line(line)
    created = [r for r in recs if r.get("baseline") == "created"]
    if created:
        terminalreporter.write_line(
            f"mechclaims: {len(created)} baseline(s) created under {s.baselines} (none existed for these model(s) "
            f"and stimuli): the outcomes above are this run's own; rerun to check later runs against them.",
            yellow=True)
    pool = config.stash.get(POOL, None)
    st_store = pool._stat_store if pool is not None else None
    if st_store is not None and st_store.hits:
        terminalreporter.write_line(
            f"mechclaims: statistics read from the cache for {st_store.hits} result(s), computed for "
            f"{st_store.misses} (same weights, stimuli, options, library and code versions); "
            f"--mc-statistics-cache refresh recomputes them.")
    if res.get("error"):
        terminalreporter.write_line(f"mechclaims: ERROR: {res['error']}", red=True)
    elif res.get("interrupted"):
        terminalreporter.write_line(f"mechclaims: run interrupted ({res['reason']}); its summary: {res['summary']}. "
                                    f"The latest complete run is unchanged: {s.artifacts / 'latest'}.", yellow=True)
    elif res:
        where = f"{s.artifacts / 'summary.json'} (latest: {res['run']})" if res.get("promoted") else res["summary"]
        terminalreporter.write_line(f"summary: {where}   report: {res.get('report', '-')}")
