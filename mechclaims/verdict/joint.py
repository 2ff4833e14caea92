"""An intersection-union verdict: a claim that holds only if each of its parts holds.

Rule: it passes when every part passes; it is testable when every part is; its p is the largest part's p (the IUT
p-value, valid at the parts' level without correction); its effect is the smallest part's; absence is shown when
some part shows it (a conjunction cannot hold when one of its parts is shown absent). Falsified by a joint verdict
that passes while a part fails (tests/test_outcome.py).
"""
from __future__ import annotations

from typing import Mapping

from mechclaims.verdict.verdict import Verdict


def all_of(claim: str, parts: Mapping[str, Verdict]) -> Verdict:
    """The joint verdict of ``parts`` (``{name: verdict}``, e.g. one per token rendering); their details are kept
    under ``<name>.``. One part is returned as it is."""
    vs = list(parts.values())
    if not vs:
        raise ValueError(f"{claim}: all_of needs at least one part")
    if len(vs) == 1:
        return vs[0]
    p = max(x.statistic if x.p is None else x.p for x in vs)
    v = Verdict(claim=claim, statistic_name="max_p", statistic=p, p=p,
                rule=f"every part of {sorted(parts)}: " + vs[0].rule, passed=all(x.passed for x in vs),
                testable=all(x.testable for x in vs), effect_name=vs[0].effect_name, effect=min(x.effect for x in vs),
                details={f"{n}.{k}": d for n, x in parts.items() for k, d in x.details.items()},
                absent=any(x.absent for x in vs),
                absence="; ".join(f"{n}: {x.absence}" for n, x in parts.items() if x.absence),
                reason="; ".join(x.reason for x in vs if x.reason))
    v.tolerances.update({f"{n}.{k}": t for n, x in parts.items() for k, t in x.tolerances.items()})
    return v
