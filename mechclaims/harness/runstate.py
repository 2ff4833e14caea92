"""How a session ends: whether it ran everything, why not, and its run folder's summary (see mechclaims.store.runs).

The plugin imports the hooks below, so they run as its own. A session is *interrupted* when Ctrl-C/SIGINT or SIGTERM
stopped it, pytest hit an internal error, a module failed to collect, or ``-x``/``--maxfail``/a failed write
stopped it early; its summary then says ``"interrupted": true`` with the reason, and it never becomes ``latest``.
"""
from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mechclaims.store.runs import DEFAULT_KEEP, Run

WORKER_KEY = "mechclaims_run_dir"


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled, ``kill``): ends the session like Ctrl-C, so its summary is still written."""


@dataclass
class RunState:
    run: Run | None = None
    run_dir: Path | None = None
    collection_errors: list[str] = field(default_factory=list)
    interrupt: str = ""
    internal_error: str = ""
    claim_items: int = 0
    old_sigterm: Any = None
    result: dict[str, Any] = field(default_factory=dict)


STATE = pytest.StashKey[RunState]()
_CFG: list[pytest.Config] = []  # the session's config, for hooks that do not receive it


def _state() -> RunState | None:
    return _CFG[-1].stash.get(STATE, None) if _CFG else None


def prepare(config: pytest.Config) -> RunState:
    """The session's state, before any run folder: collection errors are recorded from the start."""
    st = config.stash.get(STATE, None)
    if st is None:
        st = config.stash[STATE] = RunState()
    _CFG[:] = [config]
    return st


def start(config: pytest.Config, artifacts: Path) -> Path:
    """This session's run folder: created by the controller, handed to xdist workers through ``workerinput``."""
    st = prepare(config)
    wi = getattr(config, "workerinput", None)
    if wi is not None and wi.get(WORKER_KEY):
        st.run_dir = Path(wi[WORKER_KEY])
        return st.run_dir
    st.run = Run(artifacts).start()
    st.run_dir = st.run.dir
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        def on_term(signum, frame):
            raise Terminated("SIGTERM")
        st.old_sigterm = signal.signal(signal.SIGTERM, on_term)
    return st.run_dir


def stop(config: pytest.Config) -> None:
    if _CFG and _CFG[-1] is config:
        _CFG.clear()
    st = config.stash.get(STATE, None)
    if st is not None and st.old_sigterm is not None:
        signal.signal(signal.SIGTERM, st.old_sigterm)
        st.old_sigterm = None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist (controller): every worker writes into the controller's run folder."""
    st = node.config.stash.get(STATE, None)
    if st is not None and st.run_dir is not None:
        node.workerinput[WORKER_KEY] = str(st.run_dir)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        st = _state()
        if st is not None:
            text = str(report.longreprtext or "").strip().splitlines()
            first = next((l[1:].strip() for l in text if l.startswith("E ")), text[-1] if text else "")
            st.collection_errors.append(f"{report.nodeid or '<session>'}: {first[:300]}")


def pytest_collection_finish(session: pytest.Session) -> None:
    st = session.config.stash.get(STATE, None)
    if st is not None:
        st.claim_items = sum(1 for i in session.items if i.get_closest_marker("claim") is not None)


def pytest_keyboard_interrupt(excinfo: Any) -> None:
    st = _state()
    if st is None:
        return
    if isinstance(excinfo.value, pytest.Session.Interrupted):  # shouldstop, or collection errors
        if not st.collection_errors:
            st.interrupt = f"stopped: {excinfo.value}"
    elif isinstance(excinfo.value, Terminated):
        st.interrupt = "SIGTERM (the job was cancelled or killed with `kill`)"
    elif isinstance(excinfo.value, KeyboardInterrupt):
        st.interrupt = "KeyboardInterrupt (Ctrl-C or SIGINT)"
    else:  # pytest.exit(...)
        st.interrupt = f"pytest.exit: {getattr(excinfo.value, 'msg', excinfo.value)}"


def pytest_internalerror(excrepr: Any, excinfo: Any) -> None:
    st = _state()
    if st is not None:
        st.internal_error = f"internal error: {excinfo.typename}: {str(excinfo.value)[:300]}"


def reasons(session: pytest.Session, exitstatus: int, st: RunState) -> list[str]:
    """Why this session did not run everything it collected (empty when it did)."""
    out = [r for r in (st.internal_error, st.interrupt) if r]
    if st.collection_errors:
        out.append(f"{len(st.collection_errors)} collection error(s): {st.collection_errors[0]}")
    if session.shouldfail:
        out.append(f"stopped early: {session.shouldfail}")
    if session.shouldstop and not st.interrupt:
        out.append(f"stopped: {session.shouldstop}")
    if not out and int(exitstatus) in (int(pytest.ExitCode.INTERRUPTED), int(pytest.ExitCode.INTERNAL_ERROR)):
        out.append(f"interrupted (pytest exit status {int(exitstatus)})")
    return out


def finish(session: pytest.Session, exitstatus: int, records: list[dict], settings: Any, pool: Any) -> dict[str, Any]:
    """Controller, at session end: write the run's summary.json and report.html whatever happened, and move
    ``latest`` only for a complete run with claim records. Returns what happened, for the terminal summary."""
    from mechclaims.errors import ArtifactsWriteError
    from mechclaims.report.summary import build_summary

    st = session.config.stash.get(STATE, None)
    if st is None or st.run is None:
        return {}
    why = reasons(session, exitstatus, st)
    needed = bool(records or why or (st.claim_items and not session.config.option.collectonly))
    if not needed and st.run.discard_if_empty():
        return {}
    complete = not why
    try:
        summary = build_summary(records, settings, pool)
    except Exception as e:  # a bug must not cost the records: keep them, say why the rest is missing
        summary = {"records": records, "summary_error": f"{type(e).__name__}: {e}"}
    summary.update({"interrupted": not complete, "complete": complete, "reason": "; ".join(why),
                    "collection_errors": st.collection_errors,
                    "run": st.run.info(exitstatus=int(exitstatus), claim_tests_collected=st.claim_items,
                                       claim_tests_recorded=len(records))})
    keep = getattr(settings, "keep_runs", DEFAULT_KEEP)
    try:
        paths = st.run.finish(summary, _report_writer(), complete=complete and bool(records), keep=keep)
    except ArtifactsWriteError as e:
        st.result = {"error": str(e), "interrupted": not complete, "reason": summary["reason"]}
        session.exitstatus = pytest.ExitCode.TESTS_FAILED if int(exitstatus) == 0 else exitstatus
        return st.result
    st.result = {**paths, "interrupted": not complete, "reason": summary["reason"], "promoted": "latest" in paths}
    return st.result


def _report_writer():
    try:
        from mechclaims.report.html import write_html
    except ImportError:
        return None
    return write_html
