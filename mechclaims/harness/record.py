"""``mechclaims record-outcomes SUMMARY.json [...]``: record a run's outcomes as the expected ones.

Deliberate, like ``--force-regen`` for baselines: run the claims, read the outcomes in the summary, then record
them and review the diff. Each claim module's recorded outcomes live in ``<its folder>/expected/<module>.yml``
(read by ``mechclaims.verdict.outcome.load_expected``), one entry per test id whose outcome is not the default (a
claim: supported; a control: failed), with the reason and its numbers. Entries of the test ids in the summaries
are replaced (a test id now at its default outcome is removed); entries of other test ids (other models) are kept.

Which folder: ``--claims-dir`` if given; else the module's path in the test id, from the current directory (this
repository's ``claims/``, or your project's); else, for the claims bundled with mechclaims (``mechclaims run``),
the installed package's ``claims/expected``, which ``mechclaims run`` reads (a reinstall replaces it).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import yaml

from mechclaims.errors import MechClaimsError
from mechclaims.harness.bundled import claims_dir as bundled
from mechclaims.store.diskio import atomic_write
from mechclaims.store.runs import loads

DEFAULT = {"claim": "supported", "control": "failed"}


def _fmt(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def reason(rec: dict) -> str:
    """The numbers that decided: the key statistic and p, the effect and its interval, then why."""
    v = (rec.get("verdicts") or [{}])[0]
    parts = [f"{v.get('statistic_name')} = {_fmt(v.get('statistic'))}"]
    if v.get("p") is not None:
        parts.append(f"p = {_fmt(v['p'])}")
    if v.get("effect") is not None:
        ci = v.get("effect_ci")
        parts.append(f"{v.get('effect_name')} = {_fmt(v['effect'])}"
                     + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""))
    ctl = {k: c.get("outcome") for k, c in (v.get("controls") or {}).items() if c.get("outcome") != "failed"}
    if ctl:
        parts.append("controls: " + ", ".join(f"{k} {o}" for k, o in ctl.items()))
    why = v.get("absence") if rec["outcome"] == "refuted" else (v.get("reason") or v.get("absence") or "")
    if why:
        parts.append(why)
    if v.get("layers"):
        c = Counter(v["layers"].values())
        parts.append("layers: " + ", ".join(f"{k} {n}" for k, n in c.most_common()))
    return "; ".join(parts)[:600]


def expected_file(module: str, claims_dir: str | os.PathLike | None = None, cwd: Path | None = None) -> Path:
    """Where the recorded outcomes of claim module ``module`` (the file part of a test id) go."""
    name = Path(module)
    if claims_dir is not None:
        return Path(claims_dir) / "expected" / f"{name.stem}.yml"
    here = (cwd or Path.cwd()) / name
    if here.is_file():
        return here.parent / "expected" / f"{name.stem}.yml"

    if (bundled() / name.name).is_file():
        return bundled() / "expected" / f"{name.stem}.yml"
    return here.parent / "expected" / f"{name.stem}.yml"


def record_outcomes(summaries: Iterable[str | os.PathLike], claims_dir: str | os.PathLike | None = None
                    ) -> list[tuple[Path, int, int]]:
    """Write the recorded outcomes of every claim module in ``summaries``; returns (file, recorded, test ids)."""

    by_module: dict[str, dict[str, dict]] = {}
    seen: dict[str, set[str]] = {}
    for p in summaries:
        try:
            records = loads(Path(p).read_text(encoding="utf-8"))["records"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MechClaimsError(f"{p}: not a mechclaims summary.json ({type(e).__name__}: {e}); pass the "
                                  f"summary.json of a run (artifacts/summary.json is the latest).") from None
        for rec in records:
            if rec.get("outcome") in (None, "skipped", "error", "partial"):
                continue
            module, name = rec["test_id"].split("::")[0], rec["test_id"].split("::")[-1]
            seen.setdefault(module, set()).add(name)
            if rec["outcome"] != DEFAULT[rec.get("role", "claim")]:
                by_module.setdefault(module, {})[name] = {"outcome": rec["outcome"], "reason": reason(rec)}
    done = []
    for module, names in seen.items():
        f = expected_file(module, claims_dir)
        try:
            old = yaml.safe_load(f.read_text(encoding="utf-8")) if f.exists() else {}
        except yaml.YAMLError as e:
            raise MechClaimsError(f"{f} is not valid YAML ({str(e).splitlines()[0]}); restore it (git checkout) "
                                  f"before recording into it.") from None
        old = {k: v for k, v in (old or {}).items() if k not in names}
        new = {**old, **by_module.get(module, {})}

        atomic_write(f, yaml.safe_dump(dict(sorted(new.items())), width=120, sort_keys=False, allow_unicode=True),
                     fix="pass --claims-dir with a writable folder of claim modules")
        done.append((f, len(by_module.get(module, {})), len(names)))
    return done
