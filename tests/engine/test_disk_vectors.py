"""Vectors on disk: the same answers as the in-RAM layout, with the index's vectors memory-mapped."""
from __future__ import annotations

import numpy as np
import pytest

import shoal
from shoal import InvalidArgumentError


def _vectors_array(col):
    seg = next(s for s in col._shard.segments if s.indexed)
    return seg.index._state()[0]["vectors"]


def _fill(col, n, start=0):
    x = np.random.default_rng(start).standard_normal((n, 16)).astype(np.float32)
    col.upsert(list(range(start, start + n)), x, [{"g": i % 5} for i in range(start, start + n)])


@pytest.mark.parametrize("index, options", [("HNSW8", {"codes": "sq8"}), ("SQ8", {})])
def test_same_answers_with_vectors_mapped(tmp_path, index, options):
    q = np.random.default_rng(9).standard_normal((5, 16)).astype(np.float32)
    results = {}
    for on_disk in (False, True):
        path = tmp_path / f"db-{on_disk}"
        with shoal.Database(path) as db:
            col = db.create_collection("c", dim=16, metric="l2", index=index, vectors_on_disk=on_disk,
                                       optimizer={"background": False}, **options)
            _fill(col, 1500)
            col.optimize()  # the merged segment's index is reopened from its file
            assert _vectors_array(col).flags.writeable != on_disk
            _fill(col, 400, start=1500)
            col.delete(list(range(0, 1900, 7)))
            col.optimize()
            before = [(r.ids, r.distances.tolist()) for r in col.search(q, k=8, filter={"g": {"$ne": 1}})]
        with shoal.Database(path) as db:
            col = db.get_collection("c")
            assert col.describe()["vectors_on_disk"] is on_disk
            vectors = _vectors_array(col)
            assert vectors.flags.writeable != on_disk
            after = [(r.ids, r.distances.tolist()) for r in col.search(q, k=8, filter={"g": {"$ne": 1}})]
            assert after == before
            results[on_disk] = after
    assert results[True] == results[False]  # the same files, opened two ways


@pytest.mark.parametrize("kwargs, message", [
    ({"index": "flat"}, "searches compact codes"),
    ({"index": "HNSW8", "codes": "none"}, "codes='none'"),
    ({"index": "SQ8", "vectors_on_disk": "yes"}, "true or false"),
])
def test_refused_where_it_cannot_work(tmp_path, kwargs, message):
    with shoal.Database(tmp_path / "db") as db:
        with pytest.raises(InvalidArgumentError, match=message):
            db.create_collection("c", dim=16, **{"vectors_on_disk": True, **kwargs})
        assert db.list_collections() == []


def test_auto_walks_codes_when_the_vectors_are_on_disk(tmp_path):
    """The default codes='auto' floats below AUTO_SQ8_MIN_DIM, but with the vectors on disk it walks
    codes at any dimension (created and reopened alike), with the stored options unchanged."""
    for _ in range(2):
        with shoal.Database(tmp_path / "db") as db:
            col = db.get_or_create_collection("c", dim=16, index="HNSW8", vectors_on_disk=True)
            assert col._template.walks_codes and col._new_index().walks_codes
            assert "codes" not in col.describe().get("index_options", {})


def test_needs_a_durable_database():
    with pytest.raises(InvalidArgumentError, match="durable database"):
        shoal.Database().create_collection("c", dim=16, index="SQ8", vectors_on_disk=True)
