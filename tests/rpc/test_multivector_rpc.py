"""Multi-vector collections over gRPC give what the embedded ones give (upsert, search, get, errors)."""
from __future__ import annotations

import numpy as np
import pytest

import shoal
from shoal.engine.errors import DimensionMismatchError, InvalidArgumentError
from shoal.rpc import convert

DIM = 8


def fill(col, rng):
    sets = [rng.normal(size=(1 + i % 4, DIM)) for i in range(30)]
    col.upsert(list(range(30)), sets, [{"n": i} for i in range(30)])
    col.upsert("s", rng.normal(size=(2, DIM)))
    return sets


def test_remote_multivector_matches_embedded(client):
    remote = client.create_collection("mvr", DIM, "ip", multivector="maxsim")
    local = shoal.Database().create_collection("mvr", DIM, "ip", multivector="maxsim")
    sets = fill(remote, np.random.default_rng(5))
    fill(local, np.random.default_rng(5))
    assert len(remote) == len(local) == 31
    queries = [sets[3][:1] + 0.1, np.ones((3, DIM))]
    for kw in ({}, {"candidates": 500}, {"exact": True, "filter": {"n": {"$gte": 10}}}):
        got, want = remote.search(queries, k=5, include=("metadata", "vector"), **kw), \
            local.search(queries, k=5, include=("metadata", "vector"), **kw)
        for g, w in zip(got, want):
            assert g.ids == w.ids and g.metadata == w.metadata
            np.testing.assert_allclose(g.scores, w.scores, rtol=1e-6)
            assert [v.shape for v in g.vectors] == [v.shape for v in w.vectors]
        one = remote.search(queries[1], k=3, exact=True)
        assert one.ids == local.search(queries[1], k=3, exact=True).ids
    empty = remote.search(queries[0], k=3, filter={"n": -1}, include=("vector",))
    assert empty.ids == [] and empty.vectors == []
    got = remote.get([4, "s"])
    assert [v.shape for v in got.vectors] == [(1, DIM), (2, DIM)]
    np.testing.assert_allclose(got.vectors[0], sets[4], rtol=1e-6)
    assert remote.scroll(filter={"n": 7}, include=("vector",)).records.vectors[0].shape == (4, DIM)
    assert remote.delete([4]) == 1 and len(remote) == 30


def test_remote_multivector_streams_large_loads(client):
    client.batch_size = 16  # records go in chunks of whole records
    remote = client.create_collection("mvbig", DIM, multivector="maxsim")
    rng = np.random.default_rng(2)
    sets = [rng.normal(size=(5, DIM)) for _ in range(40)]
    assert remote.upsert(list(range(40)), sets) == 40
    assert len(remote) == 40 and remote.get(39).vectors[0].shape == (5, DIM)


def test_remote_multivector_errors_are_invalid_argument(client):
    remote = client.create_collection("mverr", DIM, multivector="maxsim")
    fill(remote, np.random.default_rng(1))
    with pytest.raises(DimensionMismatchError):
        remote.upsert([1], [np.ones((2, DIM + 1))])
    with pytest.raises(InvalidArgumentError):
        remote.search(np.ones((2, DIM)), group_by="n")
    with pytest.raises(InvalidArgumentError):
        remote.search(np.ones((2, DIM)), candidates=0)
    bad = convert.vector_sets_to_proto([np.ones((2, DIM))], DIM)
    bad.counts[:] = [3]
    with pytest.raises(InvalidArgumentError, match="counts"):
        convert.vectors_from_proto(bad)
    assert len(remote) == 31


def test_a_batch_without_counts_is_one_query_set(client):
    from shoal.rpc.v1 import search_pb2

    remote = client.create_collection("mvraw", DIM, "ip", multivector="maxsim")
    local = shoal.Database().create_collection("mvraw", DIM, "ip", multivector="maxsim")
    fill(remote, np.random.default_rng(4))
    fill(local, np.random.default_rng(4))
    q = np.random.default_rng(9).normal(size=(3, DIM)).astype(np.float32)
    batch = search_pb2.QueryBatch(k=4, vectors=convert.vectors_to_proto(q))  # a plain client: no counts
    response = client.searcher.Search(search_pb2.SearchRequest(collection="mvraw", batches=[batch]))
    assert len(response.results) == 1
    assert convert.ids_from_proto(response.results[0].ids) == local.search(q, k=4).ids
