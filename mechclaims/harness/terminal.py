"""What the session says at the end, in the terminal: verdicts grouped by outcome, baselines created, statistics
reused, where the summary and report went, and whether the run was interrupted."""
from __future__ import annotations

from typing import Any, Iterator

from mechclaims.report.summary import terminal_table


def summary_lines(session: Any) -> Iterator[tuple[str, str | None]]:
    """``(line, colour)`` pairs for pytest's terminal reporter (colour: "red", "yellow" or None)."""
    for name in session.mutated:
        yield (f"mechclaims: ERROR: the weights of the shared model {name} changed during the session; a test edited "
               f"them in place instead of using intervene().", "red")
    s = session.settings
    if s is None or hasattr(session.config, "workerinput"):
        return
    recs, res = session.records, session.result
    if recs:
        yield "=" * 30 + " mechclaims verdicts " + "=" * 30, None
        for line in terminal_table(recs):
            yield line, None
    created = [r for r in recs if r.get("baseline") == "created"]
    if created:
        yield (f"mechclaims: {len(created)} baseline(s) created under {s.baselines} (none existed for these model(s) "
               f"and stimuli): the outcomes above are this run's own; rerun to check later runs against them.",
               "yellow")
    store = session.pool.stat_store if session.pool is not None and session.pool.stat_store_used else None
    if store is not None and store.mode != "off" and (store.hits or store.misses):
        chk = store.check
        shipped = (f"; {store.shipped_hits} of them from the store shipped with the repository ({store.shipped})"
                   if store.shipped_hits else "")
        unmatched = (f" None of the statistics shipped with the repository ({store.shipped}) matched this run "
                     f"(another code hash, capture or library version): computed instead."
                     if store.shipped is not None and not store.shipped_hits and store.misses else "")
        yield (f"mechclaims: statistics reused for {store.hits} result(s) ({store.content_hits} by content: the same "
               f"captured arrays, options and code; {store.hits - store.content_hits} by the full key: the same "
               f"weights, forward fingerprint, stimuli, options and code; {chk.verified} verified by recomputation, "
               f"a seeded {chk.rate:.0%} sample of those that run the model{shipped}), computed for {store.misses}; "
               f"--mc-statistics-cache off recomputes them all without the store (refresh: recomputes and "
               f"overwrites it).{unmatched}", None)
    if store is not None and store.check.mismatched:
        yield (f"mechclaims: WARNING: {len(store.check.mismatched)} reused statistic(s) differed from their "
               f"recomputation ({store.check.mismatched[0]}): every statistic that runs the model was recomputed "
               f"after it; --mc-statistics-cache refresh recomputes the whole store.", "yellow")
    for line in getattr(session, "store_lines", []):
        yield f"mechclaims: {line}", None
    if res.get("error"):
        yield f"mechclaims: ERROR: {res['error']}", "red"
    elif res.get("interrupted"):
        yield (f"mechclaims: run interrupted ({res['reason']}); its summary: {res['summary']}. The latest complete "
               f"run is unchanged: {s.artifacts / 'latest'}.", "yellow")
    elif res:
        where = f"{s.artifacts / 'summary.json'} (latest: {res['run']})" if res.get("promoted") else res["summary"]
        yield f"summary: {where}   report: {res.get('report', '-')}", None
