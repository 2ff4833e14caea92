"""mechclaims: pytest-native hypothesis tests for mechanistic interpretability claims.

The front door for notebooks and scripts (torch is imported on first use of an attribute, not here)::

    import mechclaims as mc

    lm = mc.load_model("tiny-gpt2")                       # a built-in name, an HF id or a local directory
    ids = mc.encode(lm, ["The cat sat on the mat."])
    acts = mc.capture(lm, ids, ["blocks.0.hook_resid_post"], positions="last")
    with mc.intervene(lm, "blocks.0.hook_mlp_out", lambda x: x * 0):
        ...                                               # hooks come off on exit
    s = mc.run(claims=["residual_additivity"], models=["tiny-gpt2"])
    print(s.outcomes)                                     # claim x model -> supported / failed / ...

In pytest the plugin (entry point ``mechclaims.plugin``) gives the fixtures ``lm``, ``mc``, ``record``,
``expect``, ``baseline``, ``artifacts`` and ``stimuli_path``; see docs/CORE_API.md.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["load_model", "encode", "capture", "intervene", "Verdict", "run", "Summary"]

_LAZY = {
    "load_model": ("mechclaims.model.load", "load_model"),
    "encode": ("mechclaims.forward.capture", "encode"),
    "capture": ("mechclaims.forward.capture", "capture"),
    "intervene": ("mechclaims.forward.intervene", "intervene"),
    "Verdict": ("mechclaims.verdict.verdict", "Verdict"),
    "run": ("mechclaims.harness.api", "run"),
    "Summary": ("mechclaims.harness.api", "Summary"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod, attr = _LAZY[name]
        module = import_module(mod)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value  # once: later lookups skip this hook
        return value
    raise AttributeError(f"module 'mechclaims' has no attribute {name!r}; the public API is {', '.join(__all__)}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
