"""shoal.cluster on a local Ray instance: same results and errors as a single collection, failover.

One Ray instance for the module (conftest); replicas are real actor processes, killed with
``ray.kill`` (Ray restarts them, or not with ``no_restart=True``).
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import shoal
from shoal.engine.errors import (DimensionMismatchError, DuplicateIdError, FilterError, IdNotFoundError,
                                 InvalidArgumentError, InvalidVectorError, ShardUnavailableError, UnavailableError,
                                 UnimplementedError)
from tests.cluster.conftest import IMPLEMENTATIONS
from tests.conftest import assert_knn_equal, brute_force

ray = pytest.importorskip("ray")

DIM = 12
N = 900


def _data(seed: int = 7) -> tuple[list[int], np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, DIM)).astype(np.float32)
    x[100:110] = x[0]  # exact duplicates: ties across shards
    meta = [{"g": i % 7, "tag": "ab"[i % 2], "w": float(i) / N} for i in range(N)]
    return list(range(N)), x, meta


@pytest.fixture(scope="module")
def exact_pair(collection_factory):
    """The same records in a single-node collection and in a 3-shard cluster collection."""
    ids, x, meta = _data()
    pair = {impl: collection_factory(impl, DIM, "l2", "flat", shards=3) for impl in IMPLEMENTATIONS}
    for col in pair.values():
        for start in range(0, N, 300):
            col.upsert(ids[start:start + 300], x[start:start + 300], meta[start:start + 300])
    return pair, x


def _as_arrays(results, k):
    d = np.full((len(results), k), 1e30)  # padding, finite so tie groups compare
    i = np.full((len(results), k), -1)
    for row, r in enumerate(results):
        d[row, :len(r)] = r.distances
        i[row, :len(r)] = r.ids
    return d, i


FILTERS = [None, {"g": 3}, {"g": {"$in": [1, 2]}, "tag": "a"}, {"$or": [{"w": {"$lt": 0.01}}, {"g": 6}]},
           {"w": {"$lt": 0.004}}]  # the last matches 4 rows: fewer than k


@pytest.mark.parametrize("flt", FILTERS, ids=["none", "eq", "in-and", "or", "fewer-than-k"])
def test_exact_search_equals_single_node(exact_pair, flt):
    pair, x = exact_pair
    q = np.random.default_rng(1).normal(size=(6, DIM)).astype(np.float32)
    q[0] = x[0]  # ties at distance 0 between shards
    k = 15
    single = pair["embedded"].search(q, k=k, filter=flt, include=("metadata", "distance", "vector"))
    sharded = pair["ray"].search(q, k=k, filter=flt, include=("metadata", "distance", "vector"))
    for a, b in zip(single, sharded):
        assert len(a) == len(b)
        np.testing.assert_array_equal(a.distances, b.distances)  # same kernel, same float32 values
        np.testing.assert_array_equal(a.scores, b.scores)
    d_a, i_a = _as_arrays(single, k)
    d_b, i_b = _as_arrays(sharded, k)
    assert_knn_equal(d_b, i_b, d_a, i_a, atol=0.0)
    for a, b in zip(single, sharded):
        by_id = dict(zip(b.ids, zip(b.metadata, b.vectors)))  # ids tied at the k-th place may differ
        for i, m, v in zip(a.ids, a.metadata, a.vectors):
            if i in by_id:
                assert by_id[i][0] == m
                np.testing.assert_array_equal(by_id[i][1], v)
    if flt is None:  # ties: the eleven copies of x[0] are all at distance 0 and come first
        assert set(sharded[0].ids[:11]) == {0, *range(100, 110)}


def test_single_query_and_reads_match(exact_pair):
    pair, x = exact_pair
    a, b = pair["embedded"], pair["ray"]
    one = b.search(x[5], k=3)
    assert isinstance(one, shoal.QueryResult) and one.ids == a.search(x[5], k=3).ids
    assert len(b) == len(a) == N
    assert b.count({"g": 2}) == a.count({"g": 2})
    got_a, got_b = a.get([7, 3, 899, 3]), b.get([7, 3, 899, 3])
    assert got_b.ids == got_a.ids and got_b.metadata == got_a.metadata
    np.testing.assert_array_equal(got_b.vectors, got_a.vectors)
    every_b, every_a = b.search(x[1:3], k=N + 5), a.search(x[1:3], k=N + 5)  # k > n: every row
    assert [len(r) for r in every_b] == [N, N]
    assert_knn_equal(*_as_arrays(every_b, N), *_as_arrays(every_a, N), atol=0.0)
    described = b.describe()
    assert described["count"] == N and described["shards"] == 3 and described["segments"] >= 3
    assert [len(s["replicas"]) for s in described["shard_map"]] == [1, 1, 1]
    assert sum(s["replicas"][0]["count"] for s in described["shard_map"]) == N
    assert {s["replicas"][0]["name"] for s in described["shard_map"]} == {f"shoal/{b.name}/{i}/0" for i in range(3)}
    plan = b.explain(x[0], k=3)
    assert {p["shard"] for p in plan} == {0, 1, 2}


@pytest.mark.parametrize("call, error", [
    (lambda c, x: c.upsert([1], np.zeros((1, DIM + 1))), DimensionMismatchError),
    (lambda c, x: c.upsert([1], np.full((1, DIM), np.nan)), InvalidVectorError),
    (lambda c, x: c.upsert([1, 1], x[:2]), DuplicateIdError),
    (lambda c, x: c.upsert([1, 2], x[:3]), InvalidArgumentError),
    (lambda c, x: c.search(x[0], k=3, filter={"g": {"$near": 1}}), FilterError),
    (lambda c, x: c.search(x[0], k=0), InvalidArgumentError),
    (lambda c, x: c.search(x[0, :3], k=3), DimensionMismatchError),
    (lambda c, x: c.search(x[0], k=3, include=("nope",)), InvalidArgumentError),
    (lambda c, x: c.get([1, 123456]), IdNotFoundError),
    (lambda c, x: c.delete(), InvalidArgumentError),
    (lambda c, x: c.delete(filter={"$bad": 1}), FilterError),
], ids=["dim", "nan", "dup", "lengths", "filter", "k", "query-dim", "include", "get-missing",
        "delete-nothing", "delete-filter"])
def test_errors_are_the_same_and_change_nothing(exact_pair, call, error):
    pair, x = exact_pair
    messages = {}
    for impl, col in pair.items():
        with pytest.raises(error) as info:
            call(col, x)
        messages[impl] = (type(info.value), str(info.value).replace(repr(col.name), "'NAME'"))
        assert len(col) == N
    assert messages["ray"] == messages["embedded"]
    assert pair["ray"].get([1]).ids == [1]


def test_writes_and_deletes_track_single_node(collection_factory):
    """A random sequence of upserts (new and replacing), deletes by id and by filter, in both."""
    rng = np.random.default_rng(3)
    pair = {impl: collection_factory(impl, 6, "cosine", "flat", shards=2) for impl in IMPLEMENTATIONS}
    model: dict[int, int] = {}  # id -> group, what both must hold
    for step in range(25):
        kind = rng.choice(["upsert", "upsert", "delete", "filter"])
        if kind == "upsert" or not model:
            ids = sorted({int(i) for i in rng.integers(0, 400, 40)})
            v = rng.normal(size=(len(ids), 6)).astype(np.float32)
            groups = [int(rng.integers(0, 5)) for _ in ids]
            results = {impl: col.upsert(ids, v, [{"g": g} for g in groups]) for impl, col in pair.items()}
            model.update(zip(ids, groups))
        elif kind == "delete":
            ids = [int(i) for i in rng.choice(sorted(model), min(10, len(model)), replace=False)]
            results = {impl: col.delete(ids) for impl, col in pair.items()}
            for i in ids:
                del model[i]
        else:
            g = int(rng.integers(0, 5))
            results = {impl: col.delete(filter={"g": g}) for impl, col in pair.items()}
            model = {i: gi for i, gi in model.items() if gi != g}
        assert results["ray"] == results["embedded"], (step, kind)
        assert len(pair["ray"]) == len(pair["embedded"]) == len(model)
    assert pair["ray"].get(sorted(model)).metadata == [{"g": model[i]} for i in sorted(model)]
    q = rng.normal(size=(5, 6)).astype(np.float32)
    a, b = pair["embedded"].search(q, k=20), pair["ray"].search(q, k=20)
    assert_knn_equal(*_as_arrays(b, 20), *_as_arrays(a, 20), atol=1e-6)


def test_approximate_recall_floor(collection_factory):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2000, 16)).astype(np.float32)
    q = rng.normal(size=(50, 16)).astype(np.float32)
    ref_d, ref_i = brute_force(q, x, 10, "l2")
    recalls = {}
    for impl in IMPLEMENTATIONS:
        col = collection_factory(impl, 16, "l2", "hnsw", shards=2)
        col.upsert(list(range(2000)), x)
        col.optimize()
        res = col.search(q, k=10, params={"ef_search": 32})
        recalls[impl] = np.mean([len(set(r.ids) & set(ref)) / 10 for r, ref in zip(res, ref_i.tolist())])
    assert recalls["ray"] >= 0.9, recalls
    assert recalls["ray"] >= recalls["embedded"] - 0.03, recalls  # each shard searches a smaller graph


# ---------------------------------------------------------------------- record API
def _mixed_records(n_int: int = 200, n_str: int = 60, seed: int = 21):
    """Int and string ids in a shuffled order, so every shard holds both kinds."""
    rng = np.random.default_rng(seed)
    ids = [*range(0, 2 * n_int, 2), *(f"k{i:03d}" for i in range(n_str))]
    ids = [ids[i] for i in rng.permutation(len(ids))]
    x = rng.normal(size=(len(ids), DIM)).astype(np.float32)
    meta = [{"grp": i % 4, "n": {"x": i % 3}, "keep": i} for i in range(len(ids))]
    return ids, x, meta


def _same_records(a, b):
    assert b.ids == a.ids and b.metadata == a.metadata
    if a.vectors is None:
        assert b.vectors is None
    else:
        np.testing.assert_array_equal(b.vectors, a.vectors)


@pytest.fixture(scope="module")
def records_pair(collection_factory):
    ids, x, meta = _mixed_records()
    pair = {impl: collection_factory(impl, DIM, "l2", "flat", shards=3) for impl in IMPLEMENTATIONS}
    for col in pair.values():
        col.upsert(ids[:150], x[:150], meta[:150])
        col.upsert(ids[150:], x[150:], meta[150:])
    return pair, ids


@pytest.mark.parametrize("flt", [None, {"grp": 1}, {"n.x": {"$in": [0, 2]}}, {"grp": 9}],
                         ids=["all", "eq", "nested-in", "none-match"])
def test_get_and_scroll_without_ids_match_single_node(records_pair, flt):
    """Id order across 3 shards: get with limit/offset, scroll page by page and iter equal the single collection's."""
    pair, _ = records_pair
    a, b = pair["embedded"], pair["ray"]
    for limit, offset in ((None, 0), (7, 0), (25, 40), (0, 3), (1000, 5), (None, 250)):
        for include in (("metadata", "vector"), ()):
            _same_records(a.get(filter=flt, limit=limit, offset=offset, include=include),
                          b.get(filter=flt, limit=limit, offset=offset, include=include))
    for limit in (1, 37, 400):
        cursors = {}
        for impl, col in pair.items():
            cursor, pages = None, []
            while True:
                page = col.scroll(filter=flt, limit=limit, cursor=cursor, include=("metadata", "vector"))
                pages.append(page)
                cursor = page.next_cursor
                if cursor is None:
                    break
            cursors[impl] = pages
        assert [p.next_cursor for p in cursors["ray"]] == [p.next_cursor for p in cursors["embedded"]]
        for pa, pb in zip(cursors["embedded"], cursors["ray"]):
            _same_records(pa.records, pb.records)
    assert [r.id for r in b.iter(batch_size=16, filter=flt)] == [r.id for r in a.iter(batch_size=16, filter=flt)]


def test_get_by_ids_exists_and_their_errors_match_single_node(records_pair):
    pair, ids = records_pair
    a, b = pair["embedded"], pair["ray"]
    sel = [ids[5], "nope", ids[1], ids[5], ids[200], 10**6, ids[3]]
    for kwargs in ({"missing": "skip"}, {"missing": "skip", "filter": {"grp": {"$ne": 2}}},
                   {"missing": "skip", "offset": 1, "limit": 2}, {"missing": "skip", "include": ("vector",)}):
        _same_records(a.get(sel, **kwargs), b.get(sel, **kwargs))
    present = [i for i in sel if i not in ("nope", 10**6)]
    _same_records(a.get(present, filter={"grp": 1}), b.get(present, filter={"grp": 1}))
    assert b.exists(sel) == a.exists(sel) and b.exists([]) == []
    for call in (lambda c: c.get(sel), lambda c: c.update(sel[:2], metadata={"x": 1}),
                 lambda c: c.get(limit=-1), lambda c: c.scroll(cursor=2.5), lambda c: c.get(missing="maybe"),
                 lambda c: c.set_metadata(ids=[1], values={"$x": 1}), lambda c: c.search_range(np.zeros(DIM), -1.0, limit=0)):
        messages = []
        for impl, col in pair.items():
            with pytest.raises(shoal.ShoalError) as info:
                call(col)
            messages.append((type(info.value), str(info.value).replace(repr(col.name), "'NAME'")))
        assert messages[0] == messages[1]


def test_search_range_group_by_and_recommend_match_single_node(records_pair):
    pair, ids = records_pair
    a, b = pair["embedded"], pair["ray"]
    q = np.random.default_rng(4).normal(size=(3, DIM)).astype(np.float32)
    radius = float(np.quantile(a.search(q[0], k=len(ids), include=("distance",)).distances, 0.2))
    for flt, limit in ((None, None), ({"grp": 2}, None), (None, 5)):
        for ra, rb in zip(a.search_range(q, radius, filter=flt, limit=limit), b.search_range(q, radius, filter=flt,
                                                                                          limit=limit)):
            assert rb.ids == ra.ids and rb.metadata == ra.metadata  # no ties in random data
            np.testing.assert_array_equal(rb.distances, ra.distances)
    groups_a = a.search(q, k=3, group_by="n.x", group_size=4)
    groups_b = b.search(q, k=3, group_by="n.x", group_size=4)
    assert [[(g.value, g.hits.ids) for g in row] for row in groups_b] == \
        [[(g.value, g.hits.ids) for g in row] for row in groups_a]
    cut = float(a.search(q[1], k=10).scores[6])
    assert b.search(q[1], k=10, score_threshold=cut).ids == a.search(q[1], k=10, score_threshold=cut).ids
    rec = dict(positive=[ids[0], ids[7], q[2]], negative=[ids[9]], k=6, filter={"grp": {"$ne": 3}})
    assert b.recommend(**rec).ids == a.recommend(**rec).ids
    with pytest.raises(UnimplementedError, match="hybrid"):
        b.search(text="anything")


def test_partial_updates_match_single_node(collection_factory):
    """update / set_metadata / delete_metadata_keys across 3 shards give the single collection's counts
    and records; an update naming a missing id on any shard changes nothing anywhere."""
    ids, x, meta = _mixed_records(seed=5)
    pair = {impl: collection_factory(impl, DIM, "cosine", "flat", shards=3) for impl in IMPLEMENTATIONS}
    new = np.random.default_rng(6).normal(size=(40, DIM)).astype(np.float32)
    steps = [
        lambda c: c.upsert(ids, x, meta),
        lambda c: c.update(ids[:40], vectors=new),
        lambda c: c.update(ids[40:60], metadata={"only": 1}),
        lambda c: c.update(ids[60:63], vectors=new[:3], metadata=[{"v": 1}, {"v": 2}, {"v": 3}]),
        lambda c: c.set_metadata(filter={"grp": 2}, values={"flag": True, "keep": -1}),
        lambda c: c.set_metadata(ids=ids[::9] + ["ghost"], filter={"n.x": 1}, values={"nine": 9}),
        lambda c: c.delete_metadata_keys(ids=ids[::7] + ["ghost"], keys=["keep", "absent"]),
        lambda c: c.delete_metadata_keys(filter={"flag": True}, keys=["n"]),
        lambda c: c.update([], metadata={"x": 1}),
    ]
    for step, change in enumerate(steps):
        assert change(pair["ray"]) == change(pair["embedded"]), step
    before = pair["ray"].get(include=("metadata", "vector"))
    _same_records(pair["embedded"].get(include=("metadata", "vector")), before)
    everywhere = [i for i in ids if isinstance(i, int)][:30] + ["ghost"]  # ids on every shard, one missing
    with pytest.raises(IdNotFoundError, match="ghost"):
        pair["ray"].update(everywhere, metadata={"lost": True})
    _same_records(before, pair["ray"].get(include=("metadata", "vector")))
    q = np.random.default_rng(8).normal(size=(4, DIM)).astype(np.float32)
    for ra, rb in zip(pair["embedded"].search(q, k=12), pair["ray"].search(q, k=12)):
        assert rb.ids == ra.ids and rb.metadata == ra.metadata


def test_rename_keeps_data_and_replicas(cluster_db):
    from shoal.engine.errors import CollectionNotFoundError

    col = cluster_db.create_collection("ren-a", 4, "l2", "flat", shards=2)
    col.upsert([1, 2, "x"], np.eye(3, 4, dtype=np.float32), [{"v": 1}, {"v": 2}, {"v": 3}])
    renamed = cluster_db.rename_collection("ren-a", "ren-b")
    assert renamed.name == "ren-b" and renamed.get([1, 2, "x"]).metadata == [{"v": 1}, {"v": 2}, {"v": 3}]
    with pytest.raises(CollectionNotFoundError, match="renamed to 'ren-b'"):
        col.count()
    names = {r["name"] for s in renamed.describe()["shard_map"] for r in s["replicas"]}
    assert names == {"shoal/ren-a/0/0", "shoal/ren-a/1/0"}  # the actors and their data did not move
    assert "ren-a" not in cluster_db.list_collections() and "ren-b" in cluster_db.list_collections()
    again = cluster_db.create_collection("ren-a", 4, "l2", "flat", shards=1)  # the name is free again
    assert again.key == "ren-a.1" and again.count() == 0 and renamed.count() == 3
    renamed.upsert([7], np.ones((1, 4), np.float32))
    assert again.count() == 0 and renamed.count() == 4
    for name in ("ren-a", "ren-b"):
        cluster_db.drop_collection(name)
    with pytest.raises(CollectionNotFoundError, match="dropped"):
        renamed.search(np.ones(4), k=1)

# ---------------------------------------------------------------------- failover
def _replica(name: str, shard: int, replica: int):
    return ray.get_actor(f"shoal/{name}/{shard}/{replica}", namespace="shoal")


def _wait_gone(name: str, shard: int, replica: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get(_replica(name, shard, replica).info.remote(), timeout=2)
        except Exception:
            return
        time.sleep(0.05)
    raise AssertionError("replica did not die")


@pytest.fixture(scope="module")
def replicated(cluster_db):
    col = cluster_db.create_collection("repl", DIM, "l2", "flat", shards=2, replicas=2)
    return cluster_db, col


def _same_on_every_replica(col, q, k=10):
    for shard in range(col.shards):
        answers = [ray.get(_replica(col.name, shard, r).read.remote("search", q, k, None, None, ("metadata", "distance")))
                   for r in range(col.replicas)]
        infos = [ray.get(_replica(col.name, shard, r).info.remote()) for r in range(col.replicas)]
        assert len({(i["epoch"], i["seq"], i["count"]) for i in infos}) == 1, infos
        for other in answers[1:]:
            for a, b in zip(answers[0], other):
                assert a.ids == b.ids
                np.testing.assert_array_equal(a.distances, b.distances)
    return infos


#: Failed in two fresh-clone CI runs (5a54f49): a demote sent to the killed follower's old process ran in
#: its restarted one just after it rejoined, and the recovery it asked for was lost (test_replica_recovery.py).
def test_kill_replicas_during_ingest(replicated):
    db, col = replicated
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3000, DIM)).astype(np.float32)
    acked: list[int] = []
    failures: list[BaseException] = []

    kills = {1000: (0, 1), 2000: (1, 0)}  # at these rows: a follower, then the leader of shard 1

    def ingest():  # kills at fixed points of the ingest, however fast the machine is
        for start in range(0, 3000, 50):
            if start in kills:
                ray.kill(_replica(col.name, *kills.pop(start)), no_restart=False)
            try:
                col.upsert(list(range(start, start + 50)), x[start:start + 50], [{"b": start}] * 50)
                acked.extend(range(start, start + 50))
            except UnavailableError as exc:  # allowed only while a whole shard is down: never here
                failures.append(exc)

    writer = threading.Thread(target=ingest)
    writer.start()
    searched = 0
    while writer.is_alive():
        if len(acked) >= 5:  # searches keep answering
            res = col.search(x[:3], k=5)
            assert all(len(r) == 5 for r in res)
            searched += 1
        time.sleep(0.01)  # (a busy loop here took CPU from the writer and the restarts on 2 cores)
    writer.join()
    assert not kills and searched > 0 and not failures, failures
    db.wait_ready(col.name, timeout=120)
    assert len(col) == len(acked) == 3000  # no acknowledged write lost
    got = col.get(acked)
    np.testing.assert_array_equal(got.vectors, x[acked])
    infos = _same_on_every_replica(col, x[:4])
    shard_map = db.describe(col.name)["shard_map"]
    assert shard_map[1]["leader"] == 1  # replica 1 took over from the killed leader
    assert all(r["state"] == "serving" for s in shard_map for r in s["replicas"])
    restarted = [r for s in shard_map for r in s["replicas"] if r["catchup"]["entries"] or r["catchup"]["snapshots"]]
    assert restarted, shard_map  # the restarted replicas caught up from a peer
    assert infos


def test_kill_every_replica_of_a_shard(replicated):
    db, col = replicated
    x = np.random.default_rng(5).normal(size=(3000, DIM)).astype(np.float32)
    before = col.search(x[:4], k=8)
    for r in range(col.replicas):
        ray.kill(_replica(col.name, 1, r), no_restart=True)
    for r in range(col.replicas):
        _wait_gone(col.name, 1, r)
    with pytest.raises(ShardUnavailableError, match=r"shard 1 of collection 'repl'") as info:
        col.search(x[:4], k=8)
    assert info.value.grpc_code == "UNAVAILABLE"
    with pytest.raises(ShardUnavailableError, match="shard 1"):
        col.count()
    from shoal.cluster.routing import shard_of

    zero = [i for i in range(5000, 5200) if shard_of(i, 2) == 0][:20]
    col.upsert(zero, x[:20])  # shard 0 still takes writes
    db.repair(col.name)  # recreated under the same names: reopen their own data, elect a leader
    after = col.search(x[:4], k=8)
    for a, b in zip(before, after):
        kept = [(i, d) for i, d in zip(b.ids, b.distances) if i not in zero]
        assert [i for i, _ in kept] == [i for i in a.ids if i in dict(kept)]
    assert len(col) == 3000 + 20
    _same_on_every_replica(col, x[:4])


def test_lost_replica_directory_is_rebuilt_by_snapshot(replicated, tmp_path):
    db, col = replicated
    import shutil
    from pathlib import Path

    ray.kill(_replica(col.name, 0, 1), no_restart=True)
    _wait_gone(col.name, 0, 1)
    shutil.rmtree(Path(db.path) / col.name / "0" / "1")  # the node lost its disk
    x = np.random.default_rng(9).normal(size=(3000, DIM)).astype(np.float32)
    start = 0
    while ray.get(_replica(col.name, 0, 0).info.remote())["tail_from"] == 0:  # until the tail (256 KiB here)
        col.upsert(list(range(9000 + start, 9500 + start)), x[start % 3000:start % 3000 + 500])  # no longer
        start += 500  # reaches back to the start: a snapshot is needed
    db.repair(col.name)
    info = ray.get(_replica(col.name, 0, 1).info.remote())
    assert info["catchup"]["snapshots"] >= 1 and info["state"] == "serving"
    _same_on_every_replica(col, x[:3])


def test_served_over_grpc(replicated):
    """The unchanged gRPC service in front of a RayDatabase; a client sees the same API."""
    from shoal.rpc.server import build_server

    db, col = replicated
    server = build_server(db, "127.0.0.1", 0)
    try:
        client = shoal.Client(f"127.0.0.1:{server.port}")
        remote_col = client.get_collection(col.name)
        x = np.random.default_rng(5).normal(size=(3, DIM)).astype(np.float32)
        assert [r.ids for r in remote_col.search(x, k=5)] == [r.ids for r in col.search(x, k=5)]
        page = remote_col.scroll(limit=7, include=())  # the record API over the wire, merged across shards
        assert page.records.ids == col.scroll(limit=7, include=()).records.ids and page.next_cursor is not None
        created = client.create_collection("served", dim=4, metric="l2", index="flat", shards=1, replicas=1)
        created.upsert([1, 2, 3], np.eye(3, 4, dtype=np.float32))
        assert db.get_collection("served").count() == 3
        with pytest.raises(IdNotFoundError):
            remote_col.get([10**9])
        client.close()
        db.drop_collection("served")
        assert "served" not in db.list_collections()
    finally:
        server.stop(0, close_db=False)


def test_serve_ray_needs_a_root():
    from shoal.rpc.cli import open_ray_database

    with pytest.raises(InvalidArgumentError, match="--ray needs --data"):
        open_ray_database("local", None)


def test_whole_cluster_restart_reopens_from_disk(replicated):
    """Every replica and the catalog killed for good: a new RayDatabase on the same root finds the
    collection in CATALOG.json and the replicas reopen their own data (nothing acknowledged is lost)."""
    from shoal.cluster import RayDatabase

    db, col = replicated
    count = len(col)
    probe = np.random.default_rng(5).normal(size=(3, DIM)).astype(np.float32)
    before = col.search(probe, k=6)
    victims = [ray.get_actor("shoal/catalog", namespace="shoal")]
    victims += [_replica(col.name, s, r) for s in range(col.shards) for r in range(col.replicas)]
    for actor in victims:
        ray.kill(actor, no_restart=True)
    for s in range(col.shards):
        for r in range(col.replicas):
            _wait_gone(col.name, s, r)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the catalog's name is released asynchronously too
        try:
            ray.get_actor("shoal/catalog", namespace="shoal")
        except ValueError:
            break
        time.sleep(0.05)
    again = RayDatabase(db.path, unavailable_after=3.0, bootstrap_wait=3.0)
    assert col.name in again.list_collections()
    reopened = again.get_collection(col.name)
    again.wait_ready(col.name)
    assert len(reopened) == count
    assert [r.ids for r in reopened.search(probe, k=6)] == [r.ids for r in before]
