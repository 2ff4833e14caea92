"""The random-weight control: the same architecture and tokenizer with freshly initialised weights."""
from __future__ import annotations

from typing import Any

import torch

from mechclaims.model.fingerprint import weight_fingerprint
from mechclaims.model.registry import LoadedModel


def random_weight_copy(lm: LoadedModel, seed: int = 0, on_meta: bool | None = None,
                       fingerprint: str | None = None) -> LoadedModel:
    """Same architecture and tokenizer, freshly initialised weights: the random-weight negative control.

    On the CPU in float32 (the default, and the committed baselines) the copy is initialised as a fresh model is.
    Elsewhere (``on_meta``: a GPU, ``auto``, or a 16-bit dtype) it is built on the ``meta`` device and materialised
    where the model lives, in its dtype, so an 8B model never needs a 32 GB float32 copy on the CPU. Buffers
    (rotary frequencies, position ids) are architecture constants and are copied from the model. ``fingerprint``:
    the copy's identity when the caller knows it (:class:`LazyRandomCopy`), which saves hashing its weights.
    """
    if on_meta is None:
        on_meta = not (lm.device == "cpu" and lm.dtype == "float32")
    tdtype = getattr(torch, lm.dtype)
    if not on_meta:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = type(lm.model)(lm.model.config)
        model = model.to(dtype=tdtype)
    else:
        target = next(lm.model.parameters()).device
        if target.type == "meta":  # offloaded to disk: materialise on the CPU
            target = torch.device("cpu")
        with torch.device("meta"):
            model = type(lm.model)(lm.model.config)
        model = model.to_empty(device=target).to(dtype=tdtype)
        devices = [target.index or 0] if target.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for m in model.modules():
                m._is_hf_initialized = False
            model.init_weights()
        with torch.no_grad():
            for name, buf in lm.model.named_buffers():
                try:
                    model.get_buffer(name).copy_(buf.to(target))
                except (AttributeError, RuntimeError):  # a buffer the copy does not have, or of another shape
                    pass
    model.eval()
    if lm.device != "auto" and not on_meta:
        model = model.to(lm.device)
    model.requires_grad_(False)
    return LoadedModel(name=f"{lm.name}+random", model=model, tokenizer=lm.tokenizer, kind=lm.kind,
                       family=lm.family, n_layers=lm.n_layers,
                       fingerprint=fingerprint or weight_fingerprint(model), device=lm.device, dtype=lm.dtype,
                       extra={k: v for k, v in lm.extra.items() if k != "state_fingerprint"})


class LazyRandomCopy:
    """A random-weight copy that is built only when its ``model`` is touched.

    Its identity is known without building it: a fresh init under a fixed seed is a function of the base model's
    architecture (its fingerprint), the seed and the torch/transformers versions, which the activation cache keys
    on anyway. With a warm activation cache the controls never pay for the init (~4 s and the model's memory).
    """

    def __init__(self, lm: LoadedModel, seed: int = 0):
        self._base, self._seed, self._built = lm, seed, None
        self.name, self.tokenizer, self.kind, self.family = f"{lm.name}+random", lm.tokenizer, lm.kind, lm.family
        self.n_layers, self.device, self.dtype, self.extra = lm.n_layers, lm.device, lm.dtype, dict(lm.extra)
        self.fingerprint = f"random-seed{seed}-of-{lm.fingerprint}"

    def build(self) -> LoadedModel:
        if self._built is None:
            self._built = random_weight_copy(self._base, self._seed, fingerprint=self.fingerprint)
        return self._built

    @property
    def model(self) -> Any:
        return self.build().model

    @property
    def sitemap(self):
        return self._base.sitemap

    def release(self) -> None:
        """Drop the built weights (rebuilt identically on the next touch)."""
        self._built = None
