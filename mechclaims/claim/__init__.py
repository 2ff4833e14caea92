"""The claim kit: what a claim author learns, and nothing else.

Five concepts: the ``ctx`` fixture (:class:`~mechclaims.claim.context.Context`: the model, a memo keyed on the
call, the stimuli, alpha), the ``check`` fixture (record, baseline, recorded outcome, in that order), the ``claim``
marker, :meth:`~mechclaims.verdict.Verdict.gate`, and the controls library (:mod:`mechclaims.claim.controls`, whose
``control_tests`` turns a claim's declared controls into its control tests). See docs/example_claim.py.
"""
from mechclaims.claim import controls
from mechclaims.claim.controls import control_tests
from mechclaims.claim.stimuli import StimuliSet
from mechclaims.verdict import Verdict
from mechclaims.verdict.layers import across_layers, control_across_layers

__all__ = ["controls", "control_tests", "StimuliSet", "Verdict", "across_layers", "control_across_layers"]
