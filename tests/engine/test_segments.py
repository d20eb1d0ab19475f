"""The shard's multi-segment paths against a dict model: fast on purpose (they guard
engine/segment.py and engine/shard.py in ``make mutation``).

A collection with a tiny growing segment (``_flush_rows``) spreads its rows over several
sealed segments, so a search merges per-segment top-k, deletes and re-upserts land in
sealed segments (and in their cached filter masks), and reads group internal ids by segment.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shoal.engine.collection import Collection
from tests.conftest import assert_knn_equal, brute_force

DIM = 6
FILTERS = (None, {"g": 2}, {"g": {"$in": [0, 4]}})


def matches(payload: dict[str, Any], flt: dict[str, Any] | None) -> bool:
    if not flt:  # None or {}: every row
        return True
    (field, cond), = flt.items()
    return payload[field] in cond["$in"] if isinstance(cond, dict) else payload[field] == cond


class Model:
    """The collection as a dict: external id -> (vector, payload)."""

    def __init__(self) -> None:
        self.rows: dict[Any, tuple[np.ndarray, dict[str, Any]]] = {}

    def upsert(self, col: Collection, ids: list[Any], x: np.ndarray, meta: list[dict[str, Any]]) -> None:
        assert col.upsert(ids, x, meta) == len(ids)
        self.rows.update({e: (x[j], meta[j]) for j, e in enumerate(ids)})

    def delete(self, col: Collection, ids: list[Any] | None = None, flt: dict[str, Any] | None = None) -> None:
        gone = [e for e, (_, m) in self.rows.items() if (ids is None or e in ids) and matches(m, flt)]
        assert col.delete(ids=ids, filter=flt) == len(gone)
        for e in gone:
            del self.rows[e]

    def check(self, col: Collection, rng: np.random.Generator) -> None:
        keys = list(self.rows)
        x = np.stack([self.rows[e][0] for e in keys])
        assert len(col) == len(keys)
        segments = col.describe()["segment_list"]
        assert sum(s["live"] for s in segments) == len(keys)  # each segment's live count
        q = rng.standard_normal((4, DIM)).astype(np.float32)
        for flt in FILTERS:
            rows = np.array([j for j, e in enumerate(keys) if matches(self.rows[e][1], flt)])
            assert col.count(flt) == rows.size
            for k in (1, 9, rows.size + 3):
                res = col.search(q, k=k, filter=flt, include=("metadata", "distance", "vector"))
                ref_d, ref_i = brute_force(q, x[rows], min(k, rows.size), "l2", labels=rows)
                pos = {e: j for j, e in enumerate(keys)}
                for r, result in enumerate(res):
                    assert len(result.ids) == min(k, rows.size)  # padding cut, never a dead row
                    got = np.array([pos[e] for e in result.ids])
                    assert_knn_equal(result.distances[None], got[None], ref_d[r:r + 1], ref_i[r:r + 1], atol=1e-4)
                    for e, m, v in zip(result.ids, result.metadata, result.vectors):
                        assert m == self.rows[e][1] and np.array_equal(v, self.rows[e][0])


def build(rng: np.random.Generator, n: int = 240, batch: int = 30, flush: int = 50, index: str = "flat",
          planner: dict | None = None) -> tuple[Collection, Model]:
    col = Collection("m", DIM, "l2", index, optimizer={"background": False}, planner=planner, _flush_rows=flush)
    model = Model()
    ids = [i if i % 3 else f"s{i}" for i in range(n)]  # ints (the id map's table) and strings (its dict)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    meta = [{"g": i % 5, "i": i} for i in range(n)]
    for s in range(0, n, batch):
        model.upsert(col, ids[s:s + batch], x[s:s + batch], meta[s:s + batch])
    return col, model


def test_rows_spread_over_sealed_segments_search_like_one(rng: np.random.Generator) -> None:
    col, model = build(rng)
    states = [s["state"] for s in col.describe()["segment_list"]]
    assert states.count("sealed") == 4 and states[-1] == "growing"  # 4 x 60 rows, an empty tail
    model.check(col, rng)
    model.upsert(col, ["tail-a", "tail-b"], rng.standard_normal((2, DIM)).astype(np.float32),
                 [{"g": 2, "i": -1}, {"g": 0, "i": -2}])  # two rows in the growing segment too
    model.check(col, rng)


def test_deletes_and_replacements_in_sealed_segments(rng: np.random.Generator) -> None:
    col, model = build(rng)
    model.check(col, rng)  # fills every sealed segment's filter-mask cache first
    spread = list(model.rows)[::7]  # ids in every segment
    model.delete(col, spread)
    assert col.delete(ids=spread) == 0  # already gone: nothing counted twice
    model.check(col, rng)  # the cached masks of the filters above are stale now
    some = list(model.rows)[:40]
    model.delete(col, some, {"g": 1})  # ids and a filter: only the given ids that match
    model.delete(col, None, {"g": 3})  # a filter alone, across segments
    model.delete(col, None, {"g": 99})  # a filter that matches nothing deletes nothing (no stray row)
    model.check(col, rng)
    again = list(model.rows)[5:60:4]  # replacements: the old rows die in their sealed segments
    model.upsert(col, again, rng.standard_normal((len(again), DIM)).astype(np.float32),
                 [{"g": 4, "i": 1000 + j} for j in range(len(again))])
    model.check(col, rng)
    model.delete(col, None, {})  # everything
    assert len(col) == 0 and col.search(np.zeros(DIM, np.float32), k=3).ids == []


def test_reads_across_segments_keep_the_order_asked(rng: np.random.Generator) -> None:
    col, model = build(rng)
    model.delete(col, list(model.rows)[::11])
    order = list(model.rows)
    rng.shuffle(order)
    got = col.get(order[:50])
    assert got.ids == order[:50]
    for e, v, m in zip(got.ids, got.vectors, got.metadata):
        assert np.array_equal(v, model.rows[e][0]) and m == model.rows[e][1]
    one_segment = [e for e in order if isinstance(e, int) and e < 60][:5]  # all in the first segment
    got = col.get(one_segment)
    assert got.ids == one_segment and [m["i"] for m in got.metadata] == one_segment
    kept = col.get(order[:50], filter={"g": 2})
    assert kept.ids == [e for e in order[:50] if model.rows[e][1]["g"] == 2]


@pytest.mark.parametrize("index", ["KDTree", "IVF4,Flat"])
def test_merged_and_indexed_segments_keep_the_model(index: str, rng: np.random.Generator) -> None:
    """After the optimizer merged and indexed the segments, deletes and replacements reach the index."""
    col, model = build(rng, index=index, planner={"exact_max_rows": 0, "index_cost_factor": 0.0})
    col.optimize()
    assert all(s["state"] in ("indexed", "growing") for s in col.describe()["segment_list"])
    model.delete(col, list(model.rows)[::4])
    changed = list(model.rows)[::9]
    model.upsert(col, changed, rng.standard_normal((len(changed), DIM)).astype(np.float32),
                 [{"g": 0, "i": -j} for j in range(len(changed))])
    if index == "KDTree":  # exact: through the index, equal to the model
        assert col.explain(np.zeros(DIM, np.float32))[0]["path"] == "index"
        model.check(col, rng)
    else:  # approximate (nprobe 4 of 4 lists: exhaustive); dead rows never come back
        res = col.search(rng.standard_normal((8, DIM)).astype(np.float32), k=20, params={"nprobe": 4})
        assert all(set(r.ids) <= set(model.rows) and len(r.ids) == 20 for r in res)


# ------------------------------------------------------------------ one segment, directly

def _segment(rng: np.random.Generator, n: int = 40):
    from shoal.engine.backend import get_backend
    from shoal.engine.segment import Segment
    from shoal.index.exact import ExactSearcher

    seg = Segment(2, DIM, ExactSearcher("l2", get_backend(None)))
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    seg.append(x, list(range(n)), [{"g": i % 2} for i in range(n)])
    return seg, x


def test_capacity_doubles_and_keeps_the_rows(rng: np.random.Generator) -> None:
    seg, x = _segment(rng, 1)
    assert seg.vectors.shape[0] == 256  # the smallest allocation
    seg.append(x.repeat(255, 0), list(range(1, 256)), [{}] * 255)
    assert seg.n == 256 and seg.vectors.shape[0] == 256  # exactly full: no new allocation
    seg.append(x, [256], [{}])
    assert seg.vectors.shape[0] == 512 and seg.norms.shape[0] == 512 and seg.live.shape[0] == 512
    seg.reserve(1500)
    assert seg.vectors.shape[0] == 1500  # more than double: exactly what was asked
    np.testing.assert_array_equal(seg.vectors[:257], np.concatenate([x, x.repeat(256, 0)]))
    assert seg.live[:257].all() and not seg.live[257:].any() and seg.live_count == 257


def test_delete_is_idempotent_and_internal_ids_keep_padding(rng: np.random.Generator) -> None:
    seg, _ = _segment(rng)
    base = 2 << 32
    assert seg.base == base
    seg.delete(np.array([3, 5]))
    seg.delete(np.array([3, 5, 7]))  # 3 and 5 are already dead
    assert seg.live_count == 37 and seg.ids.values(np.array([3, 7, 8])) == [None, None, 8]
    mask, count = seg.match(None, None)
    assert count == 37 and mask is not None and mask.sum() == 37
    assert seg._internal(np.array([[0, -1, 4]])).tolist() == [[base, -1, base + 4]]


def test_a_sealed_segment_takes_only_deletes(rng: np.random.Generator) -> None:
    from shoal.engine.errors import FailedPreconditionError

    seg, x = _segment(rng)
    seg.seal()
    assert seg.sealed and seg.vectors.shape == (40, DIM) and seg.live.shape == (40,)
    with pytest.raises(FailedPreconditionError, match="only deletes"):
        seg.append(x[:1], [99], [{}])
    assert seg.n == 40


def test_restore_drops_rows_deleted_after_the_index_was_written(rng: np.random.Generator) -> None:
    from shoal.engine.segment import Segment
    from shoal.index.factory import make_index

    seg, x = _segment(rng)
    index = make_index("KDTree", DIM, "l2")
    index.add(x, np.arange(40))
    live = np.ones(40, bool)
    live[[0, 9, 33]] = False
    back = Segment.restore(seg.slot, DIM, seg.exact, x, seg.norms[:40], live, seg.ids, seg.meta, index)
    assert back.sealed and back.n == 40 and back.live_count == 37
    assert index.contains(np.array([0, 9, 33, 1])).tolist() == [False, False, False, True]
    d, i = back.search_index(x[[9]], 1, None, {}, {})
    assert i[0, 0] != back.base + 9  # its own vector is gone from the index
    back.delete(np.array([1]))
    assert not index.contains(np.array([1]))[0]  # a delete on a restored segment reaches the index too


def test_ties_across_segments_go_to_the_earlier_record(rng: np.random.Generator) -> None:
    """Equal distances in several segments merge by internal id: the record written first wins, so a
    repeated search always answers the same (the first row of the first segment included)."""
    col = Collection("t", DIM, "l2", "flat", optimizer={"background": False}, _flush_rows=3)
    v = rng.standard_normal(DIM).astype(np.float32)
    far = v + 10
    col.upsert(["first", "a", "b"], np.stack([v, far, far + 1]))  # internal id 0: row 0 of segment 0
    col.upsert(["c", "second", "d"], np.stack([far + 2, v, far + 3]))  # a sealed segment of its own
    col.upsert(["third"], v[None])  # the growing segment
    assert len(col.describe()["segment_list"]) == 3
    res = col.search(v, k=3)
    assert res.ids == ["first", "second", "third"] and np.ptp(res.distances) == 0  # three equal distances
    assert col.search(v, k=1).ids == ["first"]


def test_reads_in_id_order_follow_every_write(rng: np.random.Generator) -> None:
    """``get`` without ids lists records in id order from an order cached per shard version: every
    upsert and delete must move the version on."""
    col, model = build(rng, n=120)
    ints = lambda ids: [e for e in ids if isinstance(e, int)]  # noqa: E731
    assert ints(col.get(include=()).ids) == sorted(ints(model.rows))
    model.delete(col, [e for e in model.rows if isinstance(e, int) and e % 4 == 1])
    assert ints(col.get(include=()).ids) == sorted(ints(model.rows))
    model.upsert(col, [1001, 1000], rng.standard_normal((2, DIM)).astype(np.float32), [{"g": 0, "i": 0}] * 2)
    assert ints(col.get(include=()).ids) == sorted(ints(model.rows))
    assert len(col.get(include=()).ids) == len(model.rows)


def test_a_batch_with_nothing_to_find_returns_one_empty_result_per_query(rng: np.random.Generator) -> None:
    col, _ = build(rng, n=120)
    q = rng.standard_normal((DIM + 3, DIM)).astype(np.float32)  # more queries than dimensions
    for flt in ({"g": 99}, {"i": {"$lt": -1}}):  # no row matches: every segment skipped
        res = col.search(q, k=4, filter=flt)
        assert len(res) == DIM + 3 and all(r.ids == [] for r in res)
    col.delete(filter={})
    assert [r.ids for r in col.search(q, k=4)] == [[]] * (DIM + 3)


def test_replacing_the_very_first_record_retires_its_row(rng: np.random.Generator) -> None:
    """The first row of the first segment has internal id 0: a re-upsert must still retire it."""
    col = Collection("z", DIM, "l2", "flat", optimizer={"background": False}, _flush_rows=2)
    x = rng.standard_normal((3, DIM)).astype(np.float32)
    col.upsert([5, 6], x[:2])  # sealed: ids 5 -> internal 0
    col.upsert([5], x[2:])
    assert len(col) == 2 and sum(s["live"] for s in col.describe()["segment_list"]) == 2
    assert col.search(x[0], k=3).ids == [6, 5] and col.get([5]).vectors[0].tolist() == x[2].tolist()


def test_a_numpy_scalar_filter_and_its_repr_as_a_string_are_different_filters(rng: np.random.Generator) -> None:
    """Sealed segments cache masks by the filter's canonical text: ``np.int64(5)`` is the number 5
    there, never the string "np.int64(5)" (one key for both returned the number's rows for the string)."""
    col = Collection("k", DIM, "l2", "flat", optimizer={"background": False}, _flush_rows=4)
    x = rng.standard_normal((8, DIM)).astype(np.float32)
    col.upsert(list(range(8)), x, [{"g": 5 if i < 4 else "np.int64(5)"} for i in range(8)])
    assert all(s["state"] != "growing" for s in col.describe()["segment_list"] if s["rows"])  # masks cached
    for value, rows in ((np.int64(5), {0, 1, 2, 3}), ("np.int64(5)", {4, 5, 6, 7}), (5, {0, 1, 2, 3})):
        assert set(col.search(x[0], k=8, filter={"g": value}).ids) == rows
        assert col.count({"g": value}) == 4


def test_restore_without_an_index_is_an_exact_segment(rng: np.random.Generator) -> None:
    from shoal.engine.segment import Segment

    seg, x = _segment(rng)
    live = np.ones(40, bool)
    live[5] = False
    back = Segment.restore(seg.slot, DIM, seg.exact, x, seg.norms[:40], live, seg.ids, seg.meta, None)
    assert back.sealed and back.index is None and back.live_count == 39
    d, i = back.search_exact(x[[5, 6]], 1, *back.match(None, None), None)
    assert i[0, 0] != back.base + 5 and i[1, 0] == back.base + 6


# ------------------------------------------------------------------ the filter-mask cache

def test_a_growing_segment_never_serves_a_mask_from_before_an_append(rng: np.random.Generator) -> None:
    from shoal.engine.filters import keyed_filter

    seg, x = _segment(rng)
    node, key = keyed_filter({"g": 1})
    assert seg.match(node, key)[1] == 20
    seg.append(x[:4], [100, 101, 102, 103], [{"g": 1}] * 4)
    mask, count = seg.match(node, key)
    assert count == 24 and mask.shape == (44,) and mask[40:].all()


def test_a_sealed_segment_caches_read_only_masks_least_recently_used_first(rng: np.random.Generator) -> None:
    from shoal.engine.filters import keyed_filter
    from shoal.engine.segment import MASK_CACHE

    seg, _ = _segment(rng)
    seg.seal()
    keys = [keyed_filter({"g": {"$in": [1, 100 + i]}}) for i in range(MASK_CACHE + 1)]
    first, count = seg.match(*keys[0])
    assert count == 20 and not first.flags.writeable  # shared by every search of the filter
    with pytest.raises(ValueError):
        first[0] = True
    for node, key in keys[1:MASK_CACHE]:
        seg.match(node, key)
    assert seg.match(*keys[0])[0] is first  # served from the cache, and now the most recent
    seg.match(*keys[MASK_CACHE])  # one too many: the least recently used (keys[1]) goes
    assert seg._cached(keys[1][1]) is None
    assert seg._cached(keys[0][1]) is not None and seg._cached(keys[MASK_CACHE][1]) is not None
    seg.delete(np.array([1]))  # a delete makes every cached mask stale
    mask, count = seg.match(*keys[0])
    assert mask is not first and count == 19


def test_explain_says_whether_a_payload_index_found_the_rows(rng: np.random.Generator) -> None:
    """The planner reports the filter's source from the segment's cached match: the keyword index
    for an indexed field (first search and repeated), the column scan for another field."""
    col = Collection("p", DIM, "l2", optimizer={"background": False}, _flush_rows=50,
                     payload_indexes={"g": "keyword"})
    col.upsert(list(range(400)), rng.standard_normal((400, DIM)).astype(np.float32),
               [{"g": f"t{i % 40}", "h": f"t{i % 40}"} for i in range(400)])
    q = np.zeros(DIM, np.float32)
    for flt, source in (({"g": "t3"}, "payload index"), ({"h": "t3"}, "scan"), ({"g": "t3"}, "payload index")):
        (plan,) = col.explain(q, filter=flt)
        assert (plan["rows"], plan["matched"], plan["filter_source"]) == (400, 10, source), flt
    want = list(range(3, 400, 40))
    for flt in ({"g": "t3"}, {"h": "t3"}):  # the index's rows and the scan's give the same records
        assert sorted(col.search(q[None], k=20, filter=flt)[0].ids) == want and col.count(flt) == 10
    col.delete([43])  # after a delete the cached matches are stale, whatever found them
    for flt in ({"g": "t3"}, {"h": "t3"}):
        assert sorted(col.search(q[None], k=20, filter=flt)[0].ids) == [i for i in want if i != 43], flt
        assert col.count(flt) == 9
    assert col.delete(filter={"g": "t3"}) == 9 and col.count({"h": "t3"}) == 0 and len(col) == 390
