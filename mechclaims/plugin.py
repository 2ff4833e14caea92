"""pytest plugin: options and their ini twins, header, parametrization, session fixtures, guard, summary.

Precedence for every option: command line > ini (``[tool.pytest.ini_options]``) > built-in default.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from .errors import MechClaimsError, OptionError

ROOT = Path(__file__).resolve().parent.parent

# (option, ini name, help, default)
OPTIONS = [
    ("--model", "mechclaims_models", "model name(s): built-in (smollm2-135m, minilm-l6, tiny-gpt2, tiny-llama, "
     "tiny-bert), an HF id or a local dir; repeat for several", None),
    ("--device", "mechclaims_device", "cpu (default), cuda, cuda:N, or auto (device_map='auto')", "cpu"),
    ("--dtype", "mechclaims_dtype", "float32 (default), bfloat16 or float16", "float32"),
    ("--artifacts-dir", "mechclaims_artifacts_dir", "where plots, summary.json and report.html go", "artifacts"),
    ("--seed", "mechclaims_seed", "one seed for every random draw (permutations, bootstraps, random sets)", "0"),
    ("--permutations", "mechclaims_permutations", "permutation/null draws per claim (default 1000)", "1000"),
    ("--layers", "mechclaims_layers", "layers to test: 'all' or e.g. '0,5,10-12'", "all"),
    ("--cache-dir", "mechclaims_cache_dir", "converted weights cache (default $MECHCLAIMS_CACHE or "
     "~/.cache/mechclaims)", None),
    ("--baselines-dir", "mechclaims_baselines_dir", "committed baselines root (default: baselines/ in the repo)",
     None),
    ("--stimuli", "mechclaims_stimuli", "override a claim's stimuli: NAME=PATH (repeatable); names are listed in "
     "fixtures/README.md", None),
    ("--activation-cache", "mechclaims_activation_cache", "on (default): reuse captured activations from "
     "<cache-dir>/activations, keyed by weights, stimuli and versions; off: never touch it; refresh: recompute "
     "and overwrite", "on"),
    ("--lesion-null-sets", "mechclaims_lesion_null_sets", "upper bound on random neuron sets per side and layer in "
     "the lesion claim's sequential null (default 100)", "100"),
    ("--keep-runs", "mechclaims_keep_runs", "finished runs kept under <artifacts-dir>/runs besides the latest "
     "(default 10; 0 keeps all)", "10"),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mechclaims")
    for opt, ini, help_, default in OPTIONS:
        multi = opt in ("--model", "--stimuli")
        group.addoption(opt, action="append" if multi else "store", default=None,
                        dest=ini, help=f"{help_} [ini: {ini}]")
        parser.addini(ini, help=help_, type="linelist" if multi else "string",
                      default=[] if multi else (default or ""))


@dataclass
class Settings:
    models: list[str]
    device: str
    dtype: str
    artifacts: Path
    seed: int
    permutations: int
    layers: str
    cache_dir: str | None
    stimuli: dict[str, str]
    activation_cache: str = "on"
    lesion_null_sets: int = 100
    baselines: Path = ROOT / "baselines"
    records: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None  # this run's folder under <artifacts>/runs (mechclaims.runs); None before start
    keep_runs: int = 10

    @property
    def out(self) -> Path:
        """Where this run writes its figures and obtained baselines: its run folder."""
        return self.run_dir or self.artifacts

    def stimuli_path(self, name: str, default: str | Path) -> Path:
        """The user's file for stimuli set ``name`` (via --stimuli NAME=PATH), else the bundled default."""
        return Path(self.stimuli.get(name, default))

    def layer_list(self, n_layers: int) -> list[int]:
        """The --layers selection that exists in a model of ``n_layers`` layers (checked at start-up)."""
        from .options import layers_for

        return layers_for(self.layers, n_layers)


def _get(config: pytest.Config, opt: str, ini: str, default: Any) -> Any:
    v = config.getoption(ini)
    if v is not None:
        return v
    v = config.getini(ini)
    return v if v not in ("", []) else default


def _settings(config: pytest.Config) -> Settings:
    from .models import DEFAULT_MODEL, check_device_dtype

    vals = {ini: _get(config, opt, ini, d) for opt, ini, _, d in OPTIONS}
    models = vals["mechclaims_models"] or [DEFAULT_MODEL]
    stim = {}
    for s in vals["mechclaims_stimuli"] or []:
        if "=" not in s:
            raise OptionError(f"--stimuli {s!r}: expected NAME=PATH, e.g. --stimuli ged_pairs=my_pairs.jsonl")
        k, v = s.split("=", 1)
        stim[k.strip()] = v.strip()
    from .stimuli import check_stimuli_overrides

    check_stimuli_overrides(stim)  # an unknown NAME or a missing PATH is a usage error, not a silent default
    from . import options

    seed = options.seed(vals["mechclaims_seed"])
    perms = options.permutations(vals["mechclaims_permutations"])
    null_sets = options.lesion_null_sets(vals["mechclaims_lesion_null_sets"])
    keep = options.keep_runs(vals["mechclaims_keep_runs"])
    options.parse_layers(vals["mechclaims_layers"])  # syntax now; the range once the models' depths are known
    act_mode = vals["mechclaims_activation_cache"]
    if act_mode not in ("on", "off", "refresh"):
        raise OptionError(f"--activation-cache {act_mode!r}: use on, off or refresh.")
    check_device_dtype(vals["mechclaims_device"], vals["mechclaims_dtype"])
    art = options.writable_dir("--artifacts-dir", vals["mechclaims_artifacts_dir"])
    return Settings(models=list(dict.fromkeys(models)), device=vals["mechclaims_device"],
                    dtype=vals["mechclaims_dtype"], artifacts=art.resolve(), seed=seed, permutations=perms,
                    layers=vals["mechclaims_layers"], cache_dir=vals["mechclaims_cache_dir"], stimuli=stim,
                    activation_cache=act_mode, lesion_null_sets=null_sets, keep_runs=keep,
                    baselines=Path(vals["mechclaims_baselines_dir"] or ROOT / "baselines").expanduser().resolve())


def _check_baselines_dir(config: pytest.Config, s: Settings) -> None:
    """--baselines-dir must be writable when baselines will be written (--force-regen, or none there yet). A
    read-only dir that already holds baselines still checks them; it gets one warning at start-up."""
    from .options import writable_dir

    try:
        writable_dir("--baselines-dir", s.baselines)
    except OptionError as e:
        regen = bool(config.getoption("force_regen", False))
        has_any = s.baselines.is_dir() and any(s.baselines.iterdir())
        if regen or not has_any:
            why = "--force-regen rewrites baselines" if regen else "it holds no baselines yet, so every test writes one"
            raise OptionError(f"{e} ({why}.)") from None
        config.issue_config_time_warning(pytest.PytestConfigWarning(
            f"mechclaims: {e} Existing baselines are checked; a missing one cannot be written."), stacklevel=2)


class ModelPool:
    """Loads each model at most once per process; claims share it read-only."""

    def __init__(self, settings: Settings):
        self.s = settings
        self._models: dict[str, Any] = {}
        self._configs: dict[str, Any] = {}
        self.memo: dict[Any, Any] = {}
        self._store = None

    def n_layers(self, name: str) -> int:
        from .models import n_layers_of, resolve_config

        if name not in self._configs:
            self._configs[name] = resolve_config(name, self.s.cache_dir)[0]
        return n_layers_of(self._configs[name])

    def get(self, name: str):
        from .models import load_model

        if name not in self._models:
            self._models[name] = load_model(name, device=self.s.device, dtype=self.s.dtype,
                                            cache=self.s.cache_dir, seed=self.s.seed)
        return self._models[name]

    def loaded(self) -> dict[str, Any]:
        return dict(self._models)

    def cached(self, key: Any, fn: Callable[[], Any]) -> Any:
        """Session memo: compute ``fn()`` once per key (e.g. one capture per model and stimuli set)."""
        if key not in self.memo:
            self.memo[key] = fn()
        return self.memo[key]

    @property
    def store(self):
        from .actcache import ActivationStore
        from .models import cache_root

        if self._store is None:
            self._store = ActivationStore(cache_root(self.s.cache_dir) / "activations", self.s.activation_cache)
        return self._store

    def random_copy(self, lm: Any, seed: int) -> Any:
        """The random-weight control of ``lm``, built lazily (see :class:`mechclaims.models.LazyRandomCopy`)."""
        from .models import LazyRandomCopy

        return self.cached((lm.name, lm.fingerprint, "random-weight-copy", seed), lambda: LazyRandomCopy(lm, seed))

    def evict(self) -> None:
        """Free what the disk cache can give back cheaply: captured activations and random-weight copies. Called
        at the end of each claim module, so peak memory is one claim's working set, not the session's sum."""
        from .models import LazyRandomCopy

        if self.s.activation_cache == "off" or (self._store is not None and self._store.degraded):
            return  # nothing to reload from (off, or a read-only/full cache): recomputing costs more than it saves
        for k in [k for k in self.memo if isinstance(k, tuple) and k and k[0] == "activations"]:
            del self.memo[k]
        for v in self.memo.values():
            if isinstance(v, LazyRandomCopy):
                v.release()

    def activations(self, lm: Any, tag: str, parts: tuple, fn: Callable[[], Any]) -> Any:
        """Session memo backed by the on-disk activation cache: ``fn()`` (a capture, arrays only) runs once per
        model weights, ``tag``, ``parts`` (stimuli hashes, sites, positions), dtype, device and library versions."""
        dev = str(lm.device).split(":")[0]
        key = {"model": lm.name, "fingerprint": lm.fingerprint, "tag": tag, "parts": parts, "dtype": lm.dtype,
               "device": dev}
        return self.cached(("activations", lm.name, lm.fingerprint, tag, parts),
                           lambda: self.store.get(key, fn))


_SETTINGS = pytest.StashKey[Settings]()
_POOL = pytest.StashKey[ModelPool]()
_RECORDS = pytest.StashKey[list]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "claim(name, family='observational', controls=(), control_of=None, "
                                       "aggregate=None, kinds=None): a mechanistic claim test (name may use the "
                                       "test's parameters, e.g. 'lesion_{rule}'); controls= names the claim's control "
                                       "tests, control_of= marks a control and names its claim; family is "
                                       "'observational' or 'causal'; kinds= limits the model kinds.")
    config.addinivalue_line("markers", "xdist_group(name): pytest-xdist --dist loadgroup grouping")
    for m in ("observational", "causal", "control", "slow"):
        config.addinivalue_line("markers", f"{m}: mechclaims {m} tests")
    try:
        s = _settings(config)
        pool = ModelPool(s)
        # Resolves every --model now (a bad name is a usage error, not a traceback), and checks --layers against
        # their depths, so a layer that does not exist never reaches collection.
        from .options import check_layers

        check_layers(s.layers, {name: pool.n_layers(name) for name in s.models})
        _check_baselines_dir(config, s)
        from . import runstate

        s.run_dir = runstate.start(config, s.artifacts)
    except MechClaimsError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[_SETTINGS] = s
    config.stash[_POOL] = pool
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1 and s.device == "cpu":
        import torch

        # Each xdist worker would start one intra-op thread per core: n workers x n threads on n cores spin against
        # each other (measured 10x slower forward passes on 2 cores). Split the cores instead.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    config.stash[_RECORDS] = []


def pytest_report_header(config: pytest.Config) -> list[str]:
    import numpy
    import torch
    import transformers

    s = config.stash.get(_SETTINGS, None)
    if s is None:
        return []
    return [f"mechclaims: torch {torch.__version__}, transformers {transformers.__version__}, numpy "
            f"{numpy.__version__}; device {s.device}, dtype {s.dtype}, seed {s.seed}, permutations {s.permutations}",
            f"mechclaims models: {', '.join(s.models)}; artifacts: {s.artifacts}"]


def _claim_kinds(metafunc: pytest.Metafunc) -> tuple[str, ...] | None:
    m = metafunc.definition.get_closest_marker("claim")
    return tuple(m.kwargs["kinds"]) if m and "kinds" in m.kwargs else None


def _kind_of_name(pool: ModelPool, name: str) -> str:
    cfg = pool._configs[name]
    archs = getattr(cfg, "architectures", None) or []
    if name in ("smollm2-135m", "tiny-gpt2", "tiny-llama") or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal"
    if name == "tiny-bert" or any(a.endswith("ForMaskedLM") for a in archs):
        return "masked"
    return "encoder"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``model_name`` (and ``layer``, jointly) with ids like ``smollm2-135m-L10``."""
    if "model_name" not in metafunc.fixturenames:
        return
    s, pool = metafunc.config.stash[_SETTINGS], metafunc.config.stash[_POOL]
    kinds = _claim_kinds(metafunc)
    params = []
    for name in s.models:
        marks = []
        if kinds and _kind_of_name(pool, name) not in kinds:
            marks = [pytest.mark.skip(reason=f"claim needs a {' or '.join(kinds)} model and {name} is "
                                             f"{_kind_of_name(pool, name)}; run it with --model on a "
                                             f"{kinds[0]} model (e.g. {'tiny-bert' if kinds[0] == 'masked' else 'smollm2-135m'})")]
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Claim markers: the family as a marker of its own (``-m causal``), and the xdist group of the model."""
    for item in items:
        m = item.get_closest_marker("claim")
        if m is not None:
            fam = m.kwargs.get("family", "observational")
            item.add_marker(getattr(pytest.mark, fam))
            # xdist --dist loadgroup: keep each model's tests on one worker, so each loads it once.
            cs = getattr(item, "callspec", None)
            if cs is not None and "model_name" in cs.params:
                item.add_marker(pytest.mark.xdist_group(cs.params["model_name"]))


# ---------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def mc(pytestconfig: pytest.Config) -> Settings:
    """Resolved mechclaims settings (options > ini > defaults)."""
    return pytestconfig.stash[_SETTINGS]


@pytest.fixture(scope="session")
def model_pool(pytestconfig: pytest.Config) -> ModelPool:
    return pytestconfig.stash[_POOL]


@pytest.fixture(scope="module", autouse=True)
def _evict_after_module(pytestconfig: pytest.Config):
    """Peak memory is one claim module's working set: its activations reload from the disk cache if needed."""
    yield
    pool = pytestconfig.stash.get(_POOL, None)
    if pool is not None:
        pool.evict()
        import gc

        gc.collect()


@pytest.fixture
def lm(model_pool: ModelPool, model_name: str):
    """The session's model for this test's ``model_name`` param (loaded once, read-only)."""
    try:
        return model_pool.get(model_name)
    except MechClaimsError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(autouse=True)
def _hook_guard(request: pytest.FixtureRequest):
    """Fails any test that leaves a hook on a shared model, or mutates its weights."""
    pool = request.config.stash.get(_POOL, None)
    before = {n: _our_hooks(m.model) for n, m in (pool.loaded().items() if pool else [])}
    yield
    if pool is None:
        return
    for n, m in pool.loaded().items():
        after = _our_hooks(m.model)
        if after != before.get(n, 0):
            from .capture import clear_hooks

            clear_hooks(m.model)  # so one leaky test does not poison the rest of the session
            pytest.fail(f"{request.node.nodeid} left {after - before.get(n, 0)} hook(s) on the shared model {n}; "
                        f"use mechclaims.capture.intervene(), whose hooks come off in finally.", pytrace=False)


def _our_hooks(model: Any) -> int:
    from .capture import count_hooks

    return count_hooks(model)


class Artifacts:
    """This test's artifact folder: ``<run folder>/<model>/<test function>/<param id>/`` (each name one safe
    path component, see mechclaims.paths)."""

    def __init__(self, root: Path, node: pytest.Item):
        from .paths import inside

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
    a = Artifacts(mc.out, request.node)
    request.node.stash[_ART] = a
    return a


_ART = pytest.StashKey[Artifacts]()
_DRIFT = pytest.StashKey[list]()
_REC = pytest.StashKey[list]()
_OUT = pytest.StashKey[dict]()


COUNT_KEYS = ("n_null", "mean_draws", "frac_lowered", "n_draws")
COUNT_TOL = {"rtol": 0.25, "atol": 0.05}


class Baseline:
    def __init__(self, request: pytest.FixtureRequest, settings: Settings):
        self.request, self.s = request, settings

    def path(self) -> Path:
        from .paths import inside, safe_component

        node = self.request.node
        model = node.callspec.params.get("model_name", "nomodel") if getattr(node, "callspec", None) else "nomodel"
        pid = node.callspec.id if getattr(node, "callspec", None) else "default"
        safe = safe_component(pid)
        if self.s.stimuli:
            # Own stimuli get their own baselines, keyed by the override set, never compared with the bundled ones.
            import hashlib

            from .stimuli import stimuli_hash

            content = {k: hashlib.sha256(Path(v).read_bytes()).hexdigest() if Path(v).is_file() else v
                       for k, v in self.s.stimuli.items()}
            safe += f"@stimuli-{stimuli_hash(content)}"
        return inside(self.s.baselines, model, node.originalname) / f"{safe}.yml"

    def check(self, numbers: dict[str, float], lm: Any = None, tolerances: dict | None = None,
              default_tolerance: dict | None = None) -> None:
        """Check ``numbers`` against the committed baseline for this test id (``--force-regen`` rewrites)."""
        from .baseline import check, environment

        __tracebackhide__ = True
        p = self.path()
        # The "obtained" copy goes with the artifacts, never next to the committed baselines.
        obtained = self.s.out / "obtained" / p.relative_to(self.s.baselines)
        obtained.parent.mkdir(parents=True, exist_ok=True)
        drift = self.request.node.stash.setdefault(_DRIFT, [])
        # Reported counts of sequential draws and thresholded fractions move in whole steps when the last float bits
        # move (another thread count, another batch split): a tolerance of their resolution, never deciding.
        loose = {k: COUNT_TOL for k in numbers if k.endswith(COUNT_KEYS)}
        check(self.request, p, numbers, environment(lm), {**loose, **(tolerances or {})}, default_tolerance, obtained,
              drift.extend)


@pytest.fixture
def baseline(request: pytest.FixtureRequest, mc: Settings) -> Baseline:
    return Baseline(request, mc)


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``record(verdict, layer=..., site=..., **extra)``: adds the verdict to summary.json and the report. The
    first verdict recorded is the test's own: its outcome is the test's outcome (see ``expect``)."""
    recs = request.node.stash.setdefault(_REC, [])

    def _record(verdict: Any, **extra: Any) -> None:
        recs.append({**verdict.to_record(), **extra})
        if _OUT not in request.node.stash:
            request.node.stash[_OUT] = _outcome_info(request, verdict)
    return _record


def _expected(request: pytest.FixtureRequest, role: str) -> tuple[str, str, bool]:
    """(expected outcome, its recorded reason, enforced) for this test id. Outcomes recorded in the claim module's
    ``EXPECTED_OUTCOMES`` were measured on the bundled stimuli: with --stimuli overrides they do not apply."""
    from .outcome import DEFAULT_EXPECTED, OUTCOMES, CONTROL_OUTCOMES

    mapping = getattr(request.module, "EXPECTED_OUTCOMES", None) or {}
    entry = mapping.get(request.node.name)
    s = request.config.stash.get(_SETTINGS, None)
    if entry is not None:
        exp, why = (entry, "") if isinstance(entry, str) else entry
        allowed = CONTROL_OUTCOMES if role == "control" else OUTCOMES
        if exp not in allowed:
            raise ValueError(f"EXPECTED_OUTCOMES[{request.node.name!r}] = {exp!r}: a {role}'s outcome is one of "
                             f"{allowed}")
        if s is not None and s.stimuli:
            return exp, why, False
        return exp, why, True
    return DEFAULT_EXPECTED[role], "", not (s is not None and s.stimuli)


def _outcome_info(request: pytest.FixtureRequest, verdict: Any) -> dict[str, Any]:
    exp, why, enforced = _expected(request, verdict.role)
    return {"outcome": verdict.outcome, "expected": exp, "expected_reason": why, "enforced": enforced,
            "role": verdict.role, "controls": verdict.control_outcomes()}


@pytest.fixture
def expect(request: pytest.FixtureRequest) -> Callable[[Any], None]:
    """``expect(verdict)``: the test's outcome must be the one recorded for this test id.

    Recorded outcomes live in the claim module's ``EXPECTED_OUTCOMES`` (test id -> (outcome, reason with the
    numbers)); without an entry a claim is expected ``supported`` and a control ``failed``. Any other outcome fails
    the test, naming the recorded and the new outcome with the numbers. A recorded outcome other than the default
    shows as xfail with its reason. Call it last, after ``record`` and ``baseline.check``.
    """
    def _expect(verdict: Any) -> None:
        __tracebackhide__ = True
        from .outcome import DEFAULT_EXPECTED

        info = _outcome_info(request, verdict)
        request.node.stash[_OUT] = info
        got, exp, why = info["outcome"], info["expected"], info["expected_reason"]
        default = DEFAULT_EXPECTED[verdict.role]
        if not info["enforced"]:
            if got != default:
                pytest.xfail(f"{got} on these stimuli (no outcome is recorded for them; the recorded ones apply only "
                             f"to the bundled stimuli)")
            return
        if got != exp:
            was = f"{exp} ({why})" if why else f"{exp} (the default for a {verdict.role})"
            pytest.fail(f"outcome changed: recorded {was}; now {got.upper()}.\n  {verdict.explain()}\n  If the new "
                        f"outcome is right, record it deliberately: `python scripts/record_outcomes.py <run>/summary.json` "
                        f"writes claims/expected/{request.module.__name__.split('.')[-1]}.yml with the numbers (or "
                        f"EXPECTED_OUTCOMES in {request.module.__name__} for a claim of your own).", pytrace=False)
        if exp != default:
            pytest.xfail(f"{got} (recorded): {why}")
    return _expect


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    rep = yield
    failure = _library_failure(item, rep, call)
    if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
        recs = item.stash.get(_REC, [])
        art = item.stash.get(_ART, None)
        m = item.get_closest_marker("claim")
        if m is not None:
            params = item.callspec.params if getattr(item, "callspec", None) else {}
            test_outcome = "xfailed" if hasattr(rep, "wasxfail") and rep.skipped else (
                "xpassed" if hasattr(rep, "wasxfail") else rep.outcome)
            info = item.stash.get(_OUT, {})
            outcome = info.get("outcome")
            if failure == "inconclusive":  # non-finite activations: nothing about the claim could be measured
                outcome = "inconclusive"
            elif outcome is None:  # the test never reached its verdict: a crash, a skip, a bad input
                outcome = "skipped" if rep.skipped else "error"
            # Via user_properties so pytest-xdist ships it to the controller, which writes the summary.
            rep.user_properties.append(("mechclaims", {
                "test_id": item.nodeid, "claim": claim_name(item), "family": m.kwargs.get("family", "observational"),
                "role": "control" if m.kwargs.get("control_of") else "claim",
                "control_of": _fmt_name(m.kwargs.get("control_of"), params),
                "declared_controls": [_fmt_name(c, params) for c in m.kwargs.get("controls", ())],
                "aggregate": m.kwargs.get("aggregate"), "model": params.get("model_name"),
                "layer": params.get("layer"), "outcome": outcome, "test_outcome": test_outcome,
                "expected": info.get("expected"), "expected_reason": info.get("expected_reason", ""),
                "controls": info.get("controls", {}), "duration_s": round(rep.duration, 3),
                "verdicts": recs, "artifacts": [str(p) for p in (art.files if art else []) if p.exists()],
                "reason": _reason(rep), "drift": item.stash.get(_DRIFT, []),
                "statement": _statement(item),
            }))
    return rep


def _library_failure(item: pytest.Item, rep: pytest.TestReport, call: pytest.CallInfo) -> str | None:
    """A MechClaimsError inside a test shows as its one-paragraph message, never a traceback from deep inside the
    library. Returns ``"inconclusive"`` for non-finite activations (the claim could not be measured) and
    ``"stop"`` for an output that cannot be written (a full or read-only disk: the session stops at the first)."""
    from .errors import ArtifactsWriteError, NonFiniteActivationError

    if not (rep.failed and call.excinfo is not None and call.excinfo.errisinstance(MechClaimsError)):
        return None
    rep.longrepr = f"{call.excinfo.typename}: {call.excinfo.value}"
    if call.excinfo.errisinstance(NonFiniteActivationError):
        return "inconclusive"
    if call.excinfo.errisinstance(ArtifactsWriteError):
        item.session.shouldstop = f"{call.excinfo.value}"
        return "stop"
    return None


def _fmt_name(name: Any, params: dict[str, Any]) -> Any:
    """A claim name may use the test's parameters: ``"lesion_{rule}"`` -> ``"lesion_contrast"``."""
    if not isinstance(name, str) or "{" not in name:
        return name
    try:
        return name.format(**params)
    except (KeyError, IndexError, ValueError):
        return name


def claim_name(item: pytest.Item) -> str:
    m = item.get_closest_marker("claim")
    params = item.callspec.params if getattr(item, "callspec", None) else {}
    return _fmt_name(m.args[0] if m is not None and m.args else item.originalname, params)


def _reason(rep: pytest.TestReport) -> str:
    """Why a test did not simply pass: the xfail reason, the skip reason, or the failure's first line."""
    if hasattr(rep, "wasxfail"):
        return str(rep.wasxfail)
    if rep.skipped and isinstance(rep.longrepr, tuple):
        return str(rep.longrepr[2]).removeprefix("Skipped: ")
    if rep.failed:
        text = rep.longreprtext
        for line in text.splitlines():
            if line.startswith("E "):
                return line[1:].strip()[:500]
        return text.splitlines()[-1][:500] if text else ""
    return ""


def _statement(item: pytest.Item) -> dict[str, str]:
    """The claim's statement and falsification rule, from the claim module's docstring."""
    doc = (getattr(item, "module", None).__doc__ or "") if hasattr(item, "module") else ""
    fn_doc = (getattr(item, "function", None).__doc__ or "") if hasattr(item, "function") else ""
    falsified = next((l.split(":", 1)[1].strip() for l in doc.splitlines() if l.lower().startswith("falsified by")), "")
    return {"statement": (fn_doc or doc).strip()[:1500], "falsified_by": falsified}


from .runstate import (pytest_collection_finish, pytest_collectreport, pytest_configure_node,  # noqa: E402,F401
                       pytest_internalerror, pytest_keyboard_interrupt)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for k, v in getattr(report, "user_properties", []):
        if k == "mechclaims" and _CONFIG is not None:
            _CONFIG.stash[_RECORDS].append(v)


_CONFIG: pytest.Config | None = None


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    global _CONFIG
    _CONFIG = session.config


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Claims must never mutate the session models: compare each weight fingerprint with the one at load. Then
    the run's summary.json is written, whatever happened (mechclaims.runstate)."""
    from . import runstate
    from .models import weight_fingerprint

    pool = session.config.stash.get(_POOL, None)
    for name, lm in (pool.loaded().items() if pool else []):
        now = weight_fingerprint(lm.model)
        if now != lm.fingerprint:
            session.config.stash.setdefault(_MUTATED, []).append(name)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    s = session.config.stash.get(_SETTINGS, None)
    if s is not None and not hasattr(session.config, "workerinput"):
        runstate.finish(session, exitstatus, session.config.stash.get(_RECORDS, []), s, pool)


def pytest_unconfigure(config: pytest.Config) -> None:
    from . import runstate

    runstate.stop(config)


_MUTATED = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    from . import runstate
    from .report import terminal_table

    for name in config.stash.get(_MUTATED, []):
        terminalreporter.write_line(f"mechclaims: ERROR: the weights of the shared model {name} changed during the "
                                    f"session; a test edited them in place instead of using intervene().", red=True)
    s = config.stash.get(_SETTINGS, None)
    st = config.stash.get(runstate.STATE, None)
    recs = config.stash.get(_RECORDS, [])
    if s is None or hasattr(config, "workerinput"):
        return
    res = st.result if st is not None else {}
    if recs:
        terminalreporter.write_sep("=", "mechclaims verdicts")
        for line in terminal_table(recs):
            terminalreporter.write_line(line)
    if res.get("error"):
        terminalreporter.write_line(f"mechclaims: ERROR: {res['error']}", red=True)
    elif res.get("interrupted"):
        terminalreporter.write_line(f"mechclaims: run interrupted ({res['reason']}); its summary: {res['summary']}. "
                                    f"The latest complete run is unchanged: {s.artifacts / 'latest'}.", yellow=True)
    elif res:
        where = f"{s.artifacts / 'summary.json'} (latest: {res['run']})" if res.get("promoted") else res["summary"]
        terminalreporter.write_line(f"summary: {where}   report: {res.get('report', '-')}")
