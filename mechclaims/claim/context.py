"""``ctx``: what a claim's science needs from the session, in one object.

- ``ctx.lm``, ``ctx.layer`` (when the test is per layer), ``ctx.n_layers``, ``ctx.seed``, ``ctx.permutations``;
- ``ctx.alpha``: the level one layer is decided at, ``ALPHA / n_layers`` (Bonferroni over every layer of the model,
  whatever ``--mc-layers`` or ``-k`` select);
- ``ctx.memo(fn, *args)``: ``fn(ctx, *args)`` once per session, keyed on the call itself (the function, every
  argument, and everything in ``ctx.key`` that can change a number), so a key can never omit a parameter;
- ``ctx.stored(fn, *args, reads=arrays)``: the same, kept on disk by the statistics store (heavy nulls). ``reads``:
  the captures ``fn`` reads, when it reads nothing else of the model (no forward pass, no weights): the disk key is
  then their content, not the weights and library versions (``ModelPool.statistic``); without it, the full key;
- ``ctx.captured(fn, *args)``: the same, for captures (arrays only), kept by the activation store;
- ``ctx.stimuli(name)``: the module's declared stimuli set, loaded once per file content;
- ``ctx.random()``: the same context on the random-weight copy of the model (the random-weights control).
Memo functions take ``ctx`` first and hashable arguments after it (tuples, strings, numbers; a stimuli hash
instead of the rows).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest

from mechclaims.claim.stimuli import StimuliSet, file_digest
from mechclaims.harness.pool import ModelPool
from mechclaims.harness.settings import Settings

ALPHA = 0.05


def qualname(fn: Callable) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


@dataclass(frozen=True)
class Context:
    lm: Any
    settings: Settings
    pool: ModelPool
    module: ModuleType | None = None
    layer: int | None = None
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def for_test(cls, request: pytest.FixtureRequest, lm: Any, settings: Settings, pool: ModelPool) -> "Context":
        params = dict(request.node.callspec.params) if hasattr(request.node, "callspec") else {}
        return cls(lm, settings, pool, request.module, params.get("layer"), params)

    @classmethod
    def direct(cls, lm: Any, module: ModuleType | None, cache_dir: str | Path, **settings: Any) -> "Context":
        """A context outside a pytest claims run (a script, a library test, a planted-model check): both caches off,
        so every number is recomputed; seed 0, 1,000 permutations, every layer; ``settings`` override any field."""
        kw: dict[str, Any] = dict(models=[lm.name], device="cpu", dtype="float32", artifacts=Path(cache_dir), seed=0,
                                  permutations=1000, layers="all", cache_dir=str(cache_dir), stimuli={},
                                  activation_cache="off", statistics_cache="off", lesion_null_sets=200)
        s = Settings(**{**kw, **settings})
        return cls(lm, s, ModelPool(s), module)

    @classmethod
    def for_model(cls, name: str, settings: Settings, pool: ModelPool, module: ModuleType | None = None) -> "Context":
        """A context on another session model (a claim over several models)."""
        return cls(pool.get(name), settings, pool, module)

    # ---------------------------------------------------------------------------------------------- settings
    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def permutations(self) -> int:
        return self.settings.permutations

    @property
    def n_layers(self) -> int:
        return self.lm.n_layers

    @property
    def alpha(self) -> float:
        return getattr(self.module, "ALPHA", ALPHA) / self.lm.n_layers

    @property
    def key(self) -> tuple:
        """Everything of the session that can change a number: the model's identity and the options."""
        s = self.settings
        return (self.lm.name, self.lm.fingerprint, self.lm.dtype, str(self.lm.device).split(":")[0], s.seed,
                s.permutations, s.lesion_null_sets, s.ged_heldout_n,
                tuple(sorted((k, file_digest(Path(v))) for k, v in s.stimuli.items())))

    # ------------------------------------------------------------------------------------------------ memos
    def memo(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return self.pool.cached(("memo", qualname(fn), self.key, args, tuple(sorted(kw.items()))),
                                lambda: fn(self, *args, **kw))

    def stored(self, fn: Callable[..., Any], *args: Any, reads: Any = None, **kw: Any) -> Any:
        source = getattr(self.module, "__file__", None) or fn.__code__.co_filename
        parts = (qualname(fn), self.key[4:], args, tuple(sorted(kw.items())))
        return self.pool.statistic(self.lm, qualname(fn), parts, lambda: fn(self, *args, **kw), source, reads)

    def captured(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        parts = (self.key[4:], args, tuple(sorted(kw.items())))
        return self.pool.activations(self.lm, qualname(fn), parts, lambda: fn(self, *args, **kw))

    # ---------------------------------------------------------------------------------------------- stimuli
    def stimuli_path(self, name: str) -> Path:
        """``--mc-stimuli NAME=PATH`` if given, else the module's declared default (relative to the module)."""
        if name in self.settings.stimuli:
            return Path(self.settings.stimuli[name])
        declared = (getattr(self.module, "STIMULI", None) or {}).get(name)
        if declared is None:
            raise KeyError(f"stimuli set {name!r} is not declared: add it to {getattr(self.module, '__name__', '?')}"
                           f".STIMULI or pass --mc-stimuli {name}=PATH")
        default = declared.default if isinstance(declared, StimuliSet) else declared
        here = Path(getattr(self.module, "__file__", ".")).parent
        return (here / default).resolve()

    def stimuli(self, name: str, **kwargs: Any) -> Any:
        """The loaded stimuli set ``name`` (parsed once per file content and arguments)."""
        declared = (getattr(self.module, "STIMULI", None) or {}).get(name)
        if not isinstance(declared, StimuliSet):
            raise TypeError(f"STIMULI[{name!r}] must be a mechclaims.claim.StimuliSet to be loaded by ctx.stimuli; "
                            f"use ctx.stimuli_path({name!r}) for a plain path")
        path = self.stimuli_path(name)
        key = ("stimuli", name, str(path), file_digest(path), tuple(sorted(kwargs.items())))
        return self.pool.cached(key, lambda: declared.load(path, **kwargs))

    # ------------------------------------------------------------------------------------------------ models
    def random(self) -> "Context":
        """This context on the random-weight copy of the model (built lazily; same settings and layer)."""
        return replace(self, lm=self.pool.random_copy(self.lm, self.seed))

    def at(self, layer: int) -> "Context":
        return replace(self, layer=layer)
