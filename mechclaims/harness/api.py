"""``mechclaims.run``: run claims through pytest from a notebook or script and get the parsed summary back.

    import mechclaims as mc
    s = mc.run(claims=["residual_additivity"], models=["tiny-gpt2"])
    s.outcomes            # {"residual_additivity": {"tiny-gpt2": "supported"}}
    s.figures             # every figure the claims wrote, by test id

pytest runs in a child process (a fresh interpreter: its models, hooks and random state never leak into the
notebook's), with this package's plugin, from ``cwd`` (default: the current directory).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from mechclaims.errors import OptionError
from mechclaims.harness.bundled import pytest_args
from mechclaims.store.runs import loads


@dataclass
class Summary:
    """The parsed summary.json of one run, plus how pytest ended."""

    path: Path | None
    data: dict[str, Any]
    returncode: int
    output: str = field(repr=False, default="")

    @property
    def outcomes(self) -> dict[str, dict[str, str]]:
        """claim -> model -> outcome (supported, failed, refuted, confounded, inconclusive, ...)."""
        out: dict[str, dict[str, str]] = {}
        for o in self.data.get("outcomes", []):
            out.setdefault(o["claim"], {})[o["model"]] = o["outcome"]
        return out

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self.data.get("records", []))

    @property
    def figures(self) -> dict[str, list[str]]:
        """test id -> the image files it wrote (png/svg)."""
        return {r["test_id"]: [a for a in r.get("artifacts", []) if a.endswith((".png", ".svg"))]
                for r in self.records if r.get("artifacts")}

    def numbers(self, claim: str) -> list[dict[str, Any]]:
        """Every verdict recorded for ``claim``, with its statistic, p-value and numbers."""
        return [v for r in self.records if r.get("claim") == claim for v in r.get("verdicts", [])]


def run(claims: Iterable[str] | str | None = None, models: Iterable[str] | str | None = None,
        stimuli: Mapping[str, str | os.PathLike] | None = None, claims_dir: str | os.PathLike | None = None,
        artifacts_dir: str | os.PathLike | None = None, args: Iterable[str] = (),
        cwd: str | os.PathLike | None = None, timeout: float | None = None) -> Summary:
    """Run ``claims`` on ``models`` and return the :class:`Summary`.

    ``claims``: claim names (``-k`` expressions over ``claims_dir``) or paths/node ids of claim files; None runs
    every claim in ``claims_dir``. ``claims_dir``: the folder of claim modules; by default ``claims/`` under ``cwd``
    if there is one, else the claims bundled with mechclaims (as ``mechclaims run`` runs them: baselines and
    artifacts under ``cwd``). ``models``: --mc-model names. ``stimuli``: {NAME: PATH} overrides. ``args``: more
    pytest arguments (e.g. ``["--mc-permutations", "200"]``).

    Interrupting it (Ctrl-C, or Jupyter's interrupt, which sends SIGINT to the kernel only) sends one SIGINT to the
    pytest child and waits for it, so the child writes its run's summary (marked interrupted) before
    KeyboardInterrupt reaches the caller; a second interrupt is forwarded too, a third kills the child.
    """
    cwd = Path(cwd or Path.cwd())
    claims = [claims] if isinstance(claims, str) else list(claims or [])
    models = [models] if isinstance(models, str) else list(models or [])
    paths = [c for c in claims if (cwd / c.split("::")[0]).exists()]
    names = [c for c in claims if c not in paths]
    bundled = claims_dir is None and not paths and not (cwd / "claims").is_dir()
    if claims_dir is None:
        claims_dir = "claims"
    if not paths and not bundled and not (cwd / claims_dir).is_dir():
        raise OptionError(f"mechclaims.run: no claims folder {cwd / claims_dir}; pass claims_dir= (the folder of "
                          f"your claim modules) or claims=[paths to claim files], or leave both out to run the "
                          f"claims bundled with mechclaims.")
    if bundled:
        cmd = [sys.executable, "-m", "pytest", "-q", *pytest_args([], cwd)]
    else:
        cmd = [sys.executable, "-m", "pytest", "-p", "mechclaims.plugin", "-q", "-p", "no:cacheprovider",
               *(paths or [str(claims_dir)])]
    if names:
        cmd += ["-k", " or ".join(names)]
    for m in models:
        cmd += ["--mc-model", m]
    for k, v in (stimuli or {}).items():
        cmd += ["--mc-stimuli", f"{k}={v}"]
    if artifacts_dir is not None:
        cmd += ["--mc-artifacts-dir", str(artifacts_dir)]
    cmd += list(args)
    returncode, out, interrupted = _run_child(cmd, cwd, timeout)
    path = _summary_path(out)
    data = _read_summary(path)
    if interrupted is not None:
        where = f"; its summary (marked interrupted): {path}" if data else ""
        raise KeyboardInterrupt(f"mechclaims.run: interrupted; the pytest child stopped with exit code "
                                f"{returncode}{where}") from None
    if returncode not in (0, 1) and not data:
        raise RuntimeError(f"pytest exited with {returncode} and wrote no summary:\n{out[-3000:]}")
    return Summary(path=path, data=data, returncode=returncode, output=out)


GRACE_S = 120.0  # after an interrupt or a timeout: how long the child may take to write its summary and exit


def _run_child(cmd: list[str], cwd: Path, timeout: float | None) -> tuple[int, str, BaseException | None]:
    """Run pytest as a child in its own process group and collect its output. Returns (exit code, output, the
    interrupt that stopped it or None).

    ``subprocess.run`` would SIGKILL the child on KeyboardInterrupt, so a Jupyter interrupt (SIGINT to the kernel
    only) left a run folder with ``.running`` and no summary. Here each interrupt is forwarded as one SIGINT (the
    child's own group keeps a terminal's Ctrl-C from reaching it twice: once from the terminal, once from us), and
    the child is waited for; a third interrupt, or a child still alive GRACE_S after the first, is killed.
    ``timeout`` interrupts the child the same way, then raises :class:`subprocess.TimeoutExpired`.
    """
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    interrupted: BaseException | None = None
    sent = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    out = ""
    while True:
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            out, _ = p.communicate(timeout=left)
            break
        except KeyboardInterrupt as e:
            interrupted = interrupted or e
            sent += 1
            if sent >= 3:
                p.kill()
            elif p.poll() is None:
                p.send_signal(signal.SIGINT)
            deadline = time.monotonic() + GRACE_S
        except subprocess.TimeoutExpired:
            if sent or interrupted is not None:  # the grace period after an interrupt is over
                p.kill()
                out, _ = p.communicate()
                break
            p.send_signal(signal.SIGINT)
            sent += 1
            deadline = time.monotonic() + GRACE_S
            interrupted = subprocess.TimeoutExpired(cmd, timeout or 0)
    if isinstance(interrupted, subprocess.TimeoutExpired):
        raise subprocess.TimeoutExpired(cmd, interrupted.timeout, output=out)
    return p.returncode, out or "", interrupted


def _read_summary(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    return loads(path.read_text(encoding="utf-8"))


def _summary_path(output: str) -> Path | None:
    """The run's own summary.json, from the plugin's last terminal line (``summary: PATH ...``)."""
    for line in reversed(output.splitlines()):
        if line.startswith("summary: "):
            first = line[len("summary: "):].split()[0]
            p = Path(first)
            run = line.split("(latest: ", 1)[1].split(")")[0] if "(latest: " in line else None
            return Path(run) / "summary.json" if run else p
        if "its summary: " in line:
            return Path(line.split("its summary: ", 1)[1].split(". ")[0])
    return None
