"""Records: what each claim test recorded, its outcome against the recorded one, and its summary row.

``Recording`` is the per-test state behind the ``record``/``expect``/``check`` fixtures; :func:`report_row` packs one
row per claim test into the report's ``user_properties`` (so pytest-xdist ships it to the controller), where the
:class:`~mechclaims.harness.session.Session` collects them for summary.json and the terminal table.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from mechclaims.errors import ArtifactsWriteError, MechClaimsError, NonFiniteActivationError
from mechclaims.harness.session import SESSION
from mechclaims.verdict.expected import expected_for
from mechclaims.verdict.outcome import DEFAULT_EXPECTED

DRIFT = pytest.StashKey[list]()
REC = pytest.StashKey[list]()
OUT = pytest.StashKey[dict]()
ART_FILES = pytest.StashKey[list]()
NEW_BASELINE = pytest.StashKey[str]()


def recorder(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``record(verdict, layer=..., site=..., **extra)``: adds the verdict to summary.json and the report. The
    first verdict recorded is the test's own: its outcome is the test's outcome (see ``expect``)."""
    recs = request.node.stash.setdefault(REC, [])

    def _record(verdict: Any, **extra: Any) -> None:
        recs.append({**verdict.to_record(), **extra})
        if OUT not in request.node.stash:
            request.node.stash[OUT] = _outcome_info(request, verdict)
    return _record


def _expected(request: pytest.FixtureRequest, role: str) -> tuple[str, str, bool]:
    """(expected outcome, its recorded reason, enforced) for this test id. Outcomes recorded in the claim module's
    ``EXPECTED_OUTCOMES`` were measured on its default stimuli: with --mc-stimuli overrides neither the outcome nor
    its reason (which quotes the default stimuli's numbers) applies, and the run gets its own outcomes."""
    s = request.config.stash[SESSION].settings if SESSION in request.config.stash else None
    if s is not None and s.stimuli:
        return DEFAULT_EXPECTED[role], "", False
    exp, why = expected_for(getattr(request.module, "EXPECTED_OUTCOMES", None) or {}, request.node.name, role)
    return exp, why, True


def _outcome_info(request: pytest.FixtureRequest, verdict: Any) -> dict[str, Any]:
    exp, why, enforced = _expected(request, verdict.role)
    return {"outcome": verdict.outcome, "expected": exp, "expected_reason": why, "enforced": enforced,
            "role": verdict.role, "controls": verdict.control_outcomes()}


def expecter(request: pytest.FixtureRequest) -> Callable[[Any], None]:
    """``expect(verdict)``: the test's outcome must be the one recorded for this test id.

    Recorded outcomes live in the claim module's ``EXPECTED_OUTCOMES`` (test id -> (outcome, reason with the
    numbers)); without an entry a claim is expected ``supported`` and a control ``failed``. Any other outcome fails
    the test, naming the recorded and the new outcome with the numbers. A recorded outcome other than the default
    shows as xfail with its reason. Call it last, after ``record`` and ``baseline.check``.
    """
    def _expect(verdict: Any) -> None:
        __tracebackhide__ = True
        info = _outcome_info(request, verdict)
        request.node.stash[OUT] = info
        got, exp, why = info["outcome"], info["expected"], info["expected_reason"]
        default = DEFAULT_EXPECTED[verdict.role]
        if not info["enforced"]:
            if got != default:
                pytest.xfail(f"{got} on these stimuli (no outcome is recorded for them; the recorded ones apply only "
                             f"to the bundled stimuli)")
            return
        if got != exp:
            was = f"{exp} ({why})" if why else f"{exp} (the default for a {verdict.role})"
            pytest.fail(f"outcome changed: recorded {was}; now {got.upper()}.\n  {verdict.explain()}\n  If the new "
                        f"outcome is right, record it deliberately: `mechclaims record-outcomes <run>/summary.json` "
                        f"writes claims/expected/{request.module.__name__.split('.')[-1]}.yml with the numbers (or "
                        f"EXPECTED_OUTCOMES in {request.module.__name__} for a claim of your own).", pytrace=False)
        if exp != default:
            pytest.xfail(f"{got} (recorded): {why}")
    return _expect


def report_row(item: pytest.Item, call: pytest.CallInfo, rep: pytest.TestReport) -> None:
    """Attach this claim test's summary row to its report (the plugin's ``pytest_runtest_makereport`` wrapper)."""
    failure = _library_failure(item, rep, call)
    if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
        recs = item.stash.get(REC, [])
        art_files = item.stash.get(ART_FILES, [])
        m = item.get_closest_marker("claim")
        if m is not None:
            params = item.callspec.params if getattr(item, "callspec", None) else {}
            test_outcome = "xfailed" if hasattr(rep, "wasxfail") and rep.skipped else (
                "xpassed" if hasattr(rep, "wasxfail") else rep.outcome)
            info = item.stash.get(OUT, {})
            outcome = info.get("outcome")
            if failure == "inconclusive":  # non-finite activations: nothing about the claim could be measured
                outcome = "inconclusive"
            elif outcome is None:  # the test never reached its verdict: a crash, a skip, a bad input
                outcome = "skipped" if rep.skipped else "error"
            # Via user_properties so pytest-xdist ships it to the controller, which writes the summary.
            rep.user_properties.append(("mechclaims", {
                "test_id": item.nodeid, "claim": claim_name(item), "family": m.kwargs.get("family", "observational"),
                "role": "control" if m.kwargs.get("control_of") else "claim",
                "control_of": format_name(m.kwargs.get("control_of"), params),
                "declared_controls": [format_name(c, params) for c in m.kwargs.get("controls", ())],
                "aggregate": m.kwargs.get("aggregate"), "model": params.get("mc_model"),
                "layer": params.get("layer"), "outcome": outcome, "test_outcome": test_outcome,
                # Not enforced (own stimuli): no recorded outcome applies, so none is shown next to the outcome.
                "expected": info.get("expected") if info.get("enforced", True) else None,
                "expected_reason": info.get("expected_reason", ""),
                "controls": info.get("controls", {}), "duration_s": round(rep.duration, 3),
                "verdicts": recs, "artifacts": [str(p) for p in art_files if p.exists()],
                "baseline": "created" if NEW_BASELINE in item.stash else None,
                "reason": _reason(rep), "drift": item.stash.get(DRIFT, []),
                "statement": _statement(item), "model_layers": _model_layers(item, params.get("mc_model")),
            }))


def _model_layers(item: pytest.Item, model: Any) -> int | None:
    """The model's depth, so that the report can tell a run that covered every layer from a ``-k`` slice."""
    ses = item.config.stash.get(SESSION, None)
    if model is None or ses is None or ses.pool is None:
        return None
    try:
        return ses.pool.n_layers(model)
    except MechClaimsError:
        return None


def _library_failure(item: pytest.Item, rep: pytest.TestReport, call: pytest.CallInfo) -> str | None:
    """A MechClaimsError inside a test shows as its one-paragraph message, never a traceback from deep inside the
    library. Returns ``"inconclusive"`` for non-finite activations (the claim could not be measured) and
    ``"stop"`` for an output that cannot be written (a full or read-only disk: the session stops at the first)."""
    if not (rep.failed and call.excinfo is not None and call.excinfo.errisinstance(MechClaimsError)):
        return None
    rep.longrepr = f"{call.excinfo.typename}: {call.excinfo.value}"
    if call.excinfo.errisinstance(NonFiniteActivationError):
        return "inconclusive"
    if call.excinfo.errisinstance(ArtifactsWriteError):
        item.session.shouldstop = f"{call.excinfo.value}"
        return "stop"
    return None


def format_name(name: Any, params: dict[str, Any]) -> Any:
    """A claim name may use the test's parameters: ``"lesion_{rule}"`` -> ``"lesion_contrast"``."""
    if not isinstance(name, str) or "{" not in name:
        return name
    try:
        return name.format(**params)
    except (KeyError, IndexError, ValueError):
        return name


def claim_name(item: pytest.Item) -> str:
    m = item.get_closest_marker("claim")
    params = item.callspec.params if getattr(item, "callspec", None) else {}
    return format_name(m.args[0] if m is not None and m.args else item.originalname, params)


def _reason(rep: pytest.TestReport) -> str:
    """Why a test did not simply pass: the xfail reason, the skip reason, or the failure's first line."""
    if hasattr(rep, "wasxfail"):
        return str(rep.wasxfail)
    if rep.skipped and isinstance(rep.longrepr, tuple):
        return str(rep.longrepr[2]).removeprefix("Skipped: ")
    if rep.failed:
        text = rep.longreprtext
        for line in text.splitlines():
            if line.startswith("E "):
                return line[1:].strip()[:500]
        return text.splitlines()[-1][:500] if text else ""
    return ""


def _statement(item: pytest.Item) -> dict[str, str]:
    """The claim's statement and falsification rule, from the claim module's docstring."""
    doc = (getattr(item, "module", None).__doc__ or "") if hasattr(item, "module") else ""
    fn_doc = (getattr(item, "function", None).__doc__ or "") if hasattr(item, "function") else ""
    falsified = next((l.split(":", 1)[1].strip() for l in doc.splitlines() if l.lower().startswith("falsified by")), "")
    return {"statement": (fn_doc or doc).strip()[:1500], "falsified_by": falsified}


def hook_guard(request: pytest.FixtureRequest, pool: Any) -> Iterator[None]:
    """Around each test: fail it if it left a hook on a shared model (hooks are read-only shared state), and clear
    the hook so one leaky test does not poison the rest of the session."""
    if pool is None or not pool.loaded():
        yield
        return
    from mechclaims.forward.intervene import clear_hooks, count_hooks  # local: keeps the plugin torch-free

    before = {n: count_hooks(m.model) for n, m in pool.loaded().items()}
    yield
    for n, m in pool.loaded().items():
        after = count_hooks(m.model)
        if after != before.get(n, 0):
            clear_hooks(m.model)
            pytest.fail(f"{request.node.nodeid} left {after - before.get(n, 0)} hook(s) on the shared model {n}; "
                        f"use mechclaims.intervene(), whose hooks come off in finally.", pytrace=False)
