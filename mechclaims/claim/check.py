"""``check(verdict, **where)``: the end of every claim test, in the one order that works.

1. record the verdict (summary.json, the report), with ``where`` (layer, site, rule, ...);
2. check its numbers against the committed baseline, with the tolerances the verdict declares beside its numbers
   (``Verdict.note(key, value, tolerance)``) over the test's default ``tolerance``;
3. check its outcome against the recorded one (strict: any change fails the run, naming both).

It also checks that the controls the verdict is gated on are exactly the ones the ``claim`` marker declares.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import pytest

from mechclaims.harness.records import format_name


class Checker:
    def __init__(self, request: pytest.FixtureRequest, record: Callable[..., None], baseline: Any,
                 expect: Callable[[Any], None]):
        self.request, self.record, self.baseline, self.expect = request, record, baseline, expect

    def __call__(self, verdict: Any, *, baseline: bool = True, numbers: Mapping[str, float] | None = None,
                 tolerance: Mapping[str, float] | None = None, lm: Any = None, **where: Any) -> None:
        __tracebackhide__ = True
        self._controls_declared(verdict)
        self.record(verdict, **where)
        if baseline:
            if lm is None and "lm" in self.request.fixturenames:
                lm = self.request.getfixturevalue("lm")
            self.baseline.check(dict(numbers if numbers is not None else verdict.numbers()), lm,
                                tolerances=dict(verdict.tolerances), default_tolerance=dict(tolerance or {}))
        self.expect(verdict)

    def _controls_declared(self, verdict: Any) -> None:
        m = self.request.node.get_closest_marker("claim")
        if m is None or verdict.role != "claim":
            return
        params = self.request.node.callspec.params if hasattr(self.request.node, "callspec") else {}
        declared = {format_name(c, params) for c in m.kwargs.get("controls", ())}
        gated = set(verdict.controls) | set(verdict.inapplicable)
        if declared != gated:
            pytest.fail(f"{self.request.node.nodeid}: the claim marker declares controls {sorted(declared)} but the "
                        f"verdict is gated on {sorted(gated)}; declare exactly the controls the verdict is gated "
                        f"on (Verdict.gate), so that no control is silently dropped.", pytrace=False)
