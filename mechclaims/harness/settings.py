"""The plugin's options, their ini twins, and the resolved :class:`Settings` (no torch import here).

Every option is prefixed ``--mc-`` so it cannot clash with another plugin's or a project's own ``--model``; its
ini twin is ``mechclaims_<name>`` in ``[tool.pytest.ini_options]``. Precedence: command line > ini > default.
Relative paths from the command line resolve from the current directory; from the ini and the defaults, from the
rootdir (the directory of the ini file, else the directory pytest was started in).
"""
from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mechclaims.datasets.io import check_stimuli_overrides
from mechclaims.errors import OptionError
from mechclaims.harness import options
from mechclaims.model.registry import DEFAULT_MODEL, check_device_dtype
from mechclaims.store.statcache import default_mode

PREFIX = "--mc-"
# (name, ini, help, default, kind): kind is "append" (repeatable), "flag" (store_true) or "store"
OPTIONS: list[tuple[str, str, str, Any, str]] = [
    ("model", "mechclaims_models", "model name(s): built-in (smollm2-135m, minilm-l6, tiny-gpt2, tiny-llama, "
     "tiny-bert), an HF id or a local dir; repeat for several", None, "append"),
    ("device", "mechclaims_device", "cpu (default), cuda, cuda:N, or auto (device_map='auto')", "cpu", "store"),
    ("dtype", "mechclaims_dtype", "float32 (default), bfloat16 or float16", "float32", "store"),
    ("artifacts-dir", "mechclaims_artifacts_dir", "where plots, summary.json and report.html go (default: "
     "artifacts/ under the rootdir)", None, "store"),
    ("seed", "mechclaims_seed", "one seed for every random draw (permutations, bootstraps, random sets)", "0",
     "store"),
    ("permutations", "mechclaims_permutations", "permutation/null draws per claim (default 1000)", "1000", "store"),
    ("layers", "mechclaims_layers", "layers to test: 'all' or e.g. '0,5,10-12'", "all", "store"),
    ("cache-dir", "mechclaims_cache_dir", "converted weights cache (default $MECHCLAIMS_CACHE or "
     "~/.cache/mechclaims)", None, "store"),
    ("baselines-dir", "mechclaims_baselines_dir", "baselines root (default: baselines/ under the rootdir; with "
     "--mc-stimuli overrides, <artifacts-dir>/baselines)", None, "store"),
    ("stimuli", "mechclaims_stimuli", "override a claim's stimuli: NAME=PATH (repeatable); bundled names are in "
     "fixtures/README.md, a claim module may declare more in its STIMULI dict", None, "append"),
    ("activation-cache", "mechclaims_activation_cache", "on (default): reuse captured activations from "
     "<cache-dir>/activations; off: never touch it; refresh: recompute and overwrite", "on", "store"),
    ("statistics-cache", "mechclaims_statistics_cache", "on (default): reuse a claim's per-layer statistics from "
     "<cache-dir>/statistics, keyed by the captured arrays they read (else weights and library versions), stimuli, "
     "options and code; off: never touch it; "
     "refresh: recompute and overwrite (default from $MECHCLAIMS_STATISTICS_CACHE)", None, "store"),
    ("lesion-null-sets", "mechclaims_lesion_null_sets", "upper bound on random neuron sets per side and layer in "
     "the lesion claim's sequential null (default 200)", "200", "store"),
    ("ged-heldout-n", "mechclaims_ged_heldout_n", "held-out windows per label in the GED claims: 'all' (default) "
     "or n, a sample drawn with --mc-seed", "all", "store"),
    ("keep-runs", "mechclaims_keep_runs", "finished runs kept under <artifacts-dir>/runs besides the latest "
     "(default 10; 0 keeps all)", "10", "store"),
    ("revision", "mechclaims_revision", "hub revision (branch, tag or commit) of every HF model, e.g. a Pythia "
     "checkpoint 'step143000'", None, "store"),
    ("trust-remote-code", "mechclaims_trust_remote_code", "allow HF models whose code lives in their repository "
     "(runs that code)", False, "flag"),
    ("batch-size", "mechclaims_batch_size", "sequences per forward pass in every capture (default: each claim's "
     "own, 8-32); lower it for a big model", None, "store"),
    ("offline", "mechclaims_offline", "never reach the hub: local files only (also on when HF_HUB_OFFLINE=1)",
     False, "flag"),
]
MAX_BATCH = 4096


def flag(name: str) -> str:
    """The command-line spelling of option ``name``: ``flag("seed") == "--mc-seed"``."""
    return PREFIX + name


def add_options(parser: pytest.Parser, prefix: str = PREFIX, ini: bool = True) -> None:
    """Register every option as ``<prefix><name>`` (the plugin: ``--mc-``; the repo's aliases: ``--``)."""
    group = parser.getgroup("mechclaims", "mechclaims: hypothesis tests for mechanistic claims")
    for name, dest, help_, default, kind in OPTIONS:
        action = {"append": "append", "flag": "store_true", "store": "store"}[kind]
        group.addoption(prefix + name, action=action, default=None, dest=dest,
                        help=f"{help_} [ini: {dest}]" if ini else f"alias of {flag(name)}")
        if ini:
            parser.addini(dest, help=help_, type={"append": "linelist", "flag": "bool"}.get(kind, "string"),
                          default={"append": [], "flag": False}.get(kind, ""))  # "" = unset: see _get


def given(config: pytest.Config) -> bool:
    """Whether the command line or the ini set any mechclaims option (the plugin then validates at start-up)."""
    for _, dest, _, default, kind in OPTIONS:
        if config.getoption(dest, None) is not None:
            return True
        try:
            v = config.getini(dest)
        except ValueError:
            continue
        if v not in ("", [], False, None):
            return True
    return False


def base_dir(config: pytest.Config) -> Path:
    """Where defaults and ini paths resolve: the ini file's directory (the rootdir), else the invocation dir."""
    return Path(config.rootpath) if config.inipath is not None else Path(config.invocation_params.dir)


def _get(config: pytest.Config, dest: str, default: Any) -> tuple[Any, str]:
    v = config.getoption(dest, None)
    if v is not None:
        return v, "cli"
    v = config.getini(dest)
    return (v, "ini") if v not in ("", [], False) else (default, "default")


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
    statistics_cache: str = "on"
    lesion_null_sets: int = 200
    baselines: Path = Path("baselines")
    records: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None  # this run's folder under <artifacts>/runs (mechclaims.store.runs); None before start
    keep_runs: int = 10
    revision: str | None = None
    trust_remote_code: bool = False
    batch_size: int | None = None
    offline: bool = False
    baselines_given: bool = False
    ged_heldout_n: int | None = None  # None: every held-out window (the default)

    @property
    def out(self) -> Path:
        """Where this run writes its figures and obtained baselines: its run folder."""
        return self.run_dir or self.artifacts

    def stimuli_path(self, name: str, default: str | Path) -> Path:
        """The user's file for stimuli set ``name`` (via --mc-stimuli NAME=PATH), else ``default``."""
        return Path(self.stimuli.get(name, default))

    def layer_list(self, n_layers: int) -> list[int]:
        """The --mc-layers selection that exists in a model of ``n_layers`` layers (checked at start-up)."""
        return options.layers_for(self.layers, n_layers)

    def load_kwargs(self) -> dict[str, Any]:
        """What :func:`mechclaims.model.load.load_model` needs besides the name."""
        return {"device": self.device, "dtype": self.dtype, "cache": self.cache_dir, "seed": self.seed,
                "revision": self.revision, "trust_remote_code": self.trust_remote_code,
                "local_files_only": self.offline or None, "batch_size": self.batch_size}


def parse_stimuli(values: list[str]) -> dict[str, str]:
    out = {}
    for s in values or []:
        if "=" not in s:
            raise OptionError(f"{flag('stimuli')} {s!r}: expected NAME=PATH, e.g. {flag('stimuli')} "
                              f"ged_pairs=my_pairs.jsonl")
        k, v = s.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def build(config: pytest.Config) -> Settings:
    """Settings from the options (OptionError on a bad value). Imports neither torch nor transformers."""
    vals, src = {}, {}
    for _, dest, _, default, _ in OPTIONS:
        vals[dest], src[dest] = _get(config, dest, default)
    base = base_dir(config)

    def path(dest: str, default: Path) -> Path:
        v = vals[dest]
        if v in (None, ""):
            return default
        p = Path(v).expanduser()
        return p if src[dest] == "cli" or p.is_absolute() else base / p

    stim = parse_stimuli(vals["mechclaims_stimuli"])
    check_stimuli_overrides(stim, names=None)  # paths now; names once the claim modules are collected
    seed = options.seed(vals["mechclaims_seed"])
    perms = options.permutations(vals["mechclaims_permutations"])
    null_sets = options.lesion_null_sets(vals["mechclaims_lesion_null_sets"])
    keep = options.keep_runs(vals["mechclaims_keep_runs"])
    heldout_n = options.ged_heldout_n(vals["mechclaims_ged_heldout_n"])
    batch = vals["mechclaims_batch_size"]
    batch = None if batch in (None, "") else options.integer(
        flag("batch-size"), batch, 1, MAX_BATCH, "sequences per forward pass; memory grows with it")
    options.parse_layers(vals["mechclaims_layers"])  # syntax now; the range once the models' depths are known
    act_mode = vals["mechclaims_activation_cache"]
    if act_mode not in ("on", "off", "refresh"):
        raise OptionError(f"{flag('activation-cache')} {act_mode!r}: use on, off or refresh.")
    stat_mode = vals["mechclaims_statistics_cache"] or default_mode()
    if stat_mode not in ("on", "off", "refresh"):
        where = flag("statistics-cache") if vals["mechclaims_statistics_cache"] else "MECHCLAIMS_STATISTICS_CACHE"
        raise OptionError(f"{where} {stat_mode!r}: use on, off or refresh.")
    rev = vals["mechclaims_revision"]
    if rev is not None and (not str(rev).strip() or any(c.isspace() for c in str(rev))):
        raise OptionError(f"{flag('revision')} {rev!r}: pass a branch, tag or commit of the model's hub "
                          f"repository, e.g. {flag('revision')} step143000.")
    check_device_dtype(vals["mechclaims_device"], vals["mechclaims_dtype"])
    art = path("mechclaims_artifacts_dir", base / "artifacts")
    probe_dir(flag("artifacts-dir"), art)
    models = list(dict.fromkeys(vals["mechclaims_models"] or [DEFAULT_MODEL]))
    given_base = vals["mechclaims_baselines_dir"] not in (None, "")
    # Own stimuli: their first baselines go with the artifacts, never into a committed baselines dir.
    default_base = art / "baselines" if stim else base / "baselines"
    return Settings(models=models, device=vals["mechclaims_device"], dtype=vals["mechclaims_dtype"],
                    artifacts=art.resolve(), seed=seed, permutations=perms, layers=vals["mechclaims_layers"],
                    cache_dir=vals["mechclaims_cache_dir"], stimuli=stim, activation_cache=act_mode,
                    statistics_cache=stat_mode,
                    lesion_null_sets=null_sets, keep_runs=keep, ged_heldout_n=heldout_n,
                    baselines=path("mechclaims_baselines_dir", default_base).expanduser().resolve(),
                    revision=rev, trust_remote_code=bool(vals["mechclaims_trust_remote_code"]), batch_size=batch,
                    offline=bool(vals["mechclaims_offline"]) or _env_offline(), baselines_given=given_base)


def _env_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def probe_dir(opt: str, p: Path) -> None:
    """OptionError unless ``p`` can be written: it, or (not there yet) its nearest existing parent, is a writable
    directory. Creates nothing: an inert session leaves no folder behind."""
    import tempfile

    existing = next((q for q in [p, *p.parents] if q.exists()), None)
    if existing is None or not existing.is_dir():
        raise OptionError(f"{opt} {p} cannot be written ({existing} is not a directory); pass a writable "
                          f"directory.")
    if p.exists():
        options.writable_dir(opt, p, create=False)
        return
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise OptionError(f"{opt} {p} cannot be written ({e.strerror or e}); pass a writable directory.") from None


def check_baselines_dir(config: pytest.Config, s: Settings) -> None:
    """--mc-baselines-dir must be writable when baselines will be written (--force-regen, or none there yet). A
    read-only dir that already holds baselines still checks them; it gets one warning at start-up."""
    p = s.baselines
    try:
        probe_dir(flag("baselines-dir"), p)
        return
    except OptionError as e:
        err = e
    regen = bool(config.getoption("force_regen", False))
    has_any = p.is_dir() and any(p.iterdir())
    if regen or not has_any:
        why = "--force-regen rewrites baselines" if regen else "it holds no baselines yet, so every test writes one"
        raise OptionError(f"{err} ({why}.)") from None
    config.issue_config_time_warning(pytest.PytestConfigWarning(
        f"mechclaims: {err} Existing baselines are checked; a missing one cannot be written."), stacklevel=2)


def header(s: Settings) -> list[str]:
    """The report header: library versions (read from their metadata: nothing is imported), device and models."""
    v = {d: _version(d) for d in ("torch", "transformers", "numpy")}
    return [f"mechclaims: torch {v['torch']}, transformers {v['transformers']}, numpy {v['numpy']}; device "
            f"{s.device}, dtype {s.dtype}, seed {s.seed}, permutations {s.permutations}",
            f"mechclaims models: {', '.join(s.models)}; artifacts: {s.artifacts}; baselines: {s.baselines}; "
            f"activation cache {s.activation_cache}, statistics cache {s.statistics_cache}"]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
