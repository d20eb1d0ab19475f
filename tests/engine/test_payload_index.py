"""Payload indexes: answers through the indexes equal full scans (the filter tests' reference and
strategies), at the evaluator, segment, collection, reopen and merge levels."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shoal
from shoal import InvalidArgumentError
from shoal.engine.collection import Collection
from shoal.engine.errors import CollectionConfigMismatchError
from shoal.engine.filters import compile_filter
from shoal.engine.metadata import MetadataStore
from shoal.engine.payload_index import INDEX_MAX_FRACTION, PayloadIndexConfig, PayloadIndexes
from tests.engine.test_filters import CASES, ROWS, filters, payload, reference

CONFIGS = [{"a": "keyword", "b": "range"}, {"a": "range", "b": "keyword", "c": "keyword"},
           {"a": "bool", "b": "keyword", "c": "range"}]


def _indexed(rows, config):
    store = MetadataStore()
    store.append(rows)
    return store, PayloadIndexes.build(PayloadIndexConfig.from_options(config), store, len(rows))


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(payload, min_size=1, max_size=40), flt=filters, config=st.sampled_from(CONFIGS),
       data=st.data())
def test_index_answers_equal_the_scan(rows, flt, config, data):
    store, indexes = _indexed(rows, config)
    node = compile_filter(flt)
    expected = np.flatnonzero([reference(flt, r) for r in rows])
    estimate = node.estimate(store, indexes)
    if estimate is not None:
        got = node.index_rows(store, indexes)
        assert got.tolist() == expected.tolist()
        assert estimate >= got.size  # an upper bound the planner may trust
    subset = np.array(sorted(data.draw(st.sets(st.integers(0, len(rows) - 1)))), np.int64)
    assert node.mask_at(store, subset).tolist() == node.mask(store)[subset].tolist()


@pytest.mark.parametrize("config, least", list(zip(CONFIGS, (15, 15, 8))), ids=str)
def test_fixed_cases_through_the_indexes(config, least):
    """Every operator on every kind of value; the indexes answer a good share of them (most cases
    are on field a: a bool index answers only its boolean, null and $exists ones)."""
    store, indexes = _indexed(ROWS, config)
    answered = 0
    for flt in CASES:
        node = compile_filter(flt)
        if node.estimate(store, indexes) is None:
            continue
        answered += 1
        assert node.index_rows(store, indexes).tolist() == [i for i, r in enumerate(ROWS) if reference(flt, r)], flt
    assert answered >= least


def test_subset_evaluation_of_nested_paths():
    rows = [{"n": {"x": 1}}, {"n": [{"x": 2}, {"x": 1}]}, {"n.x": 1}, {"n": 1}, {}, {"n": {"y": 1}}]
    store = MetadataStore()
    store.append(rows)
    for flt in ({"n.x": 1}, {"n.x": {"$exists": False}}, {"n.x": {"$gte": 2}}, {"n.x": {"$in": [2, None]}}):
        node = compile_filter(flt)
        for subset in ([0, 1, 2, 3, 4, 5], [1, 3, 5], [2], []):
            sel = np.array(subset, np.int64)
            assert node.mask_at(store, sel).tolist() == [node.matches(rows[i]) for i in subset]


def test_conjunction_is_driven_by_the_most_selective_index():
    rows = [{"tag": f"t{i % 50}", "year": 1990 + i % 30, "g": i % 7} for i in range(3000)]
    store, indexes = _indexed(rows, {"tag": "keyword", "year": "range"})
    node = compile_filter({"tag": "t3", "year": {"$gte": 2000}, "g": {"$ne": 2}})
    assert node.estimate(store, indexes) == 60  # tag t3: 60 rows; year >= 2000 would be 2000
    want = [i for i, r in enumerate(rows) if r["tag"] == "t3" and r["year"] >= 2000 and r["g"] != 2]
    assert node.index_rows(store, indexes).tolist() == want
    assert compile_filter({"$or": [{"tag": "t3"}, {"g": 1}]}).estimate(store, indexes) is None  # g: not indexed
    assert compile_filter({"$or": [{"tag": "t3"}, {"year": 1990}]}).estimate(store, indexes) == 160
    between = compile_filter({"year": {"$gte": 2000, "$lt": 2002}, "tag": {"$in": ["t1", "t2", "t3", "t4"]}})
    assert between.estimate(store, indexes) == 200  # the two bounds join into one span of the sorted years
    assert between.index_rows(store, indexes).tolist() == [
        i for i, r in enumerate(rows) if 2000 <= r["year"] < 2002 and r["tag"] in ("t1", "t2", "t3", "t4")]


@pytest.mark.parametrize("bad, message", [
    ({"tag": "bitmap"}, "must be one of keyword, range"),
    ({"a.b": "keyword"}, "nested paths are not indexed"),
    ({"$a": "range"}, "not an indexable field name"),
    (["tag"], "must be a dict"),
])
def test_bad_declarations_are_refused(bad, message):
    with pytest.raises(InvalidArgumentError, match=message):
        shoal.Database().create_collection("c", dim=2, payload_indexes=bad)


def _payload(i):
    return {"tag": f"t{i % 40}", "year": 1990 + i % 30, "g": i % 11, **({"tag": ["t1", "x"]} if i % 97 == 0 else {})}


def _fill(col, n, start=0):
    rng = np.random.default_rng(start)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    for s in range(0, n, 250):  # several calls, so the growing segment seals at flush_rows
        ids = list(range(start + s, start + min(n, s + 250)))
        col.upsert(ids, x[s:s + 250], [_payload(i) for i in ids])


FILTERS = [{"tag": "t3"}, {"tag": {"$in": ["t1", "t7"]}}, {"year": {"$gte": 2017}}, {"year": 1995},
           {"tag": "t3", "year": {"$lt": 2000}}, {"$or": [{"tag": "t5"}, {"year": {"$gt": 2018}}]},
           {"tag": "x"}, {"tag": "t3", "g": {"$ne": 3}}, {"g": 4}, {"tag": {"$nin": ["t1"]}, "year": 1991}]


def _assert_same_answers(indexed, plain, queries, expect_index=True):
    sources = set()
    for flt in FILTERS:
        a = indexed.search(queries, k=7, filter=flt, explain=True)
        b = plain.search(queries, k=7, filter=flt)
        assert [r.ids for r in a] == [r.ids for r in b], flt
        assert indexed.count(flt) == plain.count(flt), flt
        sources |= {p["filter_source"] for p in a[0].plan}
    assert ("payload index" in sources) == expect_index


def test_collection_answers_equal_and_honour_deletes():
    opts = dict(dim=8, metric="l2", optimizer={"background": False}, _flush_rows=500)
    indexed = Collection("ix", payload_indexes={"tag": "keyword", "year": "range"}, **opts)
    plain = Collection("plain", **opts)
    for col in (indexed, plain):
        _fill(col, 2600)
        col.delete(list(range(0, 2600, 3)))
        col.delete(filter={"tag": "t9"})
    queries = np.random.default_rng(7).standard_normal((3, 8)).astype(np.float32)
    _assert_same_answers(indexed, plain, queries)
    assert indexed.describe()["payload_indexes"] == {"tag": "keyword", "year": "range"}
    for col in (indexed, plain):
        col.optimize()  # merged segments get indexes rebuilt from their columns
        col.delete(list(range(1, 2600, 5)))
    assert all(s.payload_indexes is not None for s in indexed._shard.segments if s.sealed)
    _assert_same_answers(indexed, plain, queries)


def test_indexes_persist_and_survive_reopen_and_merges(tmp_path):
    queries = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32)
    with shoal.Database(tmp_path / "db", flush_rows=700) as db:
        col = db.create_collection("ix", dim=8, metric="l2", payload_indexes={"tag": "keyword", "year": "range"},
                                   optimizer={"background": False})
        _fill(col, 2000)
        col.delete(list(range(5, 2000, 4)))
        col.flush()
    with shoal.Database(tmp_path / "db") as db:
        col = db.get_collection("ix")
        sealed = [s for s in col._shard.segments if s.sealed]
        assert len(sealed) == 3
        for seg in sealed:  # read from the rows file, memory-mapped, not rebuilt
            assert isinstance(seg.payload_indexes.by_field["tag"].rows, np.memmap)
        plain = shoal.Database().create_collection("plain", dim=8, metric="l2")
        _fill(plain, 2000)
        plain.delete(list(range(5, 2000, 4)))
        _assert_same_answers(col, plain, queries)
        _fill(col, 300, start=5000)
        _fill(plain, 300, start=5000)
        col.optimize()
        assert db.get_or_create_collection("ix", dim=8, payload_indexes={"year": "range", "tag": "keyword"}) is col
        with pytest.raises(CollectionConfigMismatchError, match="payload_indexes"):
            db.get_or_create_collection("ix", dim=8, payload_indexes={"tag": "keyword"})
    with shoal.Database(tmp_path / "db") as db:
        col = db.get_collection("ix")
        assert len([s for s in col._shard.segments if s.sealed]) == 1
        _assert_same_answers(col, plain, queries)


def test_segment_without_stored_indexes_builds_them(tmp_path):
    """A segment written before payload indexes existed gets them built when opened."""
    from shoal.engine.payload_index import attach_payload_indexes

    col = shoal.Database().create_collection("c", dim=8, metric="l2", payload_indexes={"tag": "keyword"},
                                             optimizer={"background": False})
    _fill(col, 300)
    col.flush()
    seg = col._shard.segments[0]
    seg.payload_indexes = None
    attach_payload_indexes(seg, seg.payload_config, None)
    assert seg.payload_indexes.kinds() == {"tag": "keyword"}


def test_broad_filters_scan():
    """Past INDEX_MAX_FRACTION of a segment's rows the column scan is cheaper, so it is used."""
    col = shoal.Database().create_collection("c", dim=8, metric="l2", payload_indexes={"year": "range"},
                                             optimizer={"background": False})
    _fill(col, 1000)
    col.flush()
    broad = {"year": {"$gte": 1990 + int(30 * (1 - 2 * INDEX_MAX_FRACTION))}}
    narrow = {"year": 2019}
    q = np.zeros(8, np.float32)
    assert col.explain(q, filter=broad)[0]["filter_source"] == "scan"
    assert col.explain(q, filter=narrow)[0]["filter_source"] == "payload index"
