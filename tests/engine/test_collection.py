"""Collection API: dict-model equivalence, exact filtered search, bad input, edge cases."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import shoal
from shoal import (CollectionExistsError, CollectionNotFoundError, DimensionMismatchError, DuplicateIdError,
                   FilterError, IdNotFoundError, InvalidArgumentError, InvalidVectorError)
from tests.conftest import brute_force


@pytest.fixture
def col(rng):
    db = shoal.Database()
    c = db.create_collection("things", dim=8, metric="l2")
    x = rng.normal(size=(300, 8)).astype(np.float32)
    c.upsert(list(range(300)), x, [{"group": i % 10, "name": f"n{i}", "even": i % 2 == 0} for i in range(300)])
    return c, x


def test_database_lifecycle():
    db = shoal.Database()
    db.create_collection("a", dim=3)
    with pytest.raises(CollectionExistsError):
        db.create_collection("a", dim=3)
    assert db.list_collections() == ["a"]
    assert db.get_collection("a").dim == 3
    db.drop_collection("a")
    with pytest.raises(CollectionNotFoundError):
        db.get_collection("a")
    with pytest.raises(InvalidArgumentError):
        db.create_collection("bad name/", dim=3)
    with pytest.raises(InvalidArgumentError):
        db.create_collection("b", dim=0)
    with pytest.raises(InvalidArgumentError, match="unknown metric"):
        db.create_collection("b", dim=3, metric="hamming")
    with pytest.raises(shoal.InvalidSpecError):
        db.create_collection("b", dim=3, index="nope")
    assert db.list_collections() == []


@pytest.mark.parametrize("selectivity_groups", [[3], [1, 2, 3], list(range(10))])
def test_filtered_search_is_exact(col, rng, selectivity_groups):
    c, x = col
    q = rng.normal(size=(5, 8)).astype(np.float32)
    res = c.search(q, k=7, filter={"group": {"$in": selectivity_groups}})
    rows = np.array([i for i in range(300) if i % 10 in selectivity_groups])
    ref_d, ref_i = brute_force(q, x[rows], 7, "l2", labels=rows)
    for r, result in enumerate(res):
        assert result.ids == ref_i[r].tolist()
        np.testing.assert_allclose(result.distances, ref_d[r], rtol=1e-4, atol=1e-4)
        assert all(m["group"] in selectivity_groups for m in result.metadata)


def test_fewer_matches_than_k(col):
    c, x = col
    res = c.search(x[0], k=10, filter={"name": {"$in": ["n1", "n2", "n3"]}})
    assert sorted(res.ids) == [1, 2, 3]
    assert len(c.search(x[0], k=10, filter={"name": "nobody"})) == 0


def test_single_query_and_result_types(col):
    c, x = col
    res = c.search(x[5], k=3)
    assert isinstance(res, shoal.QueryResult)
    assert res.ids[0] == 5 and res.distances[0] == pytest.approx(0, abs=1e-4)
    ids, dists = res.to_numpy()
    assert ids.shape == (3,) and dists.dtype == np.float32
    assert "id=5" in repr(res)
    hit = res[0]
    assert hit.id == 5 and hit.metadata == {"group": 5, "name": "n5", "even": False}
    res = c.search(x[5], k=1, include=("vector",))
    assert res.metadata is None and np.allclose(res.vectors[0], x[5])
    with pytest.raises(InvalidArgumentError, match="include"):
        c.search(x[5], include=("bogus",))


def test_upsert_replaces_and_get(col, rng):
    c, x = col
    new = rng.normal(size=(1, 8)).astype(np.float32)
    c.upsert([7], new, [{"group": 99}])
    assert len(c) == 300
    got = c.get([7, 8])
    np.testing.assert_allclose(got.vectors[0], new[0])
    assert got.metadata[0] == {"group": 99} and got.ids == [7, 8]
    assert c.count({"group": 99}) == 1 and c.count({"group": 7}) == 29
    assert c.search(new[0], k=1).ids == [7]
    assert 7 not in c.search(x[7], k=3, filter={"group": 7}).ids


def test_delete_by_ids_and_filter(col):
    c, x = col
    assert c.delete(ids=[0, 1]) == 2
    assert c.delete(ids=[0]) == 0  # missing ids are ignored (issue 19)
    assert c.delete(filter={"group": 5}) == 30
    assert c.count() == 268 and c.count({"group": 5}) == 0
    assert c.delete(ids=[2, 3, 17], filter={"even": True}) == 1  # only id 2 is even and listed
    assert 2 not in c.search(x[2], k=5).ids
    with pytest.raises(InvalidArgumentError):
        c.delete()
    with pytest.raises(IdNotFoundError):
        c.get([0])


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_in_memory_compaction_drops_deleted_rows(rng, index):
    db = shoal.Database()
    # the planner is told to use the graph (3,000 rows scan faster than they walk by its cost model)
    c = db.create_collection("churn", dim=8, metric="cosine", index=index,
                             planner={"exact_max_rows": 0, "index_cost_factor": 0.0})
    x = rng.normal(size=(3000, 8)).astype(np.float32)
    c.upsert(list(range(3000)), x, [{"g": i % 7} for i in range(3000)])
    c.delete(ids=list(range(0, 600, 2)))
    x[1:600:2] = rng.normal(size=(300, 8)).astype(np.float32)  # re-upserts leave tombstones too
    c.upsert(list(range(1, 600, 2)), x[1:600:2], [{"g": 100}] * 300)
    c.delete(filter={"g": 3})
    alive = [i for i in range(3000) if (i % 2 == 1 if i < 600 else i % 7 != 3)]
    q = rng.normal(size=(20, 8)).astype(np.float32)
    before = c.search(q, k=10, params={"ef_search": 400} if index == "hnsw" else None)
    assert sum(s.n for s in c._shard.segments) > c.count() == len(alive)
    stored = c.get(alive[:50] + [1, 3])

    assert c.compact() is True
    assert sum(s.n for s in c._shard.segments) == c.count() == len(alive)
    got = c.get(alive[:50] + [1, 3])
    np.testing.assert_array_equal(got.vectors, stored.vectors)
    assert got.metadata[-1] == {"g": 100} and got.ids == alive[:50] + [1, 3]
    assert c.count({"g": 100}) == 300 and c.count({"g": 3}) == 0
    after = c.search(q, k=10, params={"ef_search": 400} if index == "hnsw" else None, explain=True)
    assert [p["path"] for p in after[0].plan] == (["index"] if index == "hnsw" else ["exact"])
    _, ref = brute_force(q, x[alive], 10, "cosine", np.array(alive))
    if index == "flat":
        assert [r.ids for r in after] == [r.ids for r in before] == ref.tolist()
    else:  # the graph, rebuilt from the live rows only
        assert np.mean([len(set(r.ids) & set(t)) / 10 for r, t in zip(after, ref.tolist())]) >= 0.95
        assert not {i for r in after for i in r.ids} - set(alive)
    assert c.compact() is False  # nothing left to drop
    c.upsert([5000], x[:1])  # writes go on after a compaction
    assert c.get([5000]).ids == [5000] and c.count() == len(alive) + 1
    c.delete(filter={})
    assert c.compact() is True and c.count() == 0 and c.search(q[0], k=3).ids == []


def test_string_and_int_ids():
    db = shoal.Database()
    c = db.create_collection("s", dim=2, metric="ip")
    c.upsert(["a", 5], [[1, 0], [0, 1]])
    assert c.search([1, 0.1], k=2).ids == ["a", 5]
    r = c.search([1, 0.1], k=1)
    assert r.scores[0] == pytest.approx(1.0) and r.distances[0] == pytest.approx(-1.0)


def test_cosine_zero_vector():
    db = shoal.Database()
    c = db.create_collection("z", dim=3, metric="cosine")
    c.upsert([1, 2], [[0, 0, 0], [1, 1, 0]])
    r = c.search([1, 1, 0], k=2)
    assert r.ids == [2, 1]
    np.testing.assert_allclose(r.scores, [1.0, 0.0], atol=1e-6)


def test_empty_collection_and_duplicates():
    db = shoal.Database()
    c = db.create_collection("e", dim=2, metric="l2")
    assert len(c.search([0, 0], k=3)) == 0 and c.count() == 0
    c.upsert([1, 2, 3], [[1, 1], [1, 1], [1, 1]])
    assert c.search([1, 1], k=3).ids == [1, 2, 3]


@pytest.mark.parametrize("call, exc", [
    (lambda c: c.upsert([1], np.zeros((1, 7))), DimensionMismatchError),
    (lambda c: c.upsert([1], [[np.nan] * 8]), InvalidVectorError),
    (lambda c: c.upsert([1], [[np.inf] * 8]), InvalidVectorError),
    (lambda c: c.upsert([1, 2], np.zeros((1, 8))), InvalidArgumentError),
    (lambda c: c.upsert([1, 1], np.zeros((2, 8))), DuplicateIdError),
    (lambda c: c.upsert([], np.zeros((1, 8))), InvalidArgumentError),  # upsert([], []) is a no-op (issue 19)
    (lambda c: c.upsert([1], np.zeros((1, 8)), [{"a": 1}, {"a": 2}]), InvalidArgumentError),
    (lambda c: c.upsert([1], np.zeros((1, 8)), [{"a": float("nan")}]), InvalidArgumentError),
    (lambda c: c.upsert([1], np.zeros((1, 8)), [{"a": object()}]), InvalidArgumentError),
    (lambda c: c.upsert([True], np.zeros((1, 8))), InvalidArgumentError),
    (lambda c: c.upsert([1.5], np.zeros((1, 8))), InvalidArgumentError),
    (lambda c: c.search(np.zeros(8), k=0), InvalidArgumentError),
    (lambda c: c.search(np.zeros(7), k=1), DimensionMismatchError),
    (lambda c: c.search(np.zeros((0, 8)), k=1), InvalidArgumentError),
    (lambda c: c.search(np.zeros(8), k=1, filter={"group": {"$regex": "x"}}), FilterError),
    (lambda c: c.delete(filter={"$and": 1}), FilterError),
    (lambda c: c.get(["missing"]), IdNotFoundError),
])
def test_bad_input_changes_nothing(col, call, exc):
    c, x = col
    before = c.search(x[:3], k=5)
    with pytest.raises(exc) as info:
        call(c)
    assert isinstance(info.value, shoal.ShoalError) and str(info.value)
    assert len(c) == 300
    after = c.search(x[:3], k=5)
    assert [r.ids for r in before] == [r.ids for r in after]


class CollectionModel(RuleBasedStateMachine):
    """Random upsert/delete sequences behave like a dict; search equals brute force over the dict."""

    def __init__(self):
        super().__init__()
        self.col = shoal.Database().create_collection("m", dim=3, metric="l2")
        self.model: dict[int, tuple[np.ndarray, dict]] = {}

    @rule(ids=st.lists(st.integers(0, 30), min_size=1, max_size=6, unique=True), seed=st.integers(0, 10**6))
    def upsert(self, ids, seed):
        x = np.random.default_rng(seed).integers(-4, 5, size=(len(ids), 3)).astype(np.float32)
        meta = [{"tag": i % 3} for i in ids]
        self.col.upsert(ids, x, meta)
        for i, v, m in zip(ids, x, meta):
            self.model[i] = (v, m)

    @rule(ids=st.lists(st.integers(0, 30), min_size=1, max_size=4, unique=True))
    def delete(self, ids):
        present = [i for i in ids if i in self.model]
        assert self.col.delete(ids=ids) == len(present)  # missing ids are ignored (issue 19)
        for i in present:
            del self.model[i]

    @rule(tag=st.integers(0, 2))
    def delete_filter(self, tag):
        gone = [i for i, (_, m) in self.model.items() if m["tag"] == tag]
        assert self.col.delete(filter={"tag": tag}) == len(gone)
        for i in gone:
            del self.model[i]

    @invariant()
    def matches_model(self):
        assert len(self.col) == len(self.model) == self.col.count()
        if not self.model:
            return
        ids = sorted(self.model)
        got = self.col.get(ids)
        np.testing.assert_array_equal(got.vectors, np.stack([self.model[i][0] for i in ids]))
        q = np.array([[0.5, -1.0, 2.0]], np.float32)
        data = np.stack([self.model[i][0] for i in ids])
        ref_d, _ = brute_force(q, data, min(5, len(ids)), "l2")
        res = self.col.search(q[0], k=5, include=("metadata", "distance", "vector"))
        np.testing.assert_allclose(res.distances, ref_d[0], atol=1e-4)
        for hit, vector, dist in zip(res, res.vectors, res.distances):  # each hit is the model's record
            vec, meta = self.model[hit.id]
            np.testing.assert_array_equal(vector, vec)
            assert hit.metadata == meta and dist == pytest.approx(float(((vec - q[0]) ** 2).sum()), abs=1e-4)


TestCollectionModel = CollectionModel.TestCase
TestCollectionModel.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)


def test_missing_ids_are_named_up_to_ten(col):
    c, _ = col
    with pytest.raises(IdNotFoundError) as info:
        c.get([1000 + i for i in range(15)])
    assert str(info.value) == f"ids not found in collection 'things': {list(range(1000, 1010))} (and 5 more)"
    assert len(c) == 300  # the call that named them changed nothing
    assert c.delete(ids=[2] + [2000 + i for i in range(10)]) == 1  # delete ignores missing ids (issue 19)
    assert len(c) == 299
