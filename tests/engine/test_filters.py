"""Filter language: vectorised evaluation equals the row-wise reference on random metadata."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal import FilterError
from shoal.engine.filters import compile_filter
from shoal.engine.metadata import MetadataStore

FIELDS = ["a", "b", "c"]
scalar = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, -1.5, 2.0]), st.sampled_from(["x", "y", "z", ""]),
                   st.booleans(), st.none())
value = st.one_of(scalar, st.lists(scalar, max_size=3))
payload = st.dictionaries(st.sampled_from(FIELDS), value, max_size=3)
eq_operand = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, 2.0]), st.sampled_from(["x", "y", "zz"]),
                       st.booleans(), st.none())
range_operand = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, -1.5]), st.sampled_from(["x", "y", "a"]))


def field_clause():
    return st.one_of(
        st.builds(lambda f, v: {f: v}, st.sampled_from(FIELDS), eq_operand),
        st.builds(lambda f, op, v: {f: {op: v}}, st.sampled_from(FIELDS), st.sampled_from(["$eq", "$ne"]), eq_operand),
        st.builds(lambda f, op, v: {f: {op: v}}, st.sampled_from(FIELDS),
                  st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), range_operand),
        st.builds(lambda f, op, v: {f: {op: v}}, st.sampled_from(FIELDS), st.sampled_from(["$in", "$nin"]),
                  st.lists(eq_operand, max_size=3)),
        st.builds(lambda f, v: {f: {"$exists": v}}, st.sampled_from(FIELDS), st.booleans()),
    )


filters = st.recursive(
    field_clause(),
    lambda children: st.one_of(
        st.builds(lambda xs: {"$and": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$or": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda x: {"$not": x}, children),
    ),
    max_leaves=6,
)


def reference(flt, row):
    """A straightforward, independent Python reading of the documented semantics."""
    def eq(stored, v):
        if isinstance(stored, list):
            return any(eq(s, v) for s in stored)
        if isinstance(stored, bool) or isinstance(v, bool):
            return isinstance(stored, bool) and isinstance(v, bool) and stored == v
        if isinstance(stored, (int, float)) and isinstance(v, (int, float)):
            return stored == v
        return type(stored) is type(v) and stored == v

    def field_eq(f, v):
        if f not in row or row[f] is None:
            return v is None
        return eq(row[f], v)

    def rng(f, op, v):
        s = row.get(f)
        if isinstance(v, str):
            if not isinstance(s, str):
                return False
        elif not (isinstance(s, (int, float)) and not isinstance(s, bool)):
            return False
        return {"$gt": s > v, "$gte": s >= v, "$lt": s < v, "$lte": s <= v}[op]

    results = []
    for key, val in flt.items():
        if key == "$and":
            results.append(all(reference(c, row) for c in val))
        elif key == "$or":
            results.append(any(reference(c, row) for c in val))
        elif key == "$not":
            results.append(not reference(val, row))
        elif isinstance(val, dict):
            for op, v in val.items():
                if op == "$eq":
                    results.append(field_eq(key, v))
                elif op == "$ne":
                    results.append(not field_eq(key, v))
                elif op == "$in":
                    results.append(any(field_eq(key, x) for x in v))
                elif op == "$nin":
                    results.append(not any(field_eq(key, x) for x in v))
                elif op == "$exists":
                    results.append((key in row) == v)
                else:
                    results.append(rng(key, op, v))
        else:
            results.append(field_eq(key, val))
    return all(results)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(payload, min_size=1, max_size=30), flt=filters)
def test_vectorised_equals_reference(rows, flt):
    store = MetadataStore()
    store.append(rows)
    node = compile_filter(flt)
    got = node.mask(store)
    expected = np.array([reference(flt, r) for r in rows])
    assert got.tolist() == expected.tolist()
    assert [node.matches(r) for r in rows] == expected.tolist()


def _same(a, b):
    """Equal values of equal types (1 and 1.0 and True are different payload values)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(payload, min_size=1, max_size=20), more=st.lists(payload, max_size=10), flt=filters)
def test_columnar_payloads_round_trip(rows, more, flt):
    """Every value type and the key order survive the columns, a stored copy (to/from arrays),
    and a merge's gather + extend; filters answer the same on each."""
    store = MetadataStore()
    store.append(rows + [{"big": 2 ** 70, "neg": -(2 ** 60), "f": 1.5, "nested": {"x": [1, {"y": None}]}}])
    expected = rows + [{"big": 2 ** 70, "neg": -(2 ** 60), "f": 1.5, "nested": {"x": [1, {"y": None}]}}]
    arrays, meta = store.to_arrays()
    stored = MetadataStore.from_arrays(arrays, meta)
    node = compile_filter(flt)
    for copy in (store, stored):
        assert all(map(_same, copy.payloads(np.arange(len(expected))), expected))
        assert node.mask(copy).tolist() == [node.matches(p) for p in expected]
    merged = stored.take(np.arange(len(expected))[::-1])
    tail = MetadataStore()
    tail.append(more)
    merged.extend(tail)
    want = expected[::-1] + more
    assert len(merged) == len(want) and all(map(_same, merged.payloads(np.arange(len(want))), want))
    assert node.mask(merged).tolist() == [node.matches(p) for p in want]
    returned = merged.payloads(np.array([0]))[0]
    if returned:  # a returned payload is a copy: changing it changes nothing stored
        returned.clear()
        assert _same(merged.payloads(np.array([0]))[0], want[0])


@pytest.mark.parametrize("bad, message", [
    ({"a": {"$foo": 1}}, "unknown operator '\\$foo'"),
    ({"$xor": []}, "unknown operator"),
    ({"$and": []}, "non-empty list"),
    ({"$or": {"a": 1}}, "non-empty list"),
    ({"a": {"$in": 3}}, "takes a list"),
    ({"a": {"$gt": [1]}}, "finite number or a string"),
    ({"a": {"$gt": True}}, "finite number or a string"),
    ({"a": {"$exists": 1}}, "true or false"),
    ({"a": [1, 2]}, "operand must be"),
    ({"a": {}}, "empty operator dict"),
    ({"a": float("nan")}, "operand must be"),
    ([1, 2], "must be a dict"),
    ({1: 2}, "keys must be strings"),
])
def test_malformed_filters(bad, message):
    with pytest.raises(FilterError, match=message):
        compile_filter(bad)
