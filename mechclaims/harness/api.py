"""``mechclaims.run``: run claims through pytest from a notebook or script and get the parsed summary back.

    import mechclaims as mc
    s = mc.run(claims=["residual_additivity"], models=["tiny-gpt2"])
    s.outcomes            # {"residual_additivity": {"tiny-gpt2": "supported"}}
    s.figures             # every figure the claims wrote, by test id

pytest runs in a child process (a fresh interpreter: its models, hooks and random state never leak into the
notebook's), with this package's plugin, from ``cwd`` (default: the current directory).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from mechclaims.errors import OptionError


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
        stimuli: Mapping[str, str | os.PathLike] | None = None, claims_dir: str | os.PathLike = "claims",
        artifacts_dir: str | os.PathLike | None = None, args: Iterable[str] = (),
        cwd: str | os.PathLike | None = None, timeout: float | None = None) -> Summary:
    """Run ``claims`` on ``models`` and return the :class:`Summary`.

    ``claims``: claim names (``-k`` expressions over ``claims_dir``) or paths/node ids of claim files; None runs
    every claim in ``claims_dir``. ``models``: --mc-model names. ``stimuli``: {NAME: PATH} overrides. ``args``:
    more pytest arguments (e.g. ``["--mc-permutations", "200"]``).
    """
    cwd = Path(cwd or Path.cwd())
    claims = [claims] if isinstance(claims, str) else list(claims or [])
    models = [models] if isinstance(models, str) else list(models or [])
    paths = [c for c in claims if (cwd / c.split("::")[0]).exists()]
    names = [c for c in claims if c not in paths]
    if not paths and not (cwd / claims_dir).is_dir():
        raise OptionError(f"mechclaims.run: no claims folder {cwd / claims_dir}; pass claims_dir= (the folder of "
                          f"your claim modules) or claims=[paths to claim files].")
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
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    out = r.stdout + r.stderr
    path = _summary_path(out)
    data = json.loads(path.read_text()) if path is not None and path.is_file() else {}
    if r.returncode not in (0, 1) and not data:
        raise RuntimeError(f"pytest exited with {r.returncode} and wrote no summary:\n{out[-3000:]}")
    return Summary(path=path, data=data, returncode=r.returncode, output=out)


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
