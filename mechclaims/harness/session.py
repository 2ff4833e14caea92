"""The session: one object on ``config.stash``, registered as a plugin whose methods are hooks (pytest's junitxml
``LogXML`` is the model). It holds the settings and model pool (made on first need), the run folder, the claim
records, and how the session ended, and writes the run's summary whatever happened.

A session is *interrupted* when Ctrl-C/SIGINT or SIGTERM stopped it, pytest hit an internal error, a module failed
to collect, ``-x``/``--maxfail``/a failed write stopped it early, or fewer claim tests reported than were collected;
its summary then says ``"interrupted": true`` with the reason, and it never becomes ``latest``. Interrupts are
idempotent: the first SIGINT is recorded before anything else runs (our own handler), so a second one, arriving
while pytest unwinds from the first, can neither erase it nor mark the partial run complete; the summary is
written with SIGINT held off.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from mechclaims.errors import ArtifactsWriteError, MechClaimsError
from mechclaims.harness import settings as settings_mod
from mechclaims.harness.options import check_layers, worker_count
from mechclaims.harness.pool import ModelPool
from mechclaims.harness.settings import Settings
from mechclaims.store.runs import DEFAULT_KEEP, Run

WORKER_KEY = "mechclaims_run_dir"
SESSION = pytest.StashKey["Session"]()


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled, ``kill``): ends the session like Ctrl-C, so its summary is still written."""


def get(config: pytest.Config) -> "Session":
    return config.stash[SESSION]


class TerminalHandler(logging.Handler):
    """The ``mechclaims`` logger's messages (a large stimuli file, progress of long work) on the terminal while the
    work runs: written through pytest's terminal reporter with output capture suspended, as pytest's own live
    logging does. Without a terminal reporter (xdist workers) nothing is written."""

    def __init__(self, config: pytest.Config):
        super().__init__(logging.INFO)
        self.config = config

    def emit(self, record: logging.LogRecord) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None:
            return
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        with capman.global_and_fixture_disabled() if capman is not None else nullcontext():
            tr.write_line(f"mechclaims: {level}{record.getMessage()}", yellow=record.levelno >= logging.WARNING)


@dataclass(eq=False)  # a plugin object: hashed by identity
class Session:
    config: pytest.Config
    settings: Settings | None = None
    pool: ModelPool | None = None
    run: Run | None = None
    run_dir: Path | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    collection_errors: list[str] = field(default_factory=list)
    interrupt: str = ""
    internal_error: str = ""
    claim_items: int = 0
    mutated: list[str] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    _old_handlers: dict[int, Any] = field(default_factory=dict)
    _log: TerminalHandler | None = None

    def __post_init__(self) -> None:
        self._log = TerminalHandler(self.config)
        logger = logging.getLogger("mechclaims")
        logger.addHandler(self._log)
        logger.setLevel(logging.INFO)

    # ----------------------------------------------------------------------------------------------- activation
    @property
    def active(self) -> bool:
        return self.settings is not None

    def activate(self, resolve: bool = True) -> tuple[Settings, ModelPool]:
        """Read and check the options once (a bad value is a usage error); ``resolve`` also resolves every model, so
        a bad name or a layer that does not exist never reaches a test."""
        if self.settings is not None:
            return self.settings, self.pool
        try:
            s = settings_mod.build(self.config)
            pool = ModelPool(s)
            if resolve:
                check_layers(s.layers, {name: pool.n_layers(name) for name in s.models})
            settings_mod.check_baselines_dir(self.config, s)
            workers = worker_count()
        except MechClaimsError as e:
            raise pytest.UsageError(str(e)) from None
        self.settings, self.pool = s, pool
        if workers > 1 and s.device == "cpu":
            import torch  # local: only a session that runs claims under xdist gets here

            # n workers x n intra-op threads on n cores spin against each other (10x slower on 2 cores): split them.
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
        return s, pool

    def start_run(self) -> Path | None:
        """This session's run folder (mechclaims.store.runs), once, after the options are checked: made by the
        controller, handed to xdist workers through ``workerinput``."""
        if self.settings is None or self.run_dir is not None:
            return self.run_dir
        wi = getattr(self.config, "workerinput", None)
        if wi is not None and wi.get(WORKER_KEY):
            self.run_dir = Path(wi[WORKER_KEY])
        else:
            self.run = Run(self.settings.artifacts).start()
            self.run_dir = self.run.dir
            self._install_signal_handlers()
        self.settings.run_dir = self.run_dir
        return self.run_dir

    # ------------------------------------------------------------------------------------------------ signals
    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_int(signum: int, frame: Any) -> None:
            first = not self.interrupt
            self.interrupt = self.interrupt or "KeyboardInterrupt (Ctrl-C or SIGINT)"
            if first:
                raise KeyboardInterrupt
            # A second SIGINT while pytest unwinds: recorded already; raising again could cut the summary short.

        def on_term(signum: int, frame: Any) -> None:
            self.interrupt = self.interrupt or "SIGTERM (the job was cancelled or killed with `kill`)"
            raise Terminated("SIGTERM")

        for sig, fn in ((signal.SIGINT, on_int), (signal.SIGTERM, on_term)):
            current = signal.getsignal(sig)
            if current in (signal.SIG_DFL, signal.default_int_handler):
                self._old_handlers[sig] = signal.signal(sig, fn)

    def _restore_signal_handlers(self) -> None:
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()

    @contextmanager
    def _held(self) -> Iterator[None]:
        """SIGINT/SIGTERM held off while the summary is written (they are recorded, never lost)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        seen: list[int] = []
        old = {s: signal.signal(s, lambda n, f: seen.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if seen and not self.interrupt:
                self.interrupt = "signal during the summary"

    # ------------------------------------------------------------------------------------------------- hooks
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """pytest-xdist (controller): one run folder for all workers, made before they start."""
        self.activate(resolve=False)
        self.start_run()
        if self.run_dir is not None:
            node.workerinput[WORKER_KEY] = str(self.run_dir)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            text = str(report.longreprtext or "").strip().splitlines()
            first = next((l[1:].strip() for l in text if l.startswith("E ")), text[-1] if text else "")
            self.collection_errors.append(f"{report.nodeid or '<session>'}: {first[:300]}")

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.claim_items = sum(1 for i in session.items if i.get_closest_marker("claim") is not None)
        if self.settings is not None:
            self.start_run()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for k, v in getattr(report, "user_properties", []):
            if k == "mechclaims":
                self.records.append(v)

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        v = excinfo.value
        if isinstance(v, pytest.Session.Interrupted):  # shouldstop, or collection errors
            if not self.collection_errors and not self.interrupt:
                self.interrupt = f"stopped: {v}"
        elif isinstance(v, Terminated):
            self.interrupt = self.interrupt or "SIGTERM (the job was cancelled or killed with `kill`)"
        elif isinstance(v, KeyboardInterrupt):
            self.interrupt = self.interrupt or "KeyboardInterrupt (Ctrl-C or SIGINT)"
        else:  # pytest.exit(...)
            self.interrupt = self.interrupt or f"pytest.exit: {getattr(v, 'msg', v)}"

    def pytest_internalerror(self, excrepr: Any, excinfo: Any) -> None:
        self.internal_error = f"internal error: {excinfo.typename}: {str(excinfo.value)[:300]}"

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Claims must never mutate the session models: compare each weight fingerprint with the one at load. Then
        the run's summary.json is written, whatever happened."""
        if self.pool is not None and self.pool.loaded():
            from mechclaims.model.fingerprint import weight_fingerprint  # local: keeps the plugin torch-free

            for name, lm in self.pool.loaded().items():
                # A file fingerprint (st-...) says nothing about the loaded tensors: compare with the state-dict
                # hash taken at load, where the model was small enough to take one.
                ref = lm.extra.get("state_fingerprint", None if lm.fingerprint.startswith("st-") else lm.fingerprint)
                if ref is not None and weight_fingerprint(lm.model) != ref:
                    self.mutated.append(name)
                    session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.records and self.settings is None:  # xdist controller of a lazily activated session
            self.activate(resolve=False)
            self.start_run()
        if self.settings is not None and not hasattr(self.config, "workerinput"):
            with self._held():
                self.finish(session, exitstatus)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        from mechclaims.harness.terminal import summary_lines  # local: the report wing is read only at the end

        for line, colour in summary_lines(self):
            terminalreporter.write_line(line, **({colour: True} if colour else {}))

    def close(self) -> None:
        """At unconfigure (called by the plugin, which then unregisters the session)."""
        self._restore_signal_handlers()
        if self._log is not None:
            logging.getLogger("mechclaims").removeHandler(self._log)
            self._log = None

    # ------------------------------------------------------------------------------------------------ the end
    def reasons(self, session: pytest.Session, exitstatus: int) -> list[str]:
        """Why this session did not run everything it collected (empty when it did)."""
        out = [r for r in (self.internal_error, self.interrupt) if r]
        if self.collection_errors:
            out.append(f"{len(self.collection_errors)} collection error(s): {self.collection_errors[0]}")
        if session.shouldfail:
            out.append(f"stopped early: {session.shouldfail}")
        if session.shouldstop and not self.interrupt:
            out.append(f"stopped: {session.shouldstop}")
        if not out and int(exitstatus) in (int(pytest.ExitCode.INTERRUPTED), int(pytest.ExitCode.INTERNAL_ERROR)):
            out.append(f"interrupted (pytest exit status {int(exitstatus)})")
        ran = {r.get("test_id") for r in self.records}
        if not out and self.claim_items and not self.config.option.collectonly and len(ran) < self.claim_items:
            out.append(f"only {len(ran)} of {self.claim_items} collected claim tests reported")
        return out

    def finish(self, session: pytest.Session, exitstatus: int) -> dict[str, Any]:
        """Controller, at session end: write the run's summary.json and report.html whatever happened, and move
        ``latest`` only for a complete run with claim records."""
        from mechclaims.report.html import write_html  # local: the report wing is read only at the end
        from mechclaims.report.summary import build_summary

        if self.run is None:
            return {}
        why = self.reasons(session, exitstatus)
        needed = bool(self.records or why or (self.claim_items and not self.config.option.collectonly))
        if not needed and self.run.discard_if_empty():
            return {}
        complete = not why
        try:
            summary = build_summary(self.records, self.settings, self.pool)
        except Exception as e:  # a bug must not cost the records: keep them, say why the rest is missing
            summary = {"records": self.records, "summary_error": f"{type(e).__name__}: {e}"}
        summary.update({"interrupted": not complete, "complete": complete, "reason": "; ".join(why),
                        "collection_errors": self.collection_errors,
                        "run": self.run.info(exitstatus=int(exitstatus), claim_tests_collected=self.claim_items,
                                             claim_tests_recorded=len(self.records))})
        keep = getattr(self.settings, "keep_runs", DEFAULT_KEEP)
        try:
            paths = self.run.finish(summary, write_html, complete=complete and bool(self.records), keep=keep)
        except ArtifactsWriteError as e:
            self.result = {"error": str(e), "interrupted": not complete, "reason": summary["reason"]}
            session.exitstatus = pytest.ExitCode.TESTS_FAILED if int(exitstatus) == 0 else exitstatus
            return self.result
        self.result = {**paths, "interrupted": not complete, "reason": summary["reason"],
                       "promoted": "latest" in paths}
        return self.result
