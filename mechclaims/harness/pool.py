"""The session's model pool: each model loaded at most once per process, shared read-only by the claims.

It also holds the session memo (``cached``) and the on-disk activation cache (``activations``). Nothing here is
imported until a test asks for a model, so the plugin stays torch-free for suites that never do.
"""
from __future__ import annotations

import gc

from typing import Any, Callable

from mechclaims.harness.settings import Settings
from mechclaims.model.cache import cache_root
from mechclaims.model.registry import CAUSAL_BUILTIN, hub_kwargs, n_layers_of
from mechclaims.store import hygiene
from mechclaims.store.shipped import shipped_dir
from mechclaims.store.statcache import code_version, statistics_environment


class ModelPool:
    """Loads each model at most once per process; claims share it read-only."""

    def __init__(self, settings: Settings):
        self.s = settings
        self._models: dict[str, Any] = {}
        self._configs: dict[str, Any] = {}
        self.memo: dict[Any, Any] = {}
        self._store = None
        self._stat_store = None

    def config(self, name: str) -> Any:
        """The model's config, without its weights (cached): its depth and architecture at collection time."""
        from mechclaims.model.load import resolve_config

        if name not in self._configs:
            hub = hub_kwargs(self.s.revision, self.s.trust_remote_code, self.s.offline or None)
            self._configs[name] = resolve_config(name, self.s.cache_dir, **hub)[0]
        return self._configs[name]

    def n_layers(self, name: str) -> int:
        return n_layers_of(self.config(name))

    def kind(self, name: str) -> str:
        """causal, masked or encoder, from the config's architectures (no weights loaded)."""
        archs = getattr(self.config(name), "architectures", None) or []
        if name in CAUSAL_BUILTIN or any(
                a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
            return "causal"
        if name == "tiny-bert" or any(a.endswith("ForMaskedLM") for a in archs):
            return "masked"
        return "encoder"

    def get(self, name: str) -> Any:
        from mechclaims.model.load import load_model

        if name not in self._models:
            self._models[name] = load_model(name, **self.s.load_kwargs())
        return self._models[name]

    def loaded(self) -> dict[str, Any]:
        return dict(self._models)

    def cached(self, key: Any, fn: Callable[[], Any]) -> Any:
        """Session memo: compute ``fn()`` once per key (e.g. one capture per model and stimuli set). The key must
        hold every argument ``fn`` depends on, and the model's fingerprint."""
        if key not in self.memo:
            self.memo[key] = fn()
        return self.memo[key]

    def call(self, fn: Callable[..., Any], lm: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(lm, *args, **kwargs)`` once per session, keyed on ``fn``, the model's name and fingerprint and every
        argument: a key cannot omit a parameter, since it is the call itself. Arguments must be hashable (pass
        tuples, or a stimuli hash instead of the rows)."""
        key = ("call", f"{fn.__module__}.{fn.__qualname__}", lm.name, lm.fingerprint, args,
               tuple(sorted(kwargs.items())))
        return self.cached(key, lambda: fn(lm, *args, **kwargs))

    @property
    def store(self) -> Any:
        from mechclaims.store.actcache import ActivationStore

        if self._store is None:
            self._store = ActivationStore(cache_root(self.s.cache_dir) / "activations", self.s.activation_cache)
        return self._store

    def prune_stores(self) -> list[str]:
        """Evict least-recently-used entries of the stores this run used, to their budgets (store.hygiene)."""
        lines = []
        for name, st in (("activations", self._store), ("statistics", self._stat_store)):
            if st is None or st.mode == "off" or st.degraded:
                continue
            try:
                n, freed = hygiene.prune(st.root, hygiene.budget(name))
            except (OSError, ValueError) as e:
                lines.append(f"{name} store not pruned: {e}")
                continue
            if n:
                lines.append(f"{name} store: {n} least recently used entries removed ({hygiene.human(freed)}) to stay "
                             f"within its budget ({hygiene.human(hygiene.budget(name))}; "
                             f"MECHCLAIMS_CACHE_BUDGET_{name.upper()})")
        return lines

    @property
    def stat_store_used(self) -> bool:
        """Whether any claim asked the statistics store for something this session."""
        return self._stat_store is not None

    @property
    def stat_store(self) -> Any:
        from mechclaims.store.actcache import ActivationStore

        if self._stat_store is None:
            self._stat_store = ActivationStore(cache_root(self.s.cache_dir) / "statistics", self.s.statistics_cache,
                                               what="statistic", shipped=shipped_dir())
            self._stat_store.check.seed = self.s.seed  # the verified sample is a function of the session's seed
        return self._stat_store

    def forward_fingerprint(self, lm: Any) -> str:
        """``lm``'s forward fingerprint (:mod:`mechclaims.forward.probe`), once per session per model: two forward
        passes of one short probe text (tiny-gpt2: see tests/test_verified_reuse.py)."""
        from mechclaims.forward.probe import forward_fingerprint

        dev = str(lm.device).split(":")[0]
        return self.cached(("forward-fingerprint", lm.name, lm.fingerprint, lm.dtype, dev),
                           lambda: forward_fingerprint(lm))

    def statistic(self, lm: Any, tag: str, parts: tuple, fn: Callable[[], Any], source: str, reads: Any = None) -> Any:
        """Session memo backed by the on-disk statistics cache (:mod:`mechclaims.store.statcache`): ``fn()`` (Verdicts,
        arrays, dicts of them) runs once per model weights, dtype, device, library versions, ``tag``, ``parts`` (the
        claim's stimuli hashes, seed, draw counts, layer) and code version (the package and ``source``, the claim
        module's file). A value the store cannot encode stays a session memo only.

        ``reads``: the arrays ``fn`` reads (captures: arrays, Activations, dicts/lists/tuples of them), when it reads
        nothing else of the model. The disk key is then their content digest with the model's name, ``tag``,
        ``parts``, the code version and the statistics libraries' versions, without the weight fingerprint, dtype,
        device or torch/transformers versions (a content key, see :mod:`mechclaims.store.statcache`). Hashed only
        when the disk is asked (not on a session-memo hit, not with the store off).

        Without ``reads`` (a statistic that runs the model) the disk key is a *model key*: the weight fingerprint,
        the forward fingerprint (:meth:`forward_fingerprint`), dtype, device, ``tag``, ``parts``, the code version
        and the statistics libraries' versions, without the torch/transformers versions; its reuse is verified on a
        seeded sample (:mod:`mechclaims.store.verify`)."""
        dev = str(lm.device).split(":")[0]
        code = code_version(source)

        def key() -> dict[str, Any]:
            st = self.stat_store
            if st.mode == "off" or st.degraded:  # never written: nothing worth hashing or probing
                return {"model": lm.name, "fingerprint": lm.fingerprint, "tag": tag, "parts": parts,
                        "dtype": lm.dtype, "device": dev, "code": code}
            if reads is None:
                return {"model": lm.name, "fingerprint": lm.fingerprint, "forward": self.forward_fingerprint(lm),
                        "tag": tag, "parts": parts, "dtype": lm.dtype, "device": dev, "code": code,
                        "stats": statistics_environment()}
            from mechclaims.store.actcache import content_digest

            return {"model": lm.name, "tag": tag, "parts": parts, "code": code, "stats": statistics_environment(),
                    "reads": content_digest(reads)}

        return self.cached(("statistic", lm.name, lm.fingerprint, tag, parts, code),
                           lambda: self.stat_store.get(key(), fn))

    def random_copy(self, lm: Any, seed: int) -> Any:
        """The random-weight control of ``lm``, built lazily (see :class:`mechclaims.model.load.LazyRandomCopy`)."""
        from mechclaims.model.random_copy import LazyRandomCopy

        return self.cached((lm.name, lm.fingerprint, "random-weight-copy", seed), lambda: LazyRandomCopy(lm, seed))

    def evict(self) -> None:
        """Free what the disk cache can give back cheaply: captured activations and random-weight copies. Called
        at the end of each claim module, so peak memory is one claim's working set, not the session's sum."""
        from mechclaims.model.random_copy import LazyRandomCopy

        if self.s.activation_cache == "off" or (self._store is not None and self._store.degraded):
            return  # nothing to reload from (off, or a read-only/full cache): recomputing costs more than it saves
        for k in [k for k in self.memo if isinstance(k, tuple) and k and k[0] == "activations"]:
            del self.memo[k]
        for v in self.memo.values():
            if isinstance(v, LazyRandomCopy):
                v.release()
        from mechclaims.forward.engine import release_freed_memory

        gc.collect()
        release_freed_memory()

    def activations(self, lm: Any, tag: str, parts: tuple, fn: Callable[[], Any]) -> Any:
        """Session memo backed by the on-disk activation cache: ``fn()`` (a capture, arrays only) runs once per
        model weights, ``tag``, ``parts`` (stimuli hashes, sites, positions), dtype, device and library versions."""
        dev = str(lm.device).split(":")[0]
        key = {"model": lm.name, "fingerprint": lm.fingerprint, "tag": tag, "parts": parts, "dtype": lm.dtype,
               "device": dev}
        return self.cached(("activations", lm.name, lm.fingerprint, tag, parts),
                           lambda: self.store.get(key, fn))
