"""The planner: the one place that chooses how each segment answers a search.

Per segment, from the filter's cardinality (cached per filter, see
``Segment.match``), the index's cost estimate and the collection's thresholds:

* ``skip``            no live row matches;
* ``exact``           the segment has no built index (the growing tail, a segment
                      the optimizer has not indexed yet); or at most ``exact_max_rows``
                      rows match; or a filter keeps at most ``exact_max_fraction`` of the
                      live rows; or scanning the matching rows is cheaper than the index
                      by its own estimate (``Index.search_cost``, in exact-scan rows, times
                      ``index_cost_factor``). A graph walk through a filter costs more as
                      the filter gets tighter, while the scan costs less;
* ``index``           the segment's index, unfiltered (it knows its own deletions);
* ``filtered-index``  the index with the filter's mask pushed into it.

``run_plans`` executes them: for a small batch (whose kernels run on one thread) the
segments that walk an index or scan many rows run side by side on the segment pool.

Indices do what they are asked. A fallback an index still takes for correctness
(a walk that met fewer than k allowed rows) is reported as ``fallback_queries``.
Thresholds live in the collection's config (``planner={...}`` at create time).
"""
from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import wait
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import InvalidArgumentError
from .filters import Node
from .segment import Segment
from .threads import SERIAL_BATCH, concurrent_kernels_safe, segment_pool


@dataclass(frozen=True)
class PlannerConfig:
    """Thresholds of the planner (documented above); per collection."""

    #: A segment with at most this many matching rows is scanned exactly.
    exact_max_rows: int = 1000
    #: A filter keeping at most this fraction of a segment's live rows is scanned exactly.
    exact_max_fraction: float = 0.0
    #: Weight of the index's cost estimate against the scan's (0: always use the index past the
    #: thresholds above; larger: prefer exact scans).
    index_cost_factor: float = 1.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> "PlannerConfig":
        options = dict(options or {})
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidArgumentError(f"unknown planner option(s) {sorted(unknown)}; "
                                       f"known: {sorted(cls.__dataclass_fields__)}")
        rows = options.get("exact_max_rows", cls.exact_max_rows)
        if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 0:
            raise InvalidArgumentError(f"planner option exact_max_rows must be an integer >= 0, got {rows!r}")
        frac = options.get("exact_max_fraction", cls.exact_max_fraction)
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac <= 1:
            raise InvalidArgumentError(f"planner option exact_max_fraction must be a number in [0, 1], got {frac!r}")
        factor = options.get("index_cost_factor", cls.index_cost_factor)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 <= factor < float("inf"):
            raise InvalidArgumentError(f"planner option index_cost_factor must be a finite number >= 0, got {factor!r}")
        return cls(int(rows), float(frac), float(factor))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SegmentPlan:
    """How one segment answers one search call (``explain`` returns these as dicts)."""

    segment: int
    rows: int
    live: int
    matched: int
    path: str
    reason: str
    mask: np.ndarray | None
    params: dict[str, Any]
    filter_key: str | None = None
    fallback_queries: int = 0
    #: How ``matched`` was counted: "payload index" (``engine.payload_index``), "scan" or "none" (no filter).
    filter_source: str = "none"

    def describe(self) -> dict[str, Any]:
        return {"segment": self.segment, "rows": self.rows, "live": self.live, "matched": self.matched,
                "path": self.path, "reason": self.reason, "params": dict(self.params),
                "fallback_queries": self.fallback_queries, "filter_source": self.filter_source}


def plan_segment(seg: Segment, k: int, node: Node | None, filter_key: str | None, params: dict[str, Any],
                 config: PlannerConfig) -> SegmentPlan:
    """Choose the path of one segment (see the module docstring). The filter's cardinality comes
    from the segment's payload indexes where they cover it (no scan of the payload columns)."""
    plan = _choose_path(seg, k, node, filter_key, params, config)
    if node is not None:
        plan.filter_source = seg.filter_source(filter_key)
    return plan


def _choose_path(seg: Segment, k: int, node: Node | None, filter_key: str | None, params: dict[str, Any],
                 config: PlannerConfig) -> SegmentPlan:
    mask, matched = seg.match(node, filter_key)

    def exact(reason: str) -> SegmentPlan:
        return SegmentPlan(seg.slot, seg.n, seg.live_count, matched, "exact", reason, mask, {}, filter_key)

    if matched == 0:
        return SegmentPlan(seg.slot, seg.n, seg.live_count, 0, "skip", "no live row matches", None, {})
    if not seg.indexed:
        return exact("segment not indexed" + ("" if seg.sealed else " (growing)"))
    if matched <= max(k, config.exact_max_rows):
        return exact(f"{matched} matching rows <= exact_max_rows ({config.exact_max_rows})")
    if node is not None and matched <= config.exact_max_fraction * seg.live_count:
        return exact(f"filter keeps {matched / seg.live_count:.2%} <= exact_max_fraction "
                     f"({config.exact_max_fraction:.2%})")
    assert seg.index is not None
    cost = config.index_cost_factor * seg.index.search_cost(seg.live_count, matched, k, params)
    if matched <= cost:
        return exact(f"scanning {matched} rows is cheaper than the index (~{cost:,.0f} row-equivalents)")
    if node is None:  # the index skips its own deleted rows: no mask
        return SegmentPlan(seg.slot, seg.n, seg.live_count, matched, "index", "indexed segment", None, params)
    return SegmentPlan(seg.slot, seg.n, seg.live_count, matched, "filtered-index",
                       f"filter keeps {matched / seg.live_count:.2%}", mask, params)


def run_plan(seg: Segment, q: np.ndarray, k: int, p: SegmentPlan) -> tuple[np.ndarray, np.ndarray]:
    """Execute a segment's plan: ``(distances, internal ids)``."""
    if p.path == "exact":
        return seg.search_exact(q, k, p.mask, p.matched, p.filter_key)
    report: dict[str, Any] = {}
    out = seg.search_index(q, k, p.mask, p.params, report)
    p.fallback_queries = int(report.get("fallback_queries", 0))
    return out


#: An exact plan over at least this many rows is worth a thread of its own (~0.1 ms of scan).
PARALLEL_EXACT_ROWS = 20_000


def run_plans(segments: Mapping[int, Segment], q: np.ndarray, k: int,
              plans: list[SegmentPlan]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Execute every non-skipped plan; the heavy ones of a small batch concurrently.

    Larger batches parallelise inside their kernels (over queries), so they run here in turn.
    """
    work = [p for p in plans if p.path != "skip"]
    pool = segment_pool()
    heavy = [p for p in work if p.path != "exact" or p.matched >= PARALLEL_EXACT_ROWS]
    if pool is None or len(heavy) < 2 or q.shape[0] >= SERIAL_BATCH or not concurrent_kernels_safe():
        return [run_plan(segments[p.segment], q, k, p) for p in work]
    futures = [pool.submit(run_plan, segments[p.segment], q, k, p) for p in heavy[1:]]
    light = [p for p in work if all(p is not h for h in heavy)]
    try:
        out = [run_plan(segments[p.segment], q, k, p) for p in [heavy[0], *light]]
    finally:  # the caller's read lock covers the segments only until it returns
        wait(futures)
    return out + [f.result() for f in futures]
