"""cluster.merge without Ray: top-k and range merges (ties in id order), record merges in id order."""
from __future__ import annotations

import numpy as np

from shoal.cluster.merge import gather, merge_by_id, merge_topk
from shoal.engine.results import GetResult, QueryResult


def _hits(ids, distances):
    d = np.asarray(distances, np.float32)
    return QueryResult(list(ids), d, -d, [{"id": i} for i in ids], np.asarray([[len(str(i))] for i in ids], np.float32).reshape(len(ids), 1))


def test_topk_orders_by_distance_then_id_order():
    parts = [_hits(["b", 9, 3], [0.0, 1.0, 2.0]), _hits([2, "a", 1], [0.0, 0.0, 1.0])]
    out = merge_topk(parts, 5)
    assert out.ids == [2, "a", "b", 1, 9]  # ties at 0: ints before strings, strings by code point
    np.testing.assert_array_equal(out.distances, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(out.scores, -out.distances)
    assert out.metadata == [{"id": i} for i in out.ids]
    np.testing.assert_array_equal(out.vectors[:, 0], [len(str(i)) for i in out.ids])
    assert merge_topk(parts, None).ids == [2, "a", "b", 1, 9, 3]  # a range search's "no limit"


def test_topk_without_ties_is_a_plain_sort_and_one_shard_passes_through():
    parts = [_hits([5, 1], [0.5, 3.0]), _hits([4], [1.5]), _hits([], [])]
    assert merge_topk(parts, 2).ids == [5, 4]
    one = _hits([7, 8], [1.0, 1.0])
    assert merge_topk([one], 10) is one  # a single shard's order is the single collection's


def test_records_merge_in_id_order_with_skip_and_limit():
    parts = [GetResult([1, 4, "a"], np.arange(3, dtype=np.float32)[:, None], [{"s": 0}] * 3),
             GetResult([2, 3, "b"], np.arange(3, 6, dtype=np.float32)[:, None], [{"s": 1}] * 3)]
    everything = merge_by_id(parts, 1, ("metadata", "vector"))
    assert everything.ids == [1, 2, 3, 4, "a", "b"]
    np.testing.assert_array_equal(everything.vectors[:, 0], [0, 3, 4, 1, 2, 5])
    assert [m["s"] for m in everything.metadata] == [0, 1, 1, 0, 0, 1]
    page = merge_by_id(parts, 1, (), skip=2, limit=3)
    assert page.ids == [3, 4, "a"] and page.vectors is None and page.metadata is None
    empty = gather([], [], 4, ("vector",))
    assert empty.ids == [] and empty.vectors.shape == (0, 4)
