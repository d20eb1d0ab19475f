"""Which path served a benchmark row, so an exact scan is never reported under an index's name.

Every result row carries ``plan``: ``{"path": ..., "segments": {path: count}, "fallback_queries": n,
"queries": nq}``. ``path`` is what served the row as a whole:

* ``index`` / ``filtered-index``  every segment that had matching rows was answered by its index;
* ``exact``                      every such segment was scanned exactly (the planner chose it, the index
                                 fell back for every query, or the algorithm is exact by nature);
* ``mixed``                      some segments one way, some the other (a growing tail beside an index);
* ``skip``                       no segment had a matching row.

An approximate algorithm's row whose path is ``exact`` measures the scan, not the index: the tables
and plots leave it out of index comparisons (``index_comparable``) and list it separately.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Paths that mean "the index answered".
INDEX_PATHS = frozenset({"index", "filtered-index"})


def summarise(segment_plans: Sequence[Mapping[str, Any]], queries: int) -> dict[str, Any]:
    """One row's plan from the planner's per-segment plans (``Collection.explain`` / ``result.plan``)."""
    counts = Counter(p["path"] for p in segment_plans)
    fallback = sum(int(p.get("fallback_queries", 0)) for p in segment_plans)
    served = [path for path in counts if path != "skip"]
    if not served:
        path = "skip"
    elif len(served) == 1:
        path = served[0]
    elif all(p in INDEX_PATHS for p in served):
        path = "filtered-index"
    else:
        path = "mixed"
    indexed = sum(n for p, n in counts.items() if p in INDEX_PATHS)
    if path in INDEX_PATHS and indexed == 1 and fallback >= queries > 0:
        path = "exact"  # the only index fell back to an exact answer for every query
    return {"path": path, "segments": dict(counts), "fallback_queries": fallback, "queries": queries}


def index_plan(queries: int, fallback_queries: int = 0, exact: bool = False) -> dict[str, Any]:
    """Plan of a row served by one bare index (no planner): exact when it is exact by nature or when it
    answered every query by its exact fallback."""
    path = "exact" if exact or (queries > 0 and fallback_queries >= queries) else "index"
    return {"path": path, "segments": {path: 1}, "fallback_queries": fallback_queries, "queries": queries}


def merge(plans: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Plans of several calls of one row (one query per call) as one: the path all of them took (else
    ``mixed``), the segment counts of the most common call, fallbacks and queries summed."""
    plans = list(plans)
    if not plans:
        return {"path": "skip", "segments": {}, "fallback_queries": 0, "queries": 0}
    paths = {p["path"] for p in plans}
    layouts = Counter(tuple(sorted(p.get("segments", {}).items())) for p in plans)
    return {"path": paths.pop() if len(paths) == 1 else "mixed", "segments": dict(layouts.most_common(1)[0][0]),
            "fallback_queries": sum(p["fallback_queries"] for p in plans), "queries": sum(p["queries"] for p in plans)}


def index_comparable(record: Mapping[str, Any]) -> bool:
    """False for a row of an approximate algorithm that an exact scan served."""
    plan = record.get("plan")
    if plan is None:
        raise KeyError(f"result row of {record.get('algorithm')!r} carries no plan")
    return bool(record.get("exact_algorithm")) or plan["path"] != "exact"


def describe(plan: Mapping[str, Any]) -> str:
    """Short text for a table cell: ``index``, ``exact``, ``filtered-index ×3``, ``exact 2/index 5``."""
    segs = {p: n for p, n in plan.get("segments", {}).items() if p != "skip"}
    text = plan["path"]
    if plan["path"] == "mixed":
        text = "/".join(f"{p} {n}" for p, n in sorted(segs.items()))
    elif sum(segs.values()) > 1:
        text += f" ×{sum(segs.values())}"
    fb, nq = plan.get("fallback_queries", 0), plan.get("queries", 0)
    if fb and plan["path"] != "exact":
        text += f" ({fb}/{nq} fell back)"
    return text
