"""List-valued payload fields stored through offsets: on list-heavy payloads the columns, their
stored and merged copies and the payload indexes answer exactly as the filter tests' reference."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shoal
from shoal.engine.filters import compile_filter
from shoal.engine.metadata import COMPLEX, LIST, STR, MetadataStore
from shoal.engine.payload_index import PayloadIndexConfig, PayloadIndexes
from tests.engine.test_filters import FIELDS, _same, filters, reference, scalar

#: Mostly lists (empty, repeated values, long), some scalars, and a few lists that stay complex
#: (a nested list, a dict inside, a big int) so both paths meet in one column.
complex_list = st.sampled_from([[["x"]], [{"k": 1}, "x"], [2 ** 60, 1], [[1, 2], 3]])
list_value = st.one_of(st.lists(scalar, max_size=6), st.lists(st.sampled_from(["x", "y"]), min_size=2, max_size=4))
value = st.one_of(list_value, list_value, list_value, scalar, complex_list)
payload = st.dictionaries(st.sampled_from(FIELDS), value, max_size=3)
CONFIGS = [{"a": "keyword", "b": "range", "c": "bool"}, {"a": "range", "b": "bool", "c": "keyword"},
           {"a": "bool", "b": "keyword"}]


def _store(rows):
    store = MetadataStore()
    store.append(rows)
    return store


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(payload, min_size=1, max_size=30), flt=filters, data=st.data())
def test_list_columns_filter_as_the_reference(rows, flt, data):
    store = _store(rows)
    node = compile_filter(flt)
    expected = [reference(flt, r) for r in rows]
    assert node.mask(store).tolist() == expected
    subset = np.array(sorted(data.draw(st.sets(st.integers(0, len(rows) - 1)))), np.int64)
    assert node.mask_at(store, subset).tolist() == [expected[i] for i in subset.tolist()]


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(payload, min_size=1, max_size=25), more=st.lists(payload, max_size=10), flt=filters)
def test_lists_survive_storage_and_merges(rows, more, flt):
    """Lists come back as written (element types too) from the columns, a stored copy, a merge's
    reversed gather and an extend; filters answer the same on each."""
    store = _store(rows)
    stored = MetadataStore.from_arrays(*store.to_arrays())
    node = compile_filter(flt)
    for copy in (store, stored):
        assert all(map(_same, copy.payloads(np.arange(len(rows))), rows))
        assert node.mask(copy).tolist() == [reference(flt, r) for r in rows]
    merged = stored.take(np.arange(len(rows))[::-1])
    merged.extend(_store(more))
    want = rows[::-1] + more
    assert all(map(_same, merged.payloads(np.arange(len(want))), want))
    assert node.mask(merged).tolist() == [reference(flt, r) for r in want]
    again = MetadataStore.from_arrays(*merged.to_arrays())
    assert node.mask(again).tolist() == [reference(flt, r) for r in want]


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(payload, min_size=1, max_size=40), flt=filters, config=st.sampled_from(CONFIGS))
def test_indexes_over_list_fields_equal_the_scan(rows, flt, config):
    store = _store(rows)
    for copy in (store, MetadataStore.from_arrays(*store.to_arrays())):
        indexes = PayloadIndexes.build(PayloadIndexConfig.from_options(config), copy, len(rows))
        indexes = PayloadIndexes.from_arrays(*indexes.to_arrays())  # the stored form too
        estimate = compile_filter(flt).estimate(copy, indexes)
        if estimate is not None:
            got = compile_filter(flt).index_rows(copy, indexes)
            assert got.tolist() == [i for i, r in enumerate(rows) if reference(flt, r)]
            assert estimate >= got.size


def test_scalar_lists_are_columns_not_python_values():
    rows = [{"tags": ["a", "b", "a"], "n": [1, 2.5, None, True]}, {"tags": "a"}, {"tags": []},
            {"tags": [["a"]]}, {"tags": [2 ** 60]}]
    store = _store(rows)
    tags = store.column("tags")
    assert tags.kind.tolist()[:5] == [LIST, STR, LIST, COMPLEX, COMPLEX]  # a nested list, a big int
    assert sorted(tags.complex_rows) == [3, 4]
    assert tags.lists.rows[: tags.lists.m].tolist() == [0, 2]
    assert tags.lists.offsets[: tags.lists.m + 1].tolist() == [0, 3, 3]
    arrays, meta = store.to_arrays()
    assert "[\"a\"," not in str(meta)  # the scalar lists are arrays, not JSON in the header
    assert all(map(_same, MetadataStore.from_arrays(arrays, meta).payloads(np.arange(5)), rows))


def test_keyword_index_lists_a_row_under_every_value_it_holds():
    rows = [{"tags": ["a", "b", "a"]}, {"tags": "a"}, {"tags": ["c"]}, {"tags": ["b", "c"]}, {}]
    store = _store(rows)
    indexes = PayloadIndexes.build(PayloadIndexConfig.from_options({"tags": "keyword"}), store, len(rows))
    ix = indexes.by_field["tags"]
    assert ix.list_rows.tolist() == [0, 0, 3, 2, 3]  # codes a, b, c: [0], [0, 3], [2, 3]; a repeated once
    for flt, want in (({"tags": "a"}, [0, 1]), ({"tags": {"$in": ["b", "c"]}}, [0, 2, 3]),
                      ({"tags": {"$gte": "a"}}, [1])):  # a list never matches a range
        node = compile_filter(flt)
        assert node.index_rows(store, indexes).tolist() == want
        assert node.mask(store).nonzero()[0].tolist() == want


@pytest.mark.parametrize("config", [None, {"tags": "keyword", "scores": "range"}])
def test_list_fields_through_a_durable_collection(tmp_path, config):
    """Lists written, sealed, merged and reopened come back as written; filters equal the reference."""
    rng = np.random.default_rng(0)
    rows = [{"tags": [f"t{j}" for j in rng.choice(30, size=int(rng.integers(0, 5)), replace=False)],
             "scores": [int(v) for v in rng.integers(0, 20, size=2)], "g": i % 3} for i in range(1500)]
    with shoal.Database(tmp_path / "db", flush_rows=400) as db:
        col = db.create_collection("c", dim=4, metric="l2", optimizer={"background": False},
                                   **({"payload_indexes": config} if config else {}))
        col.upsert(list(range(1500)), rng.standard_normal((1500, 4)).astype(np.float32), rows)
        col.delete(list(range(0, 1500, 7)))
        col.optimize()
    live = {i: r for i, r in enumerate(rows) if i % 7}
    with shoal.Database(tmp_path / "db") as db:
        col = db.get_collection("c")
        for flt in ({"tags": "t3"}, {"tags": {"$in": ["t1", "t2"]}, "g": 1}, {"scores": 4},
                    {"tags": {"$nin": ["t5"]}, "scores": {"$in": [1, 2]}}, {"tags": {"$exists": True}}):
            want = sorted(i for i, r in live.items() if reference(flt, r))
            assert sorted(r.id for r in col.get(filter=flt, limit=2000)) == want, flt
            assert col.count(flt) == len(want)
        got = col.get(ids=[1, 2, 3])
        assert [r.metadata for r in got] == [rows[1], rows[2], rows[3]]


def test_null_missing_and_booleans_through_the_indexes():
    """Each kind answers null / missing / $exists from its own rows; a bool index answers booleans
    (scalars and list elements); the planner gets counts for all of them."""
    rows = [{"f": True}, {"f": [False, None]}, {"f": None}, {}, {"f": "s"}, {"f": [True]}, {"f": 1}, {"g": 1}]
    store = _store(rows)
    for kind in ("keyword", "range", "bool"):
        indexes = PayloadIndexes.build(PayloadIndexConfig.from_options({"f": kind}), store, len(rows))
        for flt in ({"f": None}, {"f": {"$exists": False}}, {"f": {"$exists": True}}, {"f": {"$in": [None]}}):
            node = compile_filter(flt)
            want = [i for i, r in enumerate(rows) if reference(flt, r)]
            assert node.estimate(store, indexes) >= len(want)
            assert node.index_rows(store, indexes).tolist() == want, (kind, flt)
    indexes = PayloadIndexes.build(PayloadIndexConfig.from_options({"f": "bool"}), store, len(rows))
    for flt, want in (({"f": True}, [0, 5]), ({"f": False}, [1]), ({"f": {"$in": [True, None]}}, [0, 1, 2, 3, 5, 7])):
        assert compile_filter(flt).index_rows(store, indexes).tolist() == want
    assert compile_filter({"f": 1}).estimate(store, indexes) is None  # a number: not what a bool index holds
