"""The controls library: controls named after the property they test, written once, and the generator of a
claim's control tests (scikit-learn's ``parametrize_with_checks`` is the model).

A control is the claim's own rule run where the claim's explanation cannot hold; it must be able to pass (a planted
confound makes it pass: tests/test_controls.py) and, on a model where the claim is right, it must fail.

- :func:`random_weights`: the rule on the random-weight copy of the model (same stimuli, same draws). Token identity,
  input geometry and architecture survive random weights; what training put in the weights does not.
- :func:`shuffled_labels`: the whole rule, fresh null included, on fresh shuffles of the training labels; passes when
  more runs pass than ``binom.ppf(0.99, n, alpha)`` allows (mechclaims.stats.ged_ctl).
- :func:`unrelated_target`: the selected units must not move an unrelated readout more than random units do
  (mechclaims.stats.lesion_decision).
- :func:`wrong_decomposition`: an identity's check must fail on a deliberately wrong decomposition.
- :func:`regularisation_instability`: the rule's decision must not change with the shrinkage constant
  (mechclaims.stats.ged_ctl).

:func:`control_tests` makes one test per declared control (ids ``<model>-<control>``), each checking that control's
verdict as gated on the claim's model-level verdict, and that the declared names equal the gated ones.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import pytest

from mechclaims.harness.records import format_name
from mechclaims.stats.ged_ctl import gamma_control as regularisation_instability
from mechclaims.stats.ged_ctl import shuffled_control as shuffled_labels
from mechclaims.stats.lesion_decision import unrelated_control as unrelated_target
from mechclaims.verdict.verdict import Verdict

__all__ = ["as_control", "random_weights", "shuffled_labels", "unrelated_target", "wrong_decomposition",
           "regularisation_instability", "control_tests"]


def as_control(v: Verdict, name: str | None = None) -> Verdict:
    """``v`` as a control's verdict (its own rule's outcome: failed / passed / inconclusive)."""
    v.role = "control"
    if name is not None:
        v.claim = name
    return v


def random_weights(ctx: Any, rule: Callable[..., Verdict], *args: Any, name: str | None = None, **kw: Any) -> Verdict:
    """``rule(ctx.random(), *args, **kw)`` as a control: the claim's own rule on the random-weight copy."""
    return as_control(rule(ctx.random(), *args, **kw), name)


def wrong_decomposition(check: Callable[..., Verdict], name: str, **terms: Any) -> Verdict:
    """The identity's own check on a deliberately wrong decomposition (``terms``): it must fail."""
    return as_control(check(**terms), name)


def control_tests(claim: str, controls: Sequence[str], verdict: Callable[..., Verdict], *, name: str = "{control}",
                  family: str = "observational", kinds: tuple[str, ...] | None = None,
                  params: Mapping[str, Sequence[Any]] | None = None, doc: str = "") -> Callable[..., None]:
    """A pytest test function, parametrized over ``controls`` (and ``params``), that checks each control's
    verdict as it gates the claim's model-level ``verdict(ctx, **params)``. Assign it to a ``test_*`` name.

    ``name`` spells a control's full name from the parameters (default: the ``control`` value itself; the lesion
    claims use ``"lesion_{rule}_{control}"``); ``claim`` may use the parameters too (``"mlp_lesion_{rule}"``)."""
    extra = dict(params or {})

    def test(ctx: Any, check: Any, control: str, **kw: Any) -> None:
        v = verdict(ctx, **kw)
        declared = {format_name(name, {**kw, "control": c}) for c in controls}
        gated = set(v.controls) | set(v.inapplicable)
        if gated != declared:
            pytest.fail(f"{format_name(claim, kw)} is gated on {sorted(gated)} but its control tests declare "
                        f"{sorted(declared)}: declare exactly the gated controls.", pytrace=False)
        full = format_name(name, {**kw, "control": control})
        if full in v.inapplicable:  # e.g. a frequency control on a file without frequencies: says why and how
            pytest.skip(f"{full} does not apply to this run and does not gate {format_name(claim, kw)}: "
                        f"{v.reason or 'the claim gave it as inapplicable'}")
        check(v.controls[full], baseline=False, control=control, **kw)

    argnames = ", ".join(["ctx", "check", *extra, "control"])
    passed = "".join(f", {k}={k}" for k in extra)
    ns: dict[str, Any] = {"impl": test}
    exec(f"def generated({argnames}):\n    impl(ctx, check, control{passed})", ns)  # noqa: S102 - the signature
    fn = ns["generated"]  # pytest reads fixtures and parameters from the signature, so it is spelled out
    fn.__doc__ = doc or f"Each control of {claim} must fail its rule: {', '.join(controls)}."
    marks = [pytest.mark.parametrize(k, list(v)) for k, v in extra.items()]  # ids: model, params, control
    marks += [pytest.mark.parametrize("control", list(controls)), pytest.mark.control,
              pytest.mark.claim(name, family=family, control_of=claim, **({"kinds": kinds} if kinds else {}))]
    for m in marks:
        fn = m(fn)
    return fn
