"""intervene(): the only way to change a forward pass. Its hook comes off in ``finally``.

Hooks on the session model are read-only shared state: nothing may leave one behind (the plugin's guard fails any
test that does, counting with :func:`count_hooks`).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from mechclaims.model.sites import resolve


@contextlib.contextmanager
def intervene(lm: Any, site_name: str, edit: Callable[[Any], Any], first: bool = False) -> Iterator[None]:
    """Replace ``site_name``'s tensor by ``edit(tensor)`` for forward passes inside the block.

    ``edit`` receives the full ``[batch, seq, ...]`` tensor and returns one of the same shape (it may close over
    per-row positions or masks). The hook is removed in ``finally``, so an exception inside the block, or in
    ``edit`` itself, never leaves the shared model edited. ``first``: run before the site's other hooks, whenever
    installed (the fast path's block feed must come before a caller's edit at the same site).
    """
    rs = resolve(lm.model, site_name)
    cfg = lm.model.config
    # Edits go through the site's own post-op inverse, so derived sites (per-head q/k, scaled sublayer outputs)
    # are edited in their canonical view and written back in the module's raw form.
    put = lambda raw: rs.spec.apply_edit(raw, edit, cfg)  # noqa: E731
    if rs.spec.hook == "input":
        def pre(mod, args, kwargs):
            if args:
                return (put(args[0]),) + tuple(args[1:]), kwargs
            k = next(iter(kwargs))
            return args, {**kwargs, k: put(kwargs[k])}
        handle = rs.module.register_forward_pre_hook(pre, with_kwargs=True, prepend=first)
    else:
        handle = rs.module.register_forward_hook(lambda mod, args, out: put(out), prepend=first)
    try:
        yield
    finally:
        handle.remove()


def _ours(fn: Any) -> bool:
    # transformers installs persistent hooks of its own (output capturing for output_hidden_states); not ours.
    return not getattr(fn, "__module__", "").startswith("transformers")


def count_hooks(model: Any) -> int:
    """Forward/pre hooks on every submodule, except transformers' own (the guard compares before and after)."""
    return sum(sum(_ours(f) for f in m._forward_hooks.values()) + sum(_ours(f) for f in m._forward_pre_hooks.values())
               for m in model.modules())


def clear_hooks(model: Any) -> None:
    """Remove every non-transformers hook (the guard's clean-up after a leaky test)."""
    for m in model.modules():
        for d in (m._forward_hooks, m._forward_pre_hooks):
            for k in [k for k, f in d.items() if _ours(f)]:
                del d[k]
