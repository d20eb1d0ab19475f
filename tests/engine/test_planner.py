"""The planner at collection level: each index family's real search path runs (explain says so),
returns what brute force returns (exact families) or clears a recall floor (approximate ones),
never returns a deleted row, and every threshold sits exactly where the config says.

Sizes are small on purpose (these tests guard engine/planner.py, segment.py and shard.py in
``make mutation``): the planner is told to use the index with ``THROUGH_INDEX``.
"""
from __future__ import annotations

import numpy as np
import pytest

import shoal
from shoal.engine.planner import PlannerConfig, plan_segment
from tests.conftest import assert_knn_equal, brute_force

DIM = 8
N = 1200
#: Past the row threshold and with the index's cost weighed out, every indexed segment is searched
#: through its index (unfiltered) or the index with the filter's mask (filtered).
THROUGH_INDEX = {"exact_max_rows": 0, "index_cost_factor": 0.0}
#: family -> (recall floor unfiltered, recall floor filtered); exact families must equal brute force.
FAMILIES = {"HNSW8": 0.9, "IVF4,Flat": 0.6, "IVF4,SQ8": 0.5, "IVF4,PQ4": 0.3, "PQ4": 0.3, "SQ8": 0.8,
            "OPQ4,PQ4": 0.3, "KDTree": None}
#: PQ codebooks (256 centroids per sub-space) train on at least 4096 rows.
ROWS = {"PQ4": 4200, "IVF4,PQ4": 4200, "OPQ4,PQ4": 4200}
PARAMS = {"HNSW8": {"ef_search": 64}, "IVF4,Flat": {"nprobe": 4}, "IVF4,SQ8": {"nprobe": 4},
          "IVF4,PQ4": {"nprobe": 4}}


def recall(found: list[list], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / truth.shape[1] for f, t in zip(found, truth)]))


def indexed_collection(spec: str, rng: np.random.Generator, planner: dict | None = None, n: int = N):
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    col = shoal.Database().create_collection("p", DIM, "l2", spec, planner=planner or THROUGH_INDEX,
                                             optimizer={"background": False})
    col.upsert(list(range(n)), x, [{"g": i % 4, "r": i % 100} for i in range(n)])
    col.optimize()  # seal the growing segment: the optimizer builds the index
    assert col.describe()["indexed_rows"] == n, col.describe()
    return col, x


@pytest.mark.parametrize("spec", sorted(FAMILIES))
def test_each_family_searches_through_its_index(spec: str, rng: np.random.Generator) -> None:
    n = ROWS.get(spec, N)
    col, x = indexed_collection(spec, rng, n=n)
    q = rng.standard_normal((12, DIM)).astype(np.float32)
    params = PARAMS.get(spec)
    res = col.search(q, k=10, params=params, explain=True)
    assert [p["path"] for p in res[0].plan] == ["index"], res[0].plan
    assert res[0].plan[0]["params"] == (params or {})
    ref_d, ref_i = brute_force(q, x, 10, "l2")
    found = [r.ids for r in res]
    if FAMILIES[spec] is None:  # an exact index: equal to brute force
        assert_knn_equal(np.array([r.distances for r in res]), np.array(found), ref_d, ref_i, atol=1e-3)
    else:
        assert recall(found, ref_i) >= FAMILIES[spec], recall(found, ref_i)
    # filtered: the mask goes into the index, and only matching rows come back
    flt = {"g": 1}
    res = col.search(q, k=10, filter=flt, params=params, explain=True)
    assert [p["path"] for p in res[0].plan] == ["filtered-index"] and res[0].plan[0]["matched"] == n // 4
    rows = np.flatnonzero(np.arange(n) % 4 == 1)
    ref_d, ref_i = brute_force(q, x[rows], 10, "l2", labels=rows)
    found = [r.ids for r in res]
    assert all(m["g"] == 1 for r in res for m in r.metadata) and all(len(f) == 10 for f in found)
    if FAMILIES[spec] is None:
        assert_knn_equal(np.array([r.distances for r in res]), np.array(found), ref_d, ref_i, atol=1e-3)
    else:
        assert recall(found, ref_i) >= FAMILIES[spec]


@pytest.mark.parametrize("spec", ["HNSW8", "IVF4,Flat", "KDTree", "SQ8"])
def test_deleted_rows_never_come_back_through_the_index(spec: str, rng: np.random.Generator) -> None:
    """A delete on an indexed segment reaches its index (the unfiltered index path has no mask)."""
    col, x = indexed_collection(spec, rng)
    gone = list(range(0, N, 3))
    col.delete(ids=gone)
    col.upsert([1], x[1] + 50.0)  # a re-upsert: the old row is a tombstone in the indexed segment
    res = col.search(x[gone[:20]], k=5, params=PARAMS.get(spec), explain=True)
    assert res[0].plan[0]["path"] == "index" and res[0].plan[0]["live"] == N - len(gone) - 1
    dead = set(gone)
    for r in res:
        assert len(r.ids) == 5 and None not in r.ids and not dead & set(r.ids)
    assert 1 not in col.search(x[1], k=5, params=PARAMS.get(spec)).ids  # the superseded copy
    assert col.search(x[1] + 50.0, k=1).ids == [1]  # the new one, in the growing segment
    filtered = col.search(x[gone[:20]], k=5, filter={"g": {"$in": [0, 1, 2, 3]}}, params=PARAMS.get(spec))
    assert not dead & {i for r in filtered for i in r.ids}


def test_thresholds_are_where_the_config_says(rng: np.random.Generator) -> None:
    col, x = indexed_collection("HNSW8", rng, {"exact_max_rows": 300, "exact_max_fraction": 0.5,
                                               "index_cost_factor": 0.0})
    seg = col._shard.segments[0]
    node_of = shoal.engine.filters.compile_filter

    def path(flt: dict | None, k: int = 5) -> str:
        key = None if flt is None else repr(flt)
        return plan_segment(seg, k, None if flt is None else node_of(flt), key, {}, col._shard.planner).path

    assert path({"r": {"$lt": 25}}) == "exact"  # 300 matching rows: <= exact_max_rows
    assert path({"r": {"$lt": 26}}) == "exact"  # 312 rows: 26% <= exact_max_fraction (50%)
    assert path({"r": {"$lt": 50}}) == "exact"  # 600 rows: exactly 50%
    assert path({"r": {"$lt": 51}}) == "filtered-index"  # 612 rows: past both thresholds
    assert path({"r": {"$lt": 25}}, k=400) == "exact"  # k above the matching rows: never the index
    assert path({"r": 1000}) == "skip"
    assert path(None) == "index"  # no filter: the fraction threshold does not apply
    col.delete(filter={"r": {"$gte": 25}})  # 300 live rows left, unfiltered
    assert path(None) == "exact"


def test_cost_factor_decides_between_scan_and_index(rng: np.random.Generator) -> None:
    col, _ = indexed_collection("IVF4,Flat", rng, {"exact_max_rows": 0, "index_cost_factor": 1.0})
    seg = col._shard.segments[0]
    cost = seg.index.search_cost(N, N, 10, {"nprobe": 1})
    assert 0 < cost < N  # one list of four: cheaper than the scan
    assert col.explain(np.zeros(DIM), params={"nprobe": 1})[0]["path"] == "index"
    assert col.explain(np.zeros(DIM), params={"nprobe": 4})[0]["path"] == "exact"  # all lists cost a scan
    plan = col.explain(np.zeros(DIM), params={"nprobe": 4})[0]
    assert "cheaper than the index" in plan["reason"]


def test_growing_and_unindexed_segments_are_scanned(rng: np.random.Generator) -> None:
    x = rng.standard_normal((300, DIM)).astype(np.float32)
    col = shoal.Database().create_collection("g", DIM, "l2", "IVF4,Flat", planner=THROUGH_INDEX,
                                             optimizer={"background": False})
    col.upsert(list(range(300)), x)
    (plan,) = col.explain(x[0])
    assert plan["path"] == "exact" and "growing" in plan["reason"]
    col.flush()  # sealed, not yet indexed by the optimizer
    plans = col.explain(x[0])
    assert plans[0]["path"] == "exact" and plans[0]["reason"] == "segment not indexed"
    assert col.search(x[7], k=1).ids == [7]


def test_fallback_queries_reach_explain(rng: np.random.Generator) -> None:
    """An HNSW walk through a filter that meets fewer than k allowed rows is answered exactly, and says so."""
    col, x = indexed_collection("HNSW8", rng)
    col.delete(filter={"r": {"$gte": 2}})  # 24 live rows scattered over a 1200-node graph
    res = col.search(x[:4], k=20, filter={"g": {"$in": [0, 1]}}, params={"ef_search": 20}, explain=True)
    (plan,) = res[0].plan
    assert plan["path"] == "filtered-index" and plan["matched"] == 24
    live = {i for i in range(N) if i % 100 < 2}
    assert all(len(r.ids) == 20 and set(r.ids) <= live for r in res)
    assert 0 < plan["fallback_queries"] <= 4  # (3 of the 4 walks, with this seed)


@pytest.mark.parametrize("options, match", [
    ({"exact_max_rows": True}, "exact_max_rows"), ({"exact_max_rows": 1.5}, "exact_max_rows"),
    ({"exact_max_fraction": 1.01}, "exact_max_fraction"), ({"exact_max_fraction": -0.1}, "exact_max_fraction"),
    ({"exact_max_fraction": False}, "exact_max_fraction"), ({"index_cost_factor": float("inf")}, "index_cost_factor"),
    ({"index_cost_factor": -1}, "index_cost_factor"), ({"index_cost_factor": True}, "index_cost_factor"),
    ({"exact_rows": 3}, "unknown planner option"),
])
def test_planner_options_are_checked(options: dict, match: str) -> None:
    with pytest.raises(shoal.InvalidArgumentError, match=match):
        PlannerConfig.from_options(options)


def test_planner_options_round_trip() -> None:
    cfg = PlannerConfig.from_options({"exact_max_rows": 0, "exact_max_fraction": 1, "index_cost_factor": 0})
    assert cfg.to_dict() == {"exact_max_rows": 0, "exact_max_fraction": 1.0, "index_cost_factor": 0.0}
    assert PlannerConfig.from_options(None) == PlannerConfig()
    assert PlannerConfig.from_options({"exact_max_rows": np.int64(7)}).exact_max_rows == 7


def test_segments_of_one_query_are_searched_side_by_side(rng: np.random.Generator, monkeypatch) -> None:
    """A one-query search over several indexed segments runs them on the segment pool and returns
    what the serial path returns; an error in a pooled segment reaches the caller."""
    from concurrent.futures import ThreadPoolExecutor

    from shoal.engine import planner, threads

    x = rng.standard_normal((1200, DIM)).astype(np.float32)
    col = shoal.Database().create_collection("p", DIM, "l2", "KDTree", planner=THROUGH_INDEX,
                                             optimizer={"background": False, "max_segment_rows": 400})
    for s in range(0, 1200, 400):
        col.upsert(list(range(s, s + 400)), x[s:s + 400])
        col.flush()
    col.optimize()
    q = rng.standard_normal((64, DIM)).astype(np.float32)
    batch = col.search(q, k=10)  # a batch: the kernels' own threads (and Numba's layer starts)
    if not threads.concurrent_kernels_safe():
        pytest.skip("Numba runs its workqueue threading layer here, which forbids concurrent kernels")
    pool = ThreadPoolExecutor(max_workers=2)
    submitted = []
    monkeypatch.setattr(planner, "segment_pool", lambda: pool)
    monkeypatch.setattr(pool, "submit", lambda *a: submitted.append(a) or ThreadPoolExecutor.submit(pool, *a))
    plans = col.explain(q[0], k=10)
    assert [p["path"] for p in plans] == ["index"] * 3, plans
    submitted.clear()
    one = [col.search(v, k=10) for v in q]
    assert len(submitted) == 2 * len(q)  # two of the three segments per query went to the pool
    ref_d, ref_i = brute_force(q, x, 10, "l2")
    assert_knn_equal(np.array([r.distances for r in one]), np.array([r.ids for r in one]), ref_d, ref_i, atol=1e-3)
    assert [r.ids for r in one] == [r.ids for r in batch]

    def broken(seg, q, k, p):
        raise shoal.ShoalError("segment failed")
    monkeypatch.setattr(planner, "run_plan", broken)
    with pytest.raises(shoal.ShoalError, match="segment failed"):
        col.search(q[0], k=10)
    pool.shutdown()
