"""Verdicts and outcomes: what a claim concludes, torch-free (the lowest floor of the package)."""
from mechclaims.verdict.outcome import CONTROL_OUTCOMES, DEFAULT_EXPECTED, OUTCOMES, aggregate, decide
from mechclaims.verdict.verdict import Verdict

__all__ = ["Verdict", "OUTCOMES", "CONTROL_OUTCOMES", "DEFAULT_EXPECTED", "aggregate", "decide"]
