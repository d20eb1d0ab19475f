"""One behavioural contract for every implementation of the Shoal API (issue 19).

Each test runs against every entry of ``implementations.IMPLEMENTATIONS`` (embedded ``Database``,
gRPC ``Client``, ``AsyncClient``, and whatever plugs in later): the same calls must give the same
results and raise the same error classes, and a call that raises changes nothing.
"""
from __future__ import annotations

import numpy as np
import pytest

import shoal
from shoal import (CollectionConfigMismatchError, CollectionExistsError, CollectionNotFoundError,
                   DimensionMismatchError, DuplicateIdError, FilterError, IdNotFoundError, InvalidArgumentError,
                   InvalidVectorError)

DIM = 4
IDS = [5, 1, 3, "b", "a", 2, 4, "c"]
ORDER = [1, 2, 3, 4, 5, "a", "b", "c"]  # ints ascending, then strings


def vec(i: int) -> np.ndarray:
    return np.array([i, (i * 7) % 5, (i * 3) % 4, 1.0], np.float32)


def meta(i: int) -> dict:
    return {"i": i, "parity": ["even", "odd"][i % 2], "n": {"x": i % 3, "deep": {"y": i}}, "tags": [i % 2, "t"]}


@pytest.fixture
def col(db):
    c = db.create_collection("contract", dim=DIM, metric="l2", index="flat")
    c.upsert(IDS, np.stack([vec(i) for i in range(len(IDS))]), [meta(i) for i in range(len(IDS))])
    return c


def state(c) -> tuple:
    """Everything observable about a collection, to check a rejected call changed nothing."""
    got = c.get(include=("metadata", "vector"))
    return got.ids, got.vectors.tobytes(), got.metadata


def brute_range(c, q: np.ndarray, radius: float) -> list:
    got = c.get(include=("vector",))
    d = ((got.vectors - q) ** 2).sum(1)
    order = sorted((float(d[j]), j) for j in range(len(got)) if d[j] < radius)
    return [got.ids[j] for _, j in order]


# ----------------------------------------------------------------- reading records
def test_get_by_ids_keeps_request_order_and_include(col):
    got = col.get(["a", 5, 2])
    assert got.ids == ["a", 5, 2] and len(got) == 3
    np.testing.assert_array_equal(got.vectors, np.stack([vec(4), vec(0), vec(5)]))
    assert got.metadata[0] == meta(4)
    assert got[1].id == 5 and got[-1].id == 2 and got[0].metadata == meta(4)
    assert [r.id for r in got] == ["a", 5, 2]
    with pytest.raises(IndexError):
        got[3]
    only_meta = col.get(["a"], include=("metadata",))
    assert only_meta.vectors is None and only_meta.metadata == [meta(4)]
    only_ids = col.get(["a"], include=())
    assert only_ids.vectors is None and only_ids.metadata is None and only_ids[0].vector is None


def test_get_missing_ids_raise_or_skip(col):
    with pytest.raises(IdNotFoundError, match="nope"):
        col.get(["a", "nope", 99])
    assert col.get(["a", "nope", 99], missing="skip").ids == ["a"]
    odd = [i for i in ["a", 1, 2, 3] if meta(IDS.index(i))["parity"] == "odd"]
    assert col.get(["a", 1, 2, 3], filter={"parity": "odd"}).ids == odd


def test_get_without_ids_filter_limit_offset_in_id_order(col):
    assert col.get(include=()).ids == ORDER
    assert col.get(limit=3, offset=2, include=()).ids == ORDER[2:5]
    odd = [i for i in ORDER if meta(IDS.index(i))["parity"] == "odd"]
    assert col.get(filter={"parity": "odd"}, include=()).ids == odd
    assert col.get(filter={"parity": "odd"}, limit=2, offset=1, include=()).ids == odd[1:3]
    assert col.get(limit=0, include=()).ids == []


def test_scroll_pages_cover_everything_once(col):
    seen, cursor, pages = [], None, 0
    while True:
        page = col.scroll(limit=3, cursor=cursor)
        seen += page.records.ids
        pages += 1
        assert page.records.metadata is not None and page.records.vectors is None
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ORDER and pages == 3
    assert col.scroll(limit=8).next_cursor is None  # exactly one page: no empty page after it
    assert [r.id for r in col.iter(batch_size=2)] == ORDER
    assert [r.id for r in col.iter(batch_size=2, filter={"n.x": 0})] == \
        [i for i in ORDER if meta(IDS.index(i))["n"]["x"] == 0]


def test_scroll_is_stable_while_writes_continue(col):
    page = col.scroll(limit=3, include=())
    assert page.records.ids == [1, 2, 3]
    col.delete([2, "a"])                       # one already returned, one ahead
    col.upsert([0, 10, "aa"], np.zeros((3, DIM)))  # one behind the cursor, two ahead
    col.upsert([4], np.ones((1, DIM)))         # rewrite a record ahead of the cursor (moves segments)
    rest = []
    cursor = page.next_cursor
    while cursor is not None:
        page = col.scroll(limit=2, cursor=cursor, include=())
        rest += page.records.ids
        cursor = page.next_cursor
    assert rest == [4, 5, 10, "aa", "b", "c"]  # present throughout: 4, 5, b, c exactly once; 0 is behind


def test_scroll_and_get_reject_bad_arguments(col):
    before = state(col)
    for call in (lambda: col.scroll(limit=0), lambda: col.scroll(limit=True), lambda: col.scroll(cursor=1.5),
                 lambda: col.get(limit=-1), lambda: col.get(offset=-1), lambda: col.get(include=("vectorz",)),
                 lambda: col.scroll(include=("distance",))):
        with pytest.raises(InvalidArgumentError):
            call()
    with pytest.raises(FilterError):
        col.scroll(filter={"i": {"$regex": "x"}})
    assert state(col) == before


def test_exists_and_delete_ignoring_missing(col):
    assert col.exists([1, "zz", "a", 99]) == [True, False, True, False]
    assert col.delete([1, "zz", 99]) == 1
    assert col.delete(["zz"]) == 0
    assert col.count() == 7 and col.exists([1]) == [False]
    assert col.delete([2, 3, 5], filter={"parity": "even"}) == len(
        [i for i in (2, 3, 5) if meta(IDS.index(i))["parity"] == "even"])
    with pytest.raises(InvalidArgumentError):
        col.delete()


def test_empty_upsert_is_a_no_op(col):
    before = state(col)
    assert col.upsert([], []) == 0
    assert col.upsert([], np.zeros((0, DIM))) == 0
    assert state(col) == before


# ----------------------------------------------------------------- changing records
def test_upsert_without_metadata_replaces_the_payload(col):
    col.upsert(["a"], np.ones((1, DIM)))
    assert col.get(["a"]).metadata == [{}]


def test_update_changes_only_what_is_given(col):
    assert col.update([1, "a"], vectors=np.full((2, DIM), 7.0)) == 2
    got = col.get([1, "a"])
    np.testing.assert_array_equal(got.vectors, np.full((2, DIM), 7.0))
    assert got.metadata == [meta(IDS.index(1)), meta(IDS.index("a"))]
    assert col.update(["b"], metadata={"only": True}) == 1
    got = col.get(["b"])
    assert got.metadata == [{"only": True}]
    np.testing.assert_array_equal(got.vectors[0], vec(IDS.index("b")))
    assert col.update([2, 3], metadata=[{"k": 2}, {"k": 3}]) == 2
    assert col.get([2, 3]).metadata == [{"k": 2}, {"k": 3}]
    assert col.search(np.full(DIM, 7.0), k=2, include=()).ids == [1, "a"]  # search sees the new vectors


def test_update_errors_change_nothing(col):
    before = state(col)
    with pytest.raises(IdNotFoundError, match="ghost"):
        col.update([1, "ghost"], metadata={"x": 1})
    with pytest.raises(InvalidArgumentError):
        col.update([1])
    with pytest.raises(InvalidArgumentError):
        col.update([1, 2], vectors=np.zeros((1, DIM)))
    with pytest.raises(DimensionMismatchError):
        col.update([1], vectors=np.zeros((1, DIM + 1)))
    with pytest.raises(InvalidVectorError):
        col.update([1], vectors=[[np.nan] * DIM])
    with pytest.raises(DuplicateIdError):
        col.update([1, 1], metadata={"x": 1})
    with pytest.raises(InvalidArgumentError):
        col.update([1], metadata=[{"x": 1}, {"x": 2}])
    assert state(col) == before


def test_set_metadata_merges_and_delete_metadata_keys(col):
    vectors_before = col.get(include=("vector",)).vectors
    assert col.set_metadata(ids=[1, "ghost"], values={"new": 1, "i": -1}) == 1
    assert col.get([1]).metadata == [{**meta(IDS.index(1)), "new": 1, "i": -1}]
    odd = col.count({"parity": "odd"})
    assert col.set_metadata(filter={"parity": "odd"}, values={"flag": True}) == odd
    assert col.count({"flag": True}) == odd
    assert col.delete_metadata_keys(filter={"flag": True}, keys=["flag", "tags", "absent"]) == odd
    assert col.count({"flag": {"$exists": True}}) == 0 and col.count({"tags": {"$exists": True}}) == 8 - odd
    np.testing.assert_array_equal(col.get(include=("vector",)).vectors, vectors_before)  # payloads only
    before = state(col)
    with pytest.raises(InvalidArgumentError):
        col.set_metadata(values={"x": 1})
    with pytest.raises(InvalidArgumentError):
        col.set_metadata(ids=[1], values={"$bad": 1})
    with pytest.raises(InvalidArgumentError):
        col.delete_metadata_keys(ids=[1], keys=[""])
    with pytest.raises(FilterError):
        col.set_metadata(filter={"$nope": 1}, values={"x": 1})
    assert state(col) == before


# ----------------------------------------------------------------- searching
def test_score_threshold(col):
    q = vec(0)
    full = col.search(q, k=8)
    cut = float(full.scores[3])
    kept = col.search(q, k=8, score_threshold=cut)
    assert kept.ids == full.ids[: int((full.scores >= cut).sum())] and all(kept.scores >= cut)
    assert len(col.search(q, k=8, score_threshold=1e9)) == 0
    with pytest.raises(InvalidArgumentError):
        col.search(q, k=3, score_threshold=float("nan"))


@pytest.mark.parametrize("index", ["flat", "HNSW8", "KDTree"])
def test_search_range_matches_brute_force(db, index):
    c = db.create_collection(f"range-{index.lower()}", dim=DIM, metric="l2", index=index)
    x = np.random.default_rng(3).standard_normal((300, DIM)).astype(np.float32)
    c.upsert(list(range(300)), x, [{"g": i % 3} for i in range(300)])
    c.compact()  # seals and indexes: the range search goes through the index
    q = x[:2] + 0.1
    for qi, res in zip(q, c.search_range(q, 1.5)):
        assert res.ids == brute_range(c, qi, 1.5) and (res.distances < 1.5).all()
    limited = c.search_range(q[0], 1.5, limit=3, filter={"g": 1})
    assert limited.ids == [i for i in brute_range(c, q[0], 1.5) if i % 3 == 1][:3]
    assert limited.metadata == [{"g": 1}] * len(limited)
    with pytest.raises(InvalidArgumentError):
        c.search_range(q[0], float("inf"))


def test_nested_fields_filter(col):
    want = [i for i in ORDER if meta(IDS.index(i))["n"]["x"] == 1]
    assert col.get(filter={"n.x": 1}, include=()).ids == want
    assert col.count({"n.deep.y": {"$gte": 5}}) == 3
    assert col.count({"n.x": {"$exists": True}}) == 8 and col.count({"n.z": {"$exists": False}}) == 8
    assert col.count({"n.nope": None}) == 8 and col.count({"n.x": {"$ne": 1}}) == 8 - len(want)
    hits = col.search(vec(0), k=8, filter={"$or": [{"n.x": 2}, {"n.deep.y": 0}]})
    assert sorted(map(str, hits.ids)) == sorted(str(i) for i in ORDER
                                                if meta(IDS.index(i))["n"]["x"] == 2 or IDS.index(i) == 0)


def test_group_by(col):
    groups = col.search(vec(0), k=2, group_by="parity", group_size=3)
    assert [g.value for g in groups] == ["even", "odd"] or [g.value for g in groups] == ["odd", "even"]
    full = col.search(vec(0), k=8)
    for g in groups:
        members = [i for i, m in zip(full.ids, full.metadata) if m["parity"] == g.value][:3]
        assert g.hits.ids == members
    assert groups[0].hits.ids[0] == full.ids[0]
    one = col.search(vec(0), k=5, group_by="n.x")  # nested field, group_size 1
    assert len(one) == 3 and all(len(g.hits) == 1 for g in one)
    batch = col.search(np.stack([vec(0), vec(1)]), k=1, group_by="parity")
    assert len(batch) == 2 and all(len(b) == 1 for b in batch)
    with pytest.raises(InvalidArgumentError):
        col.search(vec(0), k=2, group_by="parity", group_size=0)


def test_recommend(col):
    res = col.recommend(positive=[1, "a"], negative=[5], k=3)
    assert len(res) == 3 and not {1, "a", 5} & set(res.ids)
    stored = col.get([1, "a", 5], include=("vector",)).vectors
    center = stored[:2].mean(0)
    expect = col.search(center + (center - stored[2]), k=6, include=())
    assert res.ids == [i for i in expect.ids if i not in (1, "a", 5)][:3]
    by_vector = col.recommend(positive=[vec(2)], k=2)
    assert by_vector.ids == col.search(vec(2), k=2).ids
    mixed = col.recommend(positive=[3, vec(2)], k=2, filter={"parity": "even"})
    assert all(m["parity"] == "even" for m in mixed.metadata) and 3 not in mixed.ids
    with pytest.raises(IdNotFoundError):
        col.recommend(positive=["ghost"])
    with pytest.raises(InvalidArgumentError):
        col.recommend(positive=[])


# ----------------------------------------------------------------- collections
def test_collection_metadata_get_or_create_and_rename(db):
    c = db.create_collection("things", dim=DIM, metric="l2", metadata={"owner": "ops", "v": 2})
    assert c.describe()["metadata"] == {"owner": "ops", "v": 2}
    c.upsert([1], np.ones((1, DIM)), [{"a": 1}])
    same = db.get_or_create_collection("things", dim=DIM)
    assert same.count() == 1
    assert db.get_or_create_collection("things", dim=DIM, metric="l2", index="flat").count() == 1
    with pytest.raises(CollectionConfigMismatchError, match=r"dim=4, not 8"):
        db.get_or_create_collection("things", dim=8)
    with pytest.raises(CollectionConfigMismatchError, match=r"metric='l2', not 'cosine'") as info:
        db.get_or_create_collection("things", dim=DIM, metric="cosine", index="hnsw")
    assert "index='flat'" in str(info.value) and isinstance(info.value, CollectionExistsError)
    fresh = db.get_or_create_collection("fresh", dim=3, metadata={"m": 1})
    assert fresh.describe()["metadata"] == {"m": 1} and fresh.describe()["dim"] == 3

    renamed = db.rename_collection("things", "stuff")
    assert renamed.name == "stuff" and renamed.get([1]).metadata == [{"a": 1}]
    assert renamed.describe()["metadata"] == {"owner": "ops", "v": 2}
    assert "things" not in db.list_collections() and "stuff" in db.list_collections()
    with pytest.raises(CollectionNotFoundError):
        db.get_collection("things")
    with pytest.raises(CollectionNotFoundError):
        db.rename_collection("things", "other")
    with pytest.raises(CollectionExistsError):
        db.rename_collection("stuff", "fresh")
    with pytest.raises(InvalidArgumentError):
        db.rename_collection("stuff", "../x")
    with pytest.raises(CollectionExistsError):
        db.create_collection("stuff", dim=DIM)
    with pytest.raises(InvalidArgumentError):
        db.create_collection("bad-meta", dim=DIM, metadata={"x": float("nan")})
    db.drop_collection("stuff")
    with pytest.raises(CollectionNotFoundError):
        db.drop_collection("stuff")


# ----------------------------------------------------------------- one rule on both sides
def test_integers_fit_64_bits_and_keys_come_back_sorted(db):
    c = db.create_collection("ints", dim=DIM, metric="l2")
    with pytest.raises(InvalidArgumentError, match="64 bits"):
        c.upsert([2 ** 70], np.zeros((1, DIM)))
    with pytest.raises(InvalidArgumentError, match="64 bits"):
        c.upsert([1], np.zeros((1, DIM)), [{"big": 2 ** 80}])
    with pytest.raises(InvalidArgumentError, match="64 bits"):
        c.upsert([1], np.zeros((1, DIM)), [{"deep": [{"big": -(2 ** 63) - 1}]}])
    assert c.count() == 0
    c.upsert([2 ** 63 - 1, -(2 ** 63)], np.zeros((2, DIM)),
             [{"z": 1, "a": {"y": 2 ** 63 - 1, "b": 1}, "m": [1, 2]}, {}])
    got = c.get([2 ** 63 - 1])
    assert got.ids == [2 ** 63 - 1] and got.metadata == [{"a": {"b": 1, "y": 2 ** 63 - 1}, "m": [1, 2], "z": 1}]
    assert list(got.metadata[0]) == ["a", "m", "z"] and list(got.metadata[0]["a"]) == ["b", "y"]
    assert list(c.search(np.zeros(DIM), k=1, filter={"z": 1}).metadata[0]) == ["a", "m", "z"]
    assert c.get(include=()).ids == [-(2 ** 63), 2 ** 63 - 1]


def test_common_errors_are_the_same_class(col):
    before = state(col)
    cases = [
        (lambda: col.upsert([1], np.zeros((1, DIM + 1))), DimensionMismatchError),
        (lambda: col.upsert([1], [[np.inf] * DIM]), InvalidVectorError),
        (lambda: col.upsert([1, 1], np.zeros((2, DIM))), DuplicateIdError),
        (lambda: col.upsert([1.5], np.zeros((1, DIM))), InvalidArgumentError),
        (lambda: col.search(np.zeros(DIM), k=0), InvalidArgumentError),
        (lambda: col.search(np.zeros(DIM), k=1, filter={"i": {"$regex": 1}}), FilterError),
        (lambda: col.search(np.zeros(DIM), k=1, include=("nope",)), InvalidArgumentError),
        (lambda: col.search(np.zeros(DIM), k=1, params={"nprobe": 2}), InvalidArgumentError),
        (lambda: col.get(["ghost"]), IdNotFoundError),
        (lambda: col.exists([None]), InvalidArgumentError),
    ]
    for call, cls in cases:
        with pytest.raises(cls):
            call()
    assert state(col) == before
