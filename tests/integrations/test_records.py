"""shoal.integrations._records: missing ids skipped in one call, scans by scroll, local scores."""
from __future__ import annotations

import numpy as np
import pytest

import shoal
from shoal.integrations._records import delete_existing, get_existing, local_scores, scan


class Counting:
    """A collection proxy that counts get/delete calls."""

    def __init__(self, collection):
        self._c, self.calls = collection, 0

    def __getattr__(self, name):
        attr = getattr(self._c, name)
        if name in ("get", "delete"):
            def counted(*a, **kw):
                self.calls += 1
                return attr(*a, **kw)
            return counted
        return attr


@pytest.fixture
def col(rng):
    c = shoal.Database().create_collection("r", 4)
    c.upsert([f"id{i}" for i in range(64)], rng.standard_normal((64, 4)), [{"g": i % 4} for i in range(64)])
    return c


def test_get_existing_keeps_request_order_and_skips_missing(col):
    counted = Counting(col)
    got = get_existing(counted, ["id5", "id1", "id5", "id9"])
    assert got.ids == ["id5", "id1", "id9"] and got.vectors.shape == (3, 4) and counted.calls == 1
    ids = [f"id{i}" for i in range(60)] + ["nope"] + [f"id{i}" for i in range(60, 64)]
    counted.calls = 0
    got = get_existing(counted, ids)
    assert got.ids == [i for i in ids if i != "nope"] and got.metadata[3] == {"g": 3}
    assert counted.calls == 1  # get(ids, missing="skip"): one call however many are missing (issue 19)
    empty = get_existing(col, ["x", "y"])
    assert empty.ids == [] and empty.vectors.shape == (0, 4)


def test_delete_existing_with_and_without_filter(col):
    assert delete_existing(col, ["id0", "id1", "gone", "id2"], filter={"g": {"$in": [1, 2]}}) == 2
    assert col.count() == 62
    assert delete_existing(col, ["id0", "id1", "id2", "id3", "x"]) == 2 and col.count() == 60
    assert delete_existing(col, []) == 0


def test_scan_returns_every_matching_row_past_the_exact_search_threshold(rng):
    """15,000 rows in an indexed IVF segment: the scan pages through scroll, so it misses nothing
    (and is no longer bounded by the maximum k, 16,384)."""
    c = shoal.Database().create_collection("big", 4, index="IVF16,Flat")
    n = 15_000
    c.upsert(list(range(n)), rng.standard_normal((n, 4)), [{"g": i % 3} for i in range(n)])
    c.optimize()
    everything = scan(c, include=())
    assert sorted(everything.ids) == list(range(n))
    some = scan(c, {"g": {"$ne": 1}})
    assert len(some) == 10_000 and all(m["g"] != 1 for m in some.metadata)
    assert len(scan(c, {"g": 7}, include=("metadata", "vector")).vectors) == 0


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_local_scores_are_shoal_scores(rng, metric):
    c = shoal.Database().create_collection("m", 5, metric=metric)
    x = rng.standard_normal((10, 5))
    c.upsert(list(range(10)), x)
    q = rng.standard_normal(5)
    hits = c.search(q, k=10)
    stored = c.get(hits.ids).vectors
    np.testing.assert_allclose(local_scores(metric, q, stored), hits.scores, rtol=1e-5, atol=1e-5)
