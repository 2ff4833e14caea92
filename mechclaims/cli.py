"""``mechclaims`` console script: ``mechclaims new-claim NAME`` writes a claim skeleton into ``claims/``;
``mechclaims run [--bundled-baselines] [pytest args]`` runs the bundled claims here (``mechclaims.harness.bundled``);
``mechclaims record-outcomes SUMMARY.json`` records a run's outcomes as the expected ones (mechclaims.harness.record).

``mechclaims prepare ...`` is ``python -m mechclaims prepare ...`` (the model-cache preparation).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from mechclaims.errors import MechClaimsError
from mechclaims.harness.bundled import run
from mechclaims.harness.record import record_outcomes

TEMPLATE = '''"""Claim {name}: the residual stream at layer 0 is the sum of its parts (resid_post = resid_pre + attn_out +
mlp_out, to float precision). Statement and rule are fixed before looking at data.

Falsified by: a relative error above 1e-4 at any token.
Control: the same identity with mlp_out taken from another token (shuffled) must fail; if it holds too, the verdict
is `confounded`.
"""
import json

import numpy as np
import pytest

import mechclaims
from mechclaims.claim import Verdict
from mechclaims.plots import plt, save_figure

STIMULI = {{"{name}": "data/{name}.jsonl"}}  # override with --mc-stimuli {name}=PATH
SITES = ["blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.hook_mlp_out", "blocks.0.hook_resid_post"]
TOL = 1e-4


def activations(ctx):
    """The four sites on every stimulus (ctx.memo: computed once per model and session)."""
    texts = [json.loads(line)["text"] for line in ctx.stimuli_path("{name}").read_text().splitlines() if line.strip()]
    return mechclaims.capture(ctx.lm, mechclaims.encode(ctx.lm, texts), SITES, "all")


def rel_error(acts, mlp):
    parts = acts[SITES[0]] + acts[SITES[1]] + mlp
    post = acts[SITES[3]]
    return float(np.abs(parts - post).max() / (np.abs(post).max() + 1e-12))


@pytest.mark.claim("{name}", family="observational", controls=("{name}_shuffled",))
def test_{name}(ctx, check, artifacts):
    acts = ctx.memo(activations)
    err = rel_error(acts, acts[SITES[2]])
    shuffled = acts[SITES[2]][np.random.default_rng(ctx.seed).permutation(len(acts[SITES[2]]))]
    ctl_err = rel_error(acts, shuffled)
    control = Verdict(claim="{name}_shuffled", statistic_name="max_rel_error", statistic=ctl_err,
                      rule=f"max relative error <= {{TOL}}", passed=ctl_err <= TOL, role="control")
    v = Verdict(claim="{name}", statistic_name="max_rel_error", statistic=err,
                rule=f"max relative error <= {{TOL}}", passed=err <= TOL).gate({{"{name}_shuffled": control}})
    fig, ax = plt.subplots()
    ax.bar(["claim", "shuffled control"], [err, ctl_err])
    ax.axhline(TOL, ls="--", color="k")
    ax.set(yscale="log", ylabel="max relative error", title=f"{{ctx.lm.name}}: {{v.outcome}}")
    save_figure(fig, artifacts.path("{name}.png"))
    check(v, tolerance={{"rtol": 1e-2, "atol": 1e-5}})  # record, baseline, recorded outcome: in that order
'''

SENTENCES = ["The cat sat on the mat.", "Paris is the capital of France.", "She gave him the book.",
             "Rain fell all night.", "Numbers can be prime."]


def new_claim(name: str, where: Path) -> list[Path]:
    """Write ``where/test_<name>.py`` and its stimuli ``where/data/<name>.jsonl``; refuses to overwrite."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise SystemExit(f"mechclaims new-claim {name!r}: use a Python identifier in lower case, e.g. "
                         f"'my_claim'.")
    blocked = next((p for p in (where, *where.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise SystemExit(f"mechclaims new-claim: --dir {where}: {blocked} is a file, not a folder; pass the folder "
                         f"your claim modules live in (default: claims).")
    test, data = where / f"test_{name}.py", where / "data" / f"{name}.jsonl"
    for p in (test, data):
        if p.exists():
            raise SystemExit(f"mechclaims new-claim: {p} exists; pick another name or remove it.")
    try:
        data.parent.mkdir(parents=True, exist_ok=True)
        test.write_text(TEMPLATE.format(name=name))
        data.write_text("".join(json.dumps({"text": t}) + "\n" for t in SENTENCES))
    except OSError as e:
        raise SystemExit(f"mechclaims new-claim: cannot write into {where} ({e.strerror or e}); pass a writable "
                         f"folder with --dir.") from None
    return [test, data]


PYTEST_INI = """[pytest]
# Written by `mechclaims new-claim` (there was no pytest configuration here). The claims run on the models below
# (one per line: built-in names, hub ids or local folders); --mc-model on the command line overrides them.
testpaths = {dir}
mechclaims_models =
    tiny-gpt2
"""


def has_pytest_config(cwd: Path) -> bool:
    """Whether ``cwd`` holds a pytest configuration (pytest.ini, or a [tool.pytest.ini_options], [tool:pytest] or
    [pytest] section), so that ``pytest`` run here reads it."""
    if (cwd / "pytest.ini").is_file() or (cwd / ".pytest.ini").is_file():
        return True
    for name, marker in (("pyproject.toml", "[tool.pytest.ini_options]"), ("tox.ini", "[pytest]"),
                         ("setup.cfg", "[tool:pytest]")):
        f = cwd / name
        if f.is_file() and marker in f.read_text(encoding="utf-8", errors="replace"):
            return True
    return False


def scaffold_config(cwd: Path, where: Path) -> Path | None:
    """A ``pytest.ini`` naming the claims folder and tiny-gpt2 (which needs no model package), so that a plain
    ``pytest`` runs the new claim; only where no pytest configuration exists (never overwrites)."""
    if has_pytest_config(cwd):
        return None
    try:
        rel = where.resolve().relative_to(cwd.resolve()).as_posix()
    except ValueError:
        rel = str(where)
    ini = cwd / "pytest.ini"
    ini.write_text(PYTEST_INI.format(dir=rel))
    return ini


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["prepare"]:
        from mechclaims.__main__ import main as prepare

        return prepare(argv) or 0
    if argv[:1] == ["run"]:  # everything after "run" goes to pytest
        return run(argv[1:])
    ap = argparse.ArgumentParser(prog="mechclaims", description="mechclaims: claims as pytest tests.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    nc = sub.add_parser("new-claim", help="write a claim skeleton (statement, rule, control, plot, baseline)")
    nc.add_argument("name")
    nc.add_argument("--dir", default="claims", help="where claim modules live (default: claims)")
    sub.add_parser("prepare", help="prepare the converted model cache (see python -m mechclaims prepare -h)")
    sub.add_parser("run", help="run the bundled claims here: mechclaims run --model tiny-gpt2 [--bundled-baselines] "
                               "[pytest args]; baselines and artifacts go under the current directory")
    ro = sub.add_parser("record-outcomes", help="record a run's outcomes as the expected ones (claims' expected/*.yml)",
                        description="Record the outcomes in SUMMARY (a run's summary.json) as the expected ones, "
                                    "deliberately, like --force-regen for baselines; review the diff afterwards.")
    ro.add_argument("summary", nargs="+", help="summary.json of a run (artifacts/summary.json: the latest)")
    ro.add_argument("--claims-dir", default=None,
                    help="the folder of the claim modules (default: from the test ids, else the bundled claims)")
    a = ap.parse_args(argv)
    if a.cmd == "new-claim":
        for p in new_claim(a.name, Path(a.dir)):
            print(f"wrote {p}")
        ini = scaffold_config(Path.cwd(), Path(a.dir))
        if ini is not None:
            print(f"wrote {ini} (testpaths {a.dir}, model tiny-gpt2)")
            print("run it: pytest (the first run writes its baseline; rerun to check)")
        else:
            print(f"run it: pytest {a.dir} --mc-model tiny-gpt2 (the first run writes its baseline; rerun to check)")
    elif a.cmd == "record-outcomes":
        try:
            for f, n, total in record_outcomes(a.summary, a.claims_dir):
                print(f"{f}: {n} recorded of {total} test ids")
        except MechClaimsError as e:
            print(f"mechclaims record-outcomes: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
