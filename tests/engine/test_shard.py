"""The shard layer: merge policy, optimizer equivalence and concurrency, planner paths and explain."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import shoal
from shoal.engine.optimizer import OptimizerConfig, choose_merge
from shoal.engine.segment import Segment

from tests.conftest import brute_force

DIM = 8


def _sealed(slot: int, n: int, dead: int = 0, indexed: bool = False) -> Segment:
    seg = Segment(slot, DIM, None)  # type: ignore[arg-type]
    seg.n, seg.live_count, seg.sealed = n, n - dead, True
    seg.index = type("Built", (), {"is_trained": True})() if indexed else None
    return seg


def test_policy_merges_small_segments_into_the_largest_indexed_one() -> None:
    cfg = OptimizerConfig(max_segment_rows=1000)
    big = _sealed(0, 400, indexed=True)
    small = [_sealed(i, 100) for i in range(1, 5)]
    merge = choose_merge([big, *small], cfg, indexes=True, min_index_rows=1)
    assert merge is not None and merge.base is big and merge.sources == small  # big's graph is reused
    big = _sealed(9, 600, indexed=True)
    assert choose_merge([big], cfg, True, 1) is None  # indexed and alone: nothing to do
    assert choose_merge([big, _sealed(10, 500, indexed=True)], cfg, True, 1) is None  # 1100 rows: over the cap
    both = choose_merge([big, _sealed(11, 300, indexed=True)], cfg, True, 1)
    assert both is not None and both.base is big and both.rows == 900  # they fit: one segment
    rest = choose_merge([_sealed(12, 900, indexed=True), _sealed(13, 200)], cfg, True, 1)
    assert rest is not None and rest.base is None and rest.rows == 200  # no room: indexed on its own
    # a smaller indexed segment takes the fresh merge's room: the unindexed one still gets its index
    crowded = [_sealed(20, 700, indexed=True), _sealed(21, 500, indexed=True), _sealed(22, 700)]
    alone = choose_merge(crowded, cfg, True, 1)
    assert alone is not None and alone.base is None and alone.sources == [crowded[2]], alone
    capped = choose_merge([_sealed(i, 300) for i in range(5)], cfg, True, 1)
    assert capped is not None and capped.base is None and capped.rows <= 1000  # the cap holds
    assert choose_merge([_sealed(0, 50)], cfg, True, min_index_rows=100) is None  # too few rows to train
    vac = choose_merge([_sealed(0, 900, dead=300, indexed=True)], cfg, True, 1)
    assert vac is not None and vac.base is None and len(vac.sources) == 1  # vacuum: rebuilt from live rows
    flat = choose_merge([_sealed(0, 100), _sealed(1, 100)], cfg, indexes=False, min_index_rows=1)
    assert flat is not None and flat.base is not None  # Flat: merging only cuts the segment count


@pytest.mark.parametrize("spec", ["Flat", "HNSW8", "IVF4,Flat", "KDTree"])
def test_optimize_keeps_results(spec: str, rng: np.random.Generator) -> None:
    x = rng.standard_normal((3000, DIM)).astype(np.float32)
    col = shoal.Database().create_collection("c", DIM, "l2", spec, planner={"exact_max_rows": 0},
                                             optimizer={"background": False})
    col._shard.flush_rows = 400
    for s in range(0, 3000, 250):
        col.upsert(list(range(s, s + 250)), x[s:s + 250], [{"g": i % 4} for i in range(s, s + 250)])
    col.delete(ids=list(range(0, 3000, 7)))
    keep = np.setdiff1d(np.arange(3000), np.arange(0, 3000, 7))
    q = rng.standard_normal((20, DIM)).astype(np.float32)
    before = [r.ids for r in col.search(q, k=10)]
    assert len(col._shard.segments) > 3
    col.optimize()
    assert len(col._shard.segments) == 2  # one merged segment + the empty growing one
    assert col.describe()["unindexed_rows"] == (len(keep) if spec == "Flat" else 0)  # Flat has no index to build
    after = [r.ids for r in col.search(q, k=10, params={"nprobe": 4} if spec.startswith("IVF") else None)]
    _, truth = brute_force(q, x[keep], 10, "l2", keep)
    if spec in ("Flat", "KDTree"):
        assert after == before == truth.tolist()
    else:
        assert np.mean([len(set(a) & set(t)) / 10 for a, t in zip(after, truth.tolist())]) >= 0.9


def test_merged_index_holds_exactly_its_rows(rng: np.random.Generator) -> None:
    """A merge reserves the index's rows up front: growth by doubling would leave up to twice the
    memory (a base segment's exact-size copy doubled for its first appended chunk)."""
    col = shoal.Database().create_collection("r", DIM, "l2", "HNSW8", optimizer={"background": False})
    col._shard.flush_rows = 400
    x = rng.standard_normal((3000, DIM)).astype(np.float32)
    for stop in (2000, 3000):  # a fresh merged segment, then small ones appended to it as the base
        for s in range(stop - 1000 if stop > 2000 else 0, stop, 250):
            col.upsert(list(range(s, s + 250)), x[s:s + 250])
        col.optimize()
        (seg,) = [s for s in col._shard.segments if s.sealed]
        assert seg.n == stop and seg.index._x.shape[0] == seg.n and seg.index._g0.shape[0] == seg.n


class OptimizerMachine(RuleBasedStateMachine):
    """Writes, deletes, merges (with writes landing mid-merge) and searches against a dict model."""

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[int, np.ndarray] = {}

    @initialize(spec=st.sampled_from(["Flat", "HNSW8"]))
    def create(self, spec: str) -> None:
        self.col = shoal.Database().create_collection("m", DIM, "l2", spec, optimizer={"background": False,
                                                                                    "max_segment_rows": 64})
        self.col._shard.flush_rows = 16
        self.shard = self.col._shard

    def _vectors(self, ids: list[int], salt: int) -> np.ndarray:
        return np.stack([np.sin(np.arange(DIM) * (i + 1) * 0.3 + salt) for i in ids]).astype(np.float32)

    @rule(ids=st.lists(st.integers(0, 60), min_size=1, max_size=12, unique=True), salt=st.integers(0, 5))
    def upsert(self, ids: list[int], salt: int) -> None:
        x = self._vectors(ids, salt)
        self.col.upsert(ids, x)
        self.model.update(zip(ids, x))

    @rule(data=st.data())
    @precondition(lambda self: self.model)
    def delete(self, data) -> None:
        ids = data.draw(st.lists(st.sampled_from(sorted(self.model)), min_size=1, max_size=6, unique=True))
        assert self.col.delete(ids=ids) == len(ids)
        for i in ids:
            del self.model[i]

    @rule(ids=st.lists(st.integers(0, 60), min_size=1, max_size=8, unique=True), salt=st.integers(0, 5),
          dels=st.lists(st.integers(0, 60), max_size=6, unique=True))
    def merge_with_writes_meanwhile(self, ids: list[int], salt: int, dels: list[int]) -> None:
        """Upserts and deletes land between the merge's snapshot and its swap."""
        merge = self.shard.plan_merge()
        if merge is None:
            return
        real = self.shard._build_merged

        def build(*args):
            self.upsert(ids, salt)
            present = [i for i in dels if i in self.model]
            if present:
                self.col.delete(ids=present)
                for i in present:
                    del self.model[i]
            return real(*args)
        self.shard._build_merged = build
        try:
            assert self.shard.optimizer.run(merge)
        finally:
            del self.shard._build_merged

    @rule()
    def optimize(self) -> None:
        self.col.optimize()

    @invariant()
    def matches_model(self) -> None:
        if not hasattr(self, "col"):
            return
        assert len(self.col) == len(self.model)
        live = [e for s in self.shard.segments for e in s.ids.values(s.live_rows())]
        assert sorted(live) == sorted(self.model)  # no row resurrected, lost or stored twice
        if self.model:
            ids = sorted(self.model)
            np.testing.assert_array_equal(self.col.get(ids).vectors, np.stack([self.model[i] for i in ids]))
            hits = self.col.search(self.model[ids[0]], k=len(ids) + 3, params={"ef_search": 200}
                                   if self.col.index_spec != "Flat" else None)
            assert len(set(hits.ids)) == len(hits.ids) and set(hits.ids) <= set(ids)


TestOptimizerMachine = OptimizerMachine.TestCase
TestOptimizerMachine.settings = settings(max_examples=25, stateful_step_count=30, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])


def test_concurrent_searches_during_optimization_never_fail_or_repeat(rng: np.random.Generator) -> None:
    x = rng.standard_normal((6000, DIM)).astype(np.float32)
    col = shoal.Database().create_collection("c", DIM, "l2", "HNSW8", optimizer={"max_segment_rows": 4000})
    col._shard.flush_rows = 500
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            try:
                for r in col.search(x[:4], k=20, filter={"g": {"$lt": 3}}):
                    assert len(set(r.ids)) == len(r.ids)
            except BaseException as exc:  # noqa: BLE001  (collected and re-raised by the test)
                errors.append(exc)
                return

    threads = [threading.Thread(target=searcher) for _ in range(2)]
    for t in threads:
        t.start()
    for s in range(0, 6000, 300):
        col.upsert(list(range(s, s + 300)), x[s:s + 300], [{"g": i % 5} for i in range(s, s + 300)])
    col.optimize()
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    d = col.describe()
    assert d["unindexed_rows"] == 0 and d["optimizer"]["merges_done"] >= 2
    last = d["optimizer"]["last_merge"]
    assert set(last["seconds"]) == {"copy", "index", "write", "swap"} and "rows)" in last["merged"]
    assert [s["state"] for s in d["segment_list"]][-1] == "growing"


@pytest.mark.parametrize("spec", ["HNSW8", "IVF8,Flat", "IVF8,PQ4", "PQ4", "SQ8", "KDTree", "Flat"])
def test_planner_path_at_every_selectivity(spec: str, rng: np.random.Generator) -> None:
    n = 4000
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    col = shoal.Database().create_collection("p", DIM, "l2", spec, planner={"exact_max_rows": 100},
                                             optimizer={"background": False})
    col.upsert(list(range(n)), x, [{"r": i % 1000} for i in range(n)])
    assert [p["path"] for p in col.explain(x[0])] == ["exact"]  # growing segment: no index yet
    col.optimize()
    seg = col._shard.segments[0]
    costs = []
    for frac in (0.001, 0.01, 0.05, 0.1, 0.5, 1.0):
        flt = {"r": {"$lt": int(frac * 1000)}}
        (plan,) = col.explain(x[0], k=5, filter=flt)
        matched = int(frac * n)
        assert plan["matched"] == matched
        if not seg.indexed:  # Flat: every segment is a scan
            want = "exact"
        else:
            costs.append(seg.index.search_cost(n, matched, 5, {}))
            want = "exact" if matched <= 100 or matched <= costs[-1] else "filtered-index"
        assert plan["path"] == want, (frac, plan)
        res = col.search(x[0], k=5, filter=flt)
        assert len(res) == min(5, matched) and all(int(i) % 1000 < frac * 1000 for i in res.ids)
    # an index costs no less through a tighter filter; a scan costs less: exact wins at the tight end
    assert costs == sorted(costs, reverse=True)
    (plan,) = col.explain(x[0])
    assert plan["rows"] == n and plan["live"] == n and plan["path"] == (
        "index" if seg.indexed and n > seg.index.search_cost(n, n, 10, {}) else "exact")


def test_planner_cost_model_picks_the_index_at_scale(rng: np.random.Generator) -> None:
    """With the index's cost weighted down (a stand-in for a large segment) the graph serves loose
    filters and unfiltered queries, while tight filters stay exact."""
    n = 4000
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    col = shoal.Database().create_collection("s", DIM, "l2", "HNSW8", optimizer={"background": False},
                                             planner={"exact_max_rows": 10, "index_cost_factor": 0.05})
    col.upsert(list(range(n)), x, [{"r": i % 1000} for i in range(n)])
    col.optimize()
    paths = {frac: col.explain(x[0], filter={"r": {"$lt": int(frac * 1000)}})[0]["path"]
             for frac in (0.01, 0.5)}
    assert paths == {0.01: "exact", 0.5: "filtered-index"}
    assert col.explain(x[0])[0]["path"] == "index"


def test_params_validated_at_every_size() -> None:
    col = shoal.Database().create_collection("v", DIM, "l2", "IVF4,Flat")
    for params in ({"nprobe": 0}, {"ef_search": 5}, {"nprobe": "x"}, {"oversample": 0}, {"rescore": 2}):
        with pytest.raises(shoal.InvalidArgumentError):
            col.search(np.ones(DIM), k=1, params=params)  # empty collection: rejected all the same
    with pytest.raises(shoal.InvalidArgumentError, match="planner option"):
        shoal.Database().create_collection("w", DIM, planner={"exact_max_rows": -1})
    with pytest.raises(shoal.InvalidArgumentError, match="unknown optimizer option"):
        shoal.Database().create_collection("w", DIM, optimizer={"max_rows": 5})


def test_backpressure_bounds_the_unindexed_backlog(rng: np.random.Generator) -> None:
    x = rng.standard_normal((4000, DIM)).astype(np.float32)
    col = shoal.Database().create_collection("b", DIM, "l2", "HNSW8", optimizer={"max_unindexed_rows": 1000})
    col._shard.flush_rows = 200
    seen = []
    for s in range(0, 4000, 200):
        col.upsert(list(range(s, s + 200)), x[s:s + 200])
        seen.append(col._shard.unindexed_rows())
    assert max(seen) <= 1000 + 200  # the bound, plus the segment sealed by the last upsert
    col.optimize()
    assert col.describe()["indexed_rows"] == 4000
