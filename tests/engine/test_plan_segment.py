"""``plan_segment`` / ``run_plan`` on a stand-in segment whose match count and index cost are set
exactly, so every threshold is tested at its boundary and one past it (fast; these guard
engine/planner.py in ``make mutation``; tests/engine/test_planner.py runs the same rules on real
collections)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shoal.engine.filters import compile_filter
from shoal.engine.planner import PlannerConfig, SegmentPlan, plan_segment, run_plan

NODE = compile_filter({"g": 1})


class StubIndex:
    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.asked: list[tuple[Any, ...]] = []

    def search_cost(self, live: int, matched: int, k: int, params: dict[str, Any]) -> float:
        self.asked.append((live, matched, k, params))
        return self.cost


class StubSegment:
    """What the planner reads of a segment: 1,000 rows, 800 live, ``matched`` of them pass the filter."""

    slot, n, live_count = 3, 1000, 800

    def __init__(self, matched: int, cost: float = 0.0, indexed: bool = True, sealed: bool = True) -> None:
        self.matched = matched
        self.index = StubIndex(cost) if indexed else None
        self.indexed, self.sealed = indexed, sealed
        self.mask = np.zeros(self.n, bool)
        self.mask[:matched] = True
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def match(self, node: Any, key: str | None) -> tuple[np.ndarray | None, int]:
        return (None if node is None else self.mask), self.matched

    def filter_source(self, key: str | None) -> str:
        return "scan"

    def search_exact(self, *args: Any) -> tuple[str, ...]:
        self.calls.append(("exact", args))
        return ("exact-result",)

    def search_index(self, q: Any, k: int, mask: Any, params: dict[str, Any], report: dict[str, Any]) -> tuple[str, ...]:
        self.calls.append(("index", (q, k, mask, params)))
        report["fallback_queries"] = 2
        return ("index-result",)


def plan(seg: StubSegment, k: int = 10, node: Any = NODE, params: dict | None = None, **config: Any) -> SegmentPlan:
    return plan_segment(seg, k, node, None if node is None else "key", params or {}, PlannerConfig(**config))


def test_skip_and_unindexed_segments() -> None:
    p = plan(StubSegment(0))
    assert (p.path, p.reason, p.mask, p.matched, p.params) == ("skip", "no live row matches", None, 0, {})
    assert (p.segment, p.rows, p.live) == (3, 1000, 800)
    assert plan(StubSegment(1), exact_max_rows=0).path == "exact"  # one matching row is not a skip
    growing = plan(StubSegment(500, indexed=False, sealed=False), exact_max_rows=0)
    assert (growing.path, growing.reason) == ("exact", "segment not indexed (growing)")
    sealed = plan(StubSegment(500, indexed=False), exact_max_rows=0)
    assert (sealed.path, sealed.reason) == ("exact", "segment not indexed")
    assert sealed.filter_key == "key" and sealed.mask is not None and sealed.matched == 500


def test_exact_max_rows_and_k_at_the_boundary() -> None:
    at = plan(StubSegment(300), exact_max_rows=300, index_cost_factor=0)
    assert at.path == "exact" and at.reason == "300 matching rows <= exact_max_rows (300)"
    assert plan(StubSegment(301), exact_max_rows=300, index_cost_factor=0).path == "filtered-index"
    assert plan(StubSegment(40), k=40, exact_max_rows=0, index_cost_factor=0).path == "exact"  # k covers them all
    assert plan(StubSegment(41), k=40, exact_max_rows=0, index_cost_factor=0).path == "filtered-index"
    assert "exact_max_rows (1000)" in plan(StubSegment(1000)).reason  # the default
    assert plan(StubSegment(1001), index_cost_factor=0).path == "filtered-index"


def test_exact_max_fraction_at_the_boundary_and_only_with_a_filter() -> None:
    cfg = {"exact_max_rows": 0, "exact_max_fraction": 0.25, "index_cost_factor": 0}
    at = plan(StubSegment(200), **cfg)  # 200 of 800 live rows: exactly 25 %
    assert at.path == "exact" and at.reason == "filter keeps 25.00% <= exact_max_fraction (25.00%)"
    past = plan(StubSegment(201), **cfg)
    assert past.path == "filtered-index" and past.reason.startswith("filter keeps 25.1")
    assert past.mask is not None and past.mask.sum() == 201
    unfiltered = plan(StubSegment(200), node=None, **cfg)  # no filter: the fraction does not apply
    assert (unfiltered.path, unfiltered.reason, unfiltered.mask) == ("index", "indexed segment", None)
    assert PlannerConfig().exact_max_fraction == 0.0
    assert plan(StubSegment(1001)).path == "filtered-index"  # default 0: no fraction is small enough


def test_the_index_cost_against_the_scan_at_the_boundary() -> None:
    seg = StubSegment(600, cost=300.0)
    p = plan(seg, k=7, params={"ef_search": 5}, exact_max_rows=0, index_cost_factor=2.0)  # 2 x 300 = 600 rows
    assert p.path == "exact" and p.reason == "scanning 600 rows is cheaper than the index (~600 row-equivalents)"
    assert seg.index.asked == [(800, 600, 7, {"ef_search": 5})]  # live rows, matched, k, params
    past = plan(StubSegment(601, cost=300.0), params={"ef_search": 5}, exact_max_rows=0, index_cost_factor=2.0)
    assert past.path == "filtered-index" and past.params == {"ef_search": 5}
    assert plan(StubSegment(601, cost=300.0), exact_max_rows=0, index_cost_factor=3.0).path == "exact"
    assert plan(StubSegment(601, cost=1e9), exact_max_rows=0, index_cost_factor=0.0).path == "filtered-index"
    assert PlannerConfig().index_cost_factor == 1.0
    assert plan(StubSegment(1001, cost=1001.0)).path == "exact"  # the default weighs the cost once
    assert plan(StubSegment(1002, cost=1001.0)).path == "filtered-index"


def test_run_plan_calls_the_path_it_names() -> None:
    seg = StubSegment(600)
    q = np.zeros((2, 4), np.float32)
    exact = plan(seg, exact_max_rows=1000)
    assert run_plan(seg, q, 5, exact) == ("exact-result",)
    assert seg.calls[-1] == ("exact", (q, 5, exact.mask, 600, "key")) and exact.fallback_queries == 0
    index = plan(seg, node=None, params={"nprobe": 2}, exact_max_rows=0, index_cost_factor=0)
    assert run_plan(seg, q, 5, index) == ("index-result",)
    assert seg.calls[-1] == ("index", (q, 5, None, {"nprobe": 2})) and index.fallback_queries == 2
    assert index.describe() == {"segment": 3, "rows": 1000, "live": 800, "matched": 600, "path": "index",
                                "reason": "indexed segment", "params": {"nprobe": 2}, "fallback_queries": 2,
                                "filter_source": "none"}


def test_an_index_that_reports_nothing_has_no_fallback() -> None:
    seg = StubSegment(600)
    seg.search_index = lambda q, k, mask, params, report: ("index-result",)  # type: ignore[method-assign]
    p = plan(seg, node=None, exact_max_rows=0, index_cost_factor=0)
    run_plan(seg, np.zeros((1, 4), np.float32), 5, p)
    assert p.fallback_queries == 0


@pytest.mark.parametrize("rows", [0, 5, np.int32(3)])
def test_config_accepts_integer_rows(rows: Any) -> None:
    assert PlannerConfig.from_options({"exact_max_rows": rows}).exact_max_rows == int(rows)
    assert PlannerConfig.from_options({"exact_max_fraction": 0}).exact_max_fraction == 0.0
    assert PlannerConfig.from_options({"index_cost_factor": 0}).index_cost_factor == 0.0


@pytest.mark.parametrize("options", [{"exact_max_rows": -1}, {"exact_max_rows": "3"}, {"exact_max_fraction": "0.5"},
                                     {"index_cost_factor": float("nan")}, {"index_cost_factor": "1"}])
def test_config_rejects(options: dict) -> None:
    from shoal.engine.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match=next(iter(options))):
        PlannerConfig.from_options(options)


def test_the_config_is_an_immutable_value() -> None:
    """One config is shared by a collection's shards and its explain output: nobody may change it."""
    import dataclasses

    cfg = PlannerConfig.from_options({"exact_max_rows": 5})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.exact_max_rows = 6  # type: ignore[misc]
    assert cfg == PlannerConfig(5) and hash(cfg) == hash(PlannerConfig(5))


# ------------------------------------------------------------------ run_plans: segments side by side

def _plans(*specs: tuple[str, int]) -> list[SegmentPlan]:
    return [SegmentPlan(segment=s, rows=50_000, live=50_000, matched=matched, path=path, reason="", mask=None,
                        params={}) for s, (path, matched) in enumerate(specs)]


@pytest.fixture()
def on_threads(monkeypatch: pytest.MonkeyPatch):
    """run_plans with a segment pool: returns ``run(plans, nq, pool=True, safe=True)`` -> the thread
    that ran each segment's plan (each plan's result carries its segment and thread)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from shoal.engine import planner

    pool = ThreadPoolExecutor(2, thread_name_prefix="seg-pool")
    main = threading.current_thread().name

    def fake_run_plan(seg: Any, q: np.ndarray, k: int, p: SegmentPlan):
        return p.segment, threading.current_thread().name

    def run(plans: list[SegmentPlan], nq: int, with_pool: bool = True, safe: bool = True) -> dict[int, str]:
        monkeypatch.setattr(planner, "run_plan", fake_run_plan)
        monkeypatch.setattr(planner, "segment_pool", lambda: pool if with_pool else None)
        monkeypatch.setattr(planner, "concurrent_kernels_safe", lambda: safe)
        out = planner.run_plans({p.segment: object() for p in plans}, np.zeros((nq, 4), np.float32), 5, plans)
        ran = dict(out)
        assert len(out) == len(ran) == sum(p.path != "skip" for p in plans)  # each plan once, skipped ones never
        return {s: ("caller" if name == main else "pool") for s, name in ran.items()}

    yield run
    pool.shutdown()


def test_heavy_plans_of_a_small_batch_run_side_by_side(on_threads) -> None:
    from shoal.engine.planner import PARALLEL_EXACT_ROWS
    from shoal.engine.threads import SERIAL_BATCH

    plans = _plans(("index", 10), ("exact", PARALLEL_EXACT_ROWS), ("exact", PARALLEL_EXACT_ROWS - 1),
                   ("skip", 0), ("index", 10))
    # the first heavy plan and the light one on the caller, the other heavy ones (an exact scan of
    # PARALLEL_EXACT_ROWS rows is heavy) on the pool
    want = {0: "caller", 1: "pool", 2: "caller", 4: "pool"}
    assert on_threads(plans, 1) == want
    assert on_threads(plans, SERIAL_BATCH - 1) == want
    everything_here = {0: "caller", 1: "caller", 2: "caller", 4: "caller"}
    assert on_threads(plans, SERIAL_BATCH) == everything_here  # a batch parallelises inside its kernels
    assert on_threads(plans, 1, with_pool=False) == everything_here  # SHOAL_SEGMENT_THREADS off
    assert on_threads(plans, 1, safe=False) == everything_here  # Numba's workqueue layer: never concurrently
    two = _plans(("index", 10), ("exact", PARALLEL_EXACT_ROWS), ("exact", 5))
    assert on_threads(two, 1) == {0: "caller", 1: "pool", 2: "caller"}
    one_heavy = _plans(("index", 10), ("exact", PARALLEL_EXACT_ROWS - 1), ("exact", 5))
    assert on_threads(one_heavy, 1) == {0: "caller", 1: "caller", 2: "caller"}  # nothing to run beside it
