"""The vocabulary of a site map: canonical site kinds, the spec of one site, a family's map, and the post-ops that
turn a hooked module's raw tensor into the canonical one (each with its inverse, so edits can be written back).

The maps themselves are in :mod:`mechclaims.model.families`; name -> module resolution is :mod:`mechclaims.model.sites`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from mechclaims.errors import SiteError

Hook = Literal["output", "input"]
LAYER_KINDS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
               "mlp.hook_pre", "mlp.hook_post", "attn.hook_q", "attn.hook_k", "attn.hook_qk_in")
GLOBAL_KINDS = ("ln_final.hook_in", "ln_final.hook_normalized", "hook_logits")
SITE_RE = re.compile(r"^blocks\.(\d+)\.(" + "|".join(re.escape(k) for k in LAYER_KINDS) + r")$")


def layer_of(name: str) -> int | None:
    """The layer of a per-layer canonical site name (``blocks.5.hook_resid_pre`` -> 5), None for a global one."""
    m = SITE_RE.match(name)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------------------------------------------
# Post-ops: raw hooked tensor -> canonical tensor. Each also knows its inverse, so an edit of the canonical
# tensor can be written back into the raw one (``SiteSpec.apply_edit``).


def first(x: Any, cfg: Any = None) -> Any:
    """Post-op: the first element of a module's tuple output (the hidden states)."""
    return x[0] if isinstance(x, tuple) else x


_first = first


class Heads:
    """Split the last dim into ``cfg.<n_attr>`` heads; optionally first take slice ``part`` of a fused
    projection. Fused layouts: ``[parts, n, d]`` (GPT-2's c_attn, the default), ``interleaved`` per head
    ``[n, parts, d]`` (GPT-NeoX, BLOOM), or ``sizes``: parts of ``cfg.<attr>`` heads each (Phi-3's qkv_proj with
    grouped KV: q, k, v = n_heads, n_kv, n_kv). ``n_attr=None``: take the part without splitting heads (a fused
    gate/up projection). ``heads_first``: the raw tensor is ``[B, n, T, d]`` (Gemma 3's q_norm runs after the
    transpose)."""

    def __init__(self, n_attr: str | None, part: int | None = None, parts: int = 1, interleaved: bool = False,
                 heads_first: bool = False, sizes: tuple[str, ...] | None = None):
        self.n_attr, self.part, self.parts, self.interleaved, self.heads_first, self.sizes = \
            n_attr, part, parts, interleaved, heads_first, sizes

    def __call__(self, x: Any, cfg: Any) -> Any:
        x = _first(x)
        if self.heads_first:
            return x.transpose(1, 2)
        n = getattr(cfg, self.n_attr) if self.n_attr else 1
        if self.part is not None and self.interleaved:
            return x.reshape(*x.shape[:-1], n, self.parts, x.shape[-1] // (n * self.parts))[..., self.part, :]
        if self.part is not None and self.sizes:
            counts = [getattr(cfg, a) for a in self.sizes]
            d = x.shape[-1] // sum(counts)
            x = x[..., sum(counts[:self.part]) * d:sum(counts[:self.part + 1]) * d]
        elif self.part is not None:
            x = x.chunk(self.parts, dim=-1)[self.part]
        return x.reshape(*x.shape[:-1], n, x.shape[-1] // n) if self.n_attr else x

    def invert(self, new: Any, raw: Any, cfg: Any) -> Any:
        if self.heads_first:
            return new.transpose(1, 2).contiguous()
        if self.part is None:
            return new.reshape(raw.shape)
        if getattr(new, "requires_grad", False):
            # Autograd refuses an in-place copy into a chunk() view (mechclaims.forward.attribution's gradient path):
            # scatter out of place, at the raw indices the post-op reads (the post-op applied to an index tensor).
            import torch  # local: this module is read at plugin start-up, which stays torch-free

            idx = self(torch.arange(raw.numel(), device=raw.device).reshape(raw.shape), cfg)
            return raw.reshape(-1).index_put((idx.reshape(-1),), new.reshape(-1).to(raw.dtype)).reshape(raw.shape)
        out = raw.clone()
        view = self(out, cfg)
        assert view.data_ptr() >= out.data_ptr() and view._base is not None, "post-op must return a view"
        view.copy_(new)  # the view shares out's storage, so this writes the slice back
        return out


class Scaled:
    """Multiply by a config scalar (Granite's residual_multiplier is applied after the sublayer, before the add)."""

    def __init__(self, attr: str):
        self.attr = attr

    def __call__(self, x: Any, cfg: Any) -> Any:
        return _first(x) * getattr(cfg, self.attr)

    def invert(self, new: Any, raw: Any, cfg: Any) -> Any:
        return new / getattr(cfg, self.attr)


@dataclass(frozen=True)
class SiteSpec:
    """Where a site lives: a module path (relative to the base model, ``{l}`` = layer), which side of it to
    read, and a post-op that turns the raw tensor into the canonical one (split heads, scale)."""

    module: str
    hook: Hook = "output"
    post: Callable[[Any, Any], Any] | None = None  # (tensor, config) -> tensor
    editable: bool = True  # intervene() may replace the raw tensor directly (post-op is identity or absent)

    def apply_edit(self, raw: Any, edit: Callable[[Any], Any], cfg: Any) -> Any:
        """Edit the canonical view of ``raw`` and return the raw tensor to put back (for derived sites too)."""
        if isinstance(raw, tuple):
            return (self.apply_edit(raw[0], edit, cfg),) + tuple(raw[1:])
        if self.post is None or self.post is _first:
            return edit(raw)
        invert = getattr(self.post, "invert", None)
        if invert is None:
            raise SiteError(f"the site at {self.module} is derived by {self.post!r}, which has no invert(); give the "
                            f"post-op an invert(new, raw, cfg) method so edits can be written back.")
        return invert(edit(self.post(raw, cfg)), raw, cfg)


def derived(module: str, post: Any, hook: Hook = "output") -> SiteSpec:
    """A site computed from a module's tensor by ``post`` (split heads, scale). intervene() cannot replace it
    directly; ``SiteSpec.apply_edit`` edits it through the post-op's inverse."""
    return SiteSpec(module, hook, post, editable=False)


@dataclass(frozen=True)
class SiteMap:
    """One architecture family's map. ``residual`` and ``block`` state the block's residual form in one place."""

    family: str
    model_types: tuple[str, ...]
    blocks: str  # path of the ModuleList of blocks, relative to the base model
    layer: dict[str, SiteSpec]
    final_norm: str | None
    residual: Literal["sequential", "parallel", "post_ln"]
    block: str = ""  # the block's equation, in words a reader can check against the modeling code
    post_ln_norms: tuple[str, str] | None = None  # (after attention, after MLP), relative to the block
    requires: dict[str, Any] = field(default_factory=dict)  # config values this map assumes
    # How attention learns position: "rotary" (applied to q/k *after* hook_q/hook_k), "learned" (absolute
    # embeddings added to the residual, so q/k carry them), "alibi" (a bias on the scores; q/k carry none).
    positions: Literal["rotary", "learned", "alibi"] = "rotary"
    attn: str = "self_attn"  # attention module, relative to the block
    # Where the attention kernel receives the *positioned* q and k: a function in the attention module's Python
    # module (or ``self.<method>`` of the attention module) and the argument index of q (k follows). None: q/k
    # enter the scores directly (no rotary). Used by the self-tests to prove "before rotary".
    qk_kernel: tuple[str, int] | None = ("eager_attention_forward", 1)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def kinds(self) -> tuple[str, ...]:
        """Per-layer site kinds this family has, in LAYER_KINDS order."""
        return tuple(k for k in LAYER_KINDS if k in self.layer)
