"""Engine side of the record API (issue 19): nested-path filter semantics against the reference,
range search through every index family, scroll stability under random writes, partial updates
surviving kill -9, durable rename. The behaviour shared with the server is in tests/contract."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shoal
from shoal.engine.filters import compile_filter
from shoal.engine.metadata import MetadataStore, check_metadata
from tests.conftest import brute_force

# ------------------------------------------------------------------ nested paths: mask == reference
leaf = st.one_of(st.integers(-2, 2), st.sampled_from(["x", "y"]), st.booleans(), st.none())
inner = st.dictionaries(st.sampled_from(["x", "y"]), st.one_of(leaf, st.lists(leaf, max_size=2)), max_size=2)
payload = st.dictionaries(st.sampled_from(["n", "m", "n.x"]),
                          st.one_of(leaf, inner, st.lists(st.one_of(inner, leaf), max_size=3)), max_size=3)
path = st.sampled_from(["n.x", "n.y", "m.x", "n.x.z", "n"])
clause = st.one_of(
    st.builds(lambda p, v: {p: v}, path, leaf),
    st.builds(lambda p, op, v: {p: {op: v}}, path, st.sampled_from(["$ne", "$gt", "$lte"]), st.integers(-2, 2)),
    st.builds(lambda p, v: {p: {"$in": v}}, path, st.lists(leaf, max_size=2)),
    st.builds(lambda p, v: {p: {"$exists": v}}, path, st.booleans()),
    st.builds(lambda c: {"$not": c}, st.builds(lambda p, v: {p: v}, path, leaf)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(payload, min_size=1, max_size=12), clause)
def test_nested_path_masks_equal_the_reference(rows, flt):
    store = MetadataStore()
    store.append([check_metadata(r) for r in rows])
    node = compile_filter(flt)
    assert node.mask(store).tolist() == [node.matches(r) for r in store.payloads(np.arange(len(store)))]


def test_nested_path_reference_examples():
    rows = [{"n": {"x": 1}}, {"n": [{"x": 2}, {"x": 3}]}, {"n": 5}, {}, {"n.x": 7, "n": {"x": 9}}]
    store = MetadataStore()
    store.append(rows)

    def mask(flt):
        return compile_filter(flt).mask(store).tolist()
    assert mask({"n.x": 1}) == [True, False, False, False, False]
    assert mask({"n.x": 3}) == [False, True, False, False, False]  # any element of a list of dicts
    assert mask({"n.x": 7}) == [False, False, False, False, True]  # the literal dotted key wins
    assert mask({"n.x": {"$exists": False}}) == [False, False, True, True, False]
    assert mask({"n.x": None}) == [False, False, True, True, False]  # missing path = missing field


# ------------------------------------------------------------------ range search per family
@pytest.mark.parametrize("spec, params, exact", [
    ("flat", None, True), ("HNSW8", None, True), ("KDTree", None, True), ("SQ8", None, True),
    ("IVF8,Flat", {"nprobe": 8}, True), ("IVF8,Flat", {"nprobe": 1}, False), ("IVF8,SQ8", {"nprobe": 8}, True),
])
def test_search_range_every_family(spec, params, exact, rng):
    col = shoal.Database().create_collection("r", dim=4, metric="l2", index=spec)
    x = rng.standard_normal((2000, 4)).astype(np.float32)
    col.upsert(list(range(1600)), x[:1600])
    col.optimize()  # one indexed segment ...
    col.upsert(list(range(1600, 2000)), x[1600:])  # ... and a growing one, scanned exactly
    assert any(s["state"] == "indexed" for s in col.describe()["segment_list"]) or spec == "flat"
    q = x[:3] + 0.05
    radius = 0.8
    for qi, res in zip(q, col.search_range(q, radius, params=params, include=("distance",))):
        ref_d, ref_i = brute_force(qi[None], x, 2000, "l2")
        truth = ref_i[0][ref_d[0] < radius].tolist()
        assert (res.distances < radius).all() and list(res.distances) == sorted(res.distances)
        assert set(res.ids) <= set(truth) and len(set(res.ids)) == len(res.ids)
        if exact:
            assert sorted(res.ids) == sorted(truth)
        else:
            assert len(res.ids) >= 0.3 * len(truth)
    filtered = col.search_range(q[0], radius, filter={"$not": {}}, params=params)
    assert len(filtered) == 0


# ------------------------------------------------------------------ scroll under random writes
def test_scroll_stable_under_random_writes(rng):
    col = shoal.Collection("s", dim=2, metric="l2", _flush_rows=64)  # many small segments
    ids = [int(i) for i in rng.choice(10_000, 600, replace=False)] + [f"s{i}" for i in range(200)]
    col.upsert(ids, rng.standard_normal((len(ids), 2)))
    present = set(ids)
    ever = set(ids)
    returned: list = []
    cursor = None
    while True:
        page = col.scroll(limit=int(rng.integers(1, 40)), cursor=cursor, include=())
        returned += page.records.ids
        # random writes between pages: deletes, re-upserts (rows move segments), new ids
        victims = [v for v in rng.choice(sorted(present, key=str), 5, replace=False).tolist()]
        victims = [int(v) if str(v).lstrip("-").isdigit() else v for v in victims]
        col.delete(victims[:2])
        present -= set(victims[:2])
        col.upsert(victims[2:], rng.standard_normal((3, 2)))
        new = [int(v) for v in rng.integers(0, 20_000, 3)] + [f"n{len(returned)}"]
        new = [v for v in dict.fromkeys(new)]
        col.upsert(new, rng.standard_normal((len(new), 2)))
        present |= set(new)
        ever |= set(new)
        if rng.random() < 0.1:
            col.optimize()
        cursor = page.next_cursor
        if cursor is None:
            break
    throughout = set(ids) & present  # never deleted (later deletes only shrink `present`)
    assert len(returned) == len(set(returned)), "a record came twice"
    assert throughout <= set(returned), "a record present throughout was skipped"
    key = [(isinstance(i, str), i) for i in returned]
    assert key == sorted(key) and set(returned) <= ever


# ------------------------------------------------------------------ durability of partial updates
def test_partial_updates_survive_kill_9(tmp_path):
    script = textwrap.dedent(f"""
        import numpy as np, shoal, sys
        db = shoal.Database({str(tmp_path)!r})
        c = db.create_collection("p", dim=2, metric="l2")
        c.upsert([1, 2, 3], np.eye(3, 2), [{{"a": 1}}, {{"a": 2}}, {{"a": 3, "drop": 1}}])
        c.flush()
        c.update([1], vectors=[[5.0, 5.0]])
        c.update([2], metadata={{"b": 2}})
        c.set_metadata(filter={{"a": 3}}, values={{"c": 3}})
        c.delete_metadata_keys(ids=[3], keys=["drop"])
        print("done", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ})
    assert proc.stdout.readline().strip() == "done"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    with shoal.Database(tmp_path) as db:
        got = db.get_collection("p").get([1, 2, 3])
        np.testing.assert_array_equal(got.vectors[0], [5.0, 5.0])
        assert got.metadata == [{"a": 1}, {"b": 2}, {"a": 3, "c": 3}]


def test_durable_rename_and_collection_metadata(tmp_path):
    with shoal.Database(tmp_path) as db:
        c = db.create_collection("old", dim=2, metric="l2", metadata={"team": "search"})
        c.upsert([1, 2], np.eye(2))
        new = db.rename_collection("old", "new")
        with pytest.raises(shoal.CollectionNotFoundError, match="renamed"):
            c.count()
        new.upsert([3], np.ones((1, 2)))
    with shoal.Database(tmp_path) as db:
        assert db.list_collections() == ["new"]
        col = db.get_collection("new")
        assert col.count() == 3 and col.describe()["metadata"] == {"team": "search"}
        assert not (tmp_path / "collections" / "old").exists()
    with shoal.Database(tmp_path, read_only=True) as ro:
        with pytest.raises(shoal.ShoalError):
            ro.rename_collection("new", "other")


def test_group_by_keeps_fetching_until_groups_fill(rng):
    col = shoal.Database().create_collection("g", dim=2, metric="l2")
    x = rng.standard_normal((3000, 2)).astype(np.float32)
    # one dominant group near the query, two rare ones far away
    groups = ["common"] * 2990 + ["rare1"] * 5 + ["rare2"] * 5
    x[2990:] += 50
    col.upsert(list(range(3000)), x, [{"g": g} for g in groups])
    res = col.search(np.zeros(2), k=3, group_by="g", group_size=2)
    assert [g.value for g in res] == ["common", "rare1", "rare2"] or [g.value for g in res][0] == "common"
    assert {g.value for g in res} == {"common", "rare1", "rare2"} and all(len(g.hits) == 2 for g in res)


def test_get_or_create_compares_index_options_and_auto():
    db = shoal.Database()
    db.create_collection("h", dim=8, metric="l2", index="hnsw", M=8)
    assert db.get_or_create_collection("h", dim=8, index="hnsw", M=8).count() == 0
    with pytest.raises(shoal.CollectionConfigMismatchError, match="index option M=8, not 16"):
        db.get_or_create_collection("h", dim=8, M=16)
    db.create_collection("k", dim=3, metric="l2", index="auto")
    assert db.get_or_create_collection("k", dim=3, metric="l2", index="auto").dim == 3


@pytest.mark.parametrize("gather_below", [1, 10 ** 9])  # never / always sort the matches instead of walking
def test_selective_filters_sort_matches_like_the_walk(monkeypatch, rng, gather_below):
    from shoal.engine import records

    monkeypatch.setattr(records, "GATHER_BELOW", gather_below)
    col = shoal.Collection("w", dim=2, metric="l2", _flush_rows=50)
    ids = [int(i) for i in rng.choice(5000, 300, replace=False)] + [f"s{i}" for i in range(100)]
    col.upsert(ids, rng.standard_normal((len(ids), 2)), [{"g": i % 7} for i in range(len(ids))])
    want = sorted((i for j, i in enumerate(ids) if j % 7 == 3), key=lambda e: (isinstance(e, str), e))
    assert col.get(filter={"g": 3}, include=()).ids == want
    assert col.get(filter={"g": 3}, offset=5, limit=9, include=()).ids == want[5:14]
    pages, cursor = [], None
    while True:
        page = col.scroll({"g": 3}, 11, cursor, include=())
        pages += page.records.ids
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == want
