"""Errors a user can act on. Each message names the input (file, option, model) and the fix."""
from __future__ import annotations


class MechClaimsError(Exception):
    """Base class: a problem with the user's input or environment, never a bug in torch."""


class StimuliError(MechClaimsError, ValueError):
    """A stimuli file is missing, empty, malformed, or does not fit the model's tokenizer."""


class ModelError(MechClaimsError):
    """A model name cannot be resolved or its weights cannot be had offline."""


class SiteError(MechClaimsError, KeyError):
    """A site name is not canonical, or the architecture has no map."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class OptionError(MechClaimsError, ValueError):
    """A command-line/ini option has an unusable value."""


class NonFiniteActivationError(MechClaimsError, FloatingPointError):
    """A captured activation is NaN or infinite: the model (or its dtype) is broken, not the claim.

    Raised once, at capture, naming the first non-finite site, its layer and the sequence, so that no claim
    computes a statistic from NaN activations. The plugin records the claim test as ``inconclusive``.
    """


class ArtifactsWriteError(MechClaimsError):
    """An output (figure, summary, report, baseline) could not be written: the disk is full or read-only."""


class CacheWarning(UserWarning):
    """A cache (converted weights, activations) cannot be used as asked; the run goes on without it."""
