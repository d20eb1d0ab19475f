"""The service end to end: a real ``shoal serve`` subprocess, real sockets, the client SDK.

Parity: the same operations through ``shoal.Client`` and an embedded ``shoal.Database``
give identical results. Errors: every documented status code, raised back as the
embedded ShoalError class, with nothing changed by a rejected call.
"""
from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import shoal
from shoal.engine import errors
from shoal.rpc.status import ERROR_TRAILER
from shoal.rpc.v1 import points_pb2, search_pb2, service_pb2_grpc, types_pb2
from tests.rpc.conftest import start_server

DIM = 8


def data(n: int, seed: int = 0, dim: int = DIM) -> tuple[list, np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    ids = [f"doc-{i}" if i % 3 == 0 else i for i in range(n)]
    meta = [{"lang": ["en", "de", "fr"][i % 3], "year": 2000 + i % 25, "big": 2 ** 60 + i, "tags": [i % 2, "t"],
             "nested": {"i": i}} for i in range(n)]
    return ids, rng.standard_normal((n, dim)).astype(np.float32), meta


def assert_same_results(a, b) -> None:
    """QueryResult / list of them / GetResult: equal ids, metadata (with types), bit-equal numbers."""
    if isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_results(x, y)
        return
    assert type(a) is type(b)
    assert a.ids == b.ids
    assert [type(i) for i in a.ids] == [type(i) for i in b.ids]
    assert a.metadata == b.metadata
    if a.metadata:
        assert [type(m.get("big")) for m in a.metadata] == [type(m.get("big")) for m in b.metadata]
    for name in ("distances", "scores", "vectors"):
        x, y = getattr(a, name, None), getattr(b, name, None)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape, name
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_parity_with_embedded(client, metric: str) -> None:
    embedded = shoal.Database()
    name = f"parity-{metric}"
    dbs = [embedded, client]
    cols = [db.create_collection(name, dim=DIM, metric=metric) for db in dbs]
    assert all(name in db.list_collections() for db in dbs)
    ids, x, meta = data(60, seed=1)
    q = np.random.default_rng(2).standard_normal((5, DIM)).astype(np.float32)
    ops = [
        lambda c: c.upsert(ids, x, meta),
        lambda c: c.upsert(ids[:10], x[10:20] * 2, [{"lang": "xx", "n": None}] * 10),  # replace
        lambda c: c.upsert(1000, x[0]),  # one id, 1-D vector, no metadata
        lambda c: c.count(),
        lambda c: c.count({"lang": "en"}),
        lambda c: c.search(q, k=7),
        lambda c: c.search(q[0], k=3, include=("metadata", "distance", "vector")),
        lambda c: c.search(q, k=5, filter={"$or": [{"year": {"$gte": 2020}}, {"lang": {"$in": ["xx"]}}]}),
        lambda c: c.search(q, k=100, filter={"tags": 1, "lang": {"$ne": "de"}}, include=()),
        lambda c: c.search(q[:2], k=4, filter={"lang": "nobody"}),
        lambda c: c.get(["doc-3", 7, 1000, "doc-0"]),
        lambda c: c.delete(ids=[2, "doc-6"]),
        lambda c: c.delete(filter={"year": {"$lt": 2005}}),
        lambda c: c.delete(ids=[1, 4, 5], filter={"lang": "de"}),
        lambda c: c.count(),
        lambda c: c.search(q, k=10),
    ]
    for step, op in enumerate(ops):
        got, want = op(cols[1]), op(cols[0])
        if isinstance(want, int):
            assert got == want, f"step {step}"
        else:
            assert_same_results(want, got)
    remote_info, local_info = cols[1].describe(), cols[0].describe()
    for key in ("name", "dim", "metric", "index", "index_options", "count"):
        assert remote_info[key] == local_info[key]
    for db in dbs:
        db.drop_collection(name)
        assert name not in db.list_collections()


#: The planner is told to search the IVF lists (700 rows would otherwise be scanned exactly).
THROUGH_INDEX = {"planner": {"exact_max_rows": 0, "index_cost_factor": 0.0}, "optimizer": {"background": False}}


def test_streamed_bulk_upsert_and_per_query_params(server) -> None:
    ids, x, meta = data(700, seed=3, dim=16)
    q = np.random.default_rng(4).standard_normal((4, 16)).astype(np.float32)
    embedded = shoal.Database().create_collection("bulk", dim=16, metric="l2", index="IVF4,Flat", **THROUGH_INDEX)
    with shoal.Client(server.target, batch_size=128) as c:  # 700 rows -> 6 streamed messages
        remote = c.create_collection("bulk", dim=16, metric="l2", index="IVF4,Flat", **THROUGH_INDEX)
        assert remote.upsert(ids, x, meta) == embedded.upsert(ids, x, meta) == 700
        assert remote.count() == 700
        assert remote.compact() is embedded.compact() is True  # sealed and indexed, the same on both sides
        plans = embedded.explain(q, k=5, params={"nprobe": 1})
        assert [p["path"] for p in plans] == ["index"] and plans[0]["params"] == {"nprobe": 1}
        by_nprobe = {}
        for nprobe in (1, 4):
            by_nprobe[nprobe] = embedded.search(q, k=5, params={"nprobe": nprobe})
            assert_same_results(by_nprobe[nprobe], remote.search(q, k=5, params={"nprobe": nprobe}))
        # nprobe reaches the index: one list of four misses true neighbours that all four find
        exact = [r.ids for r in embedded.search(q, k=5, params={"nprobe": 4})]
        assert [r.ids for r in by_nprobe[1]] != exact == [r.ids for r in by_nprobe[4]]
        # several batches with their own k / filter / params in one call
        batches = [search_pb2.QueryBatch(vectors=shoal.rpc.convert.vectors_to_proto(q[:1]), k=3),
                   search_pb2.QueryBatch(vectors=shoal.rpc.convert.vectors_to_proto(q[1:]), k=2,
                                         params={"nprobe": types_pb2.Value(int_value=4)},
                                         filter=shoal.rpc.convert.filter_to_proto({"lang": "en"}))]
        resp = c.searcher.Search(search_pb2.SearchRequest(collection="bulk", batches=batches), timeout=20)
        assert [len(r.ids) for r in resp.results] == [3, 2, 2, 2]
        want = embedded.search(q[1:], k=2, filter={"lang": "en"}, params={"nprobe": 4}, explain=True)
        assert want[0].plan[0]["path"] == "filtered-index"
        assert [shoal.rpc.convert.ids_from_proto(r.ids) for r in resp.results[1:]] == [w.ids for w in want]
        first = embedded.search(q[:1], k=3)
        assert [shoal.rpc.convert.ids_from_proto(resp.results[0].ids)] == [r.ids for r in first]
        # a streamed load is validated as a whole first: a bad row late in it changes nothing
        bad = x.copy()
        bad[650, 3] = np.nan
        with pytest.raises(errors.InvalidVectorError, match="row 650"):
            remote.upsert([f"new-{i}" for i in range(700)], bad)
        with pytest.raises(errors.DuplicateIdError):
            remote.upsert(["dup"] * 300, x[:300])
        assert remote.count() == 700
        c.drop_collection("bulk")


def test_repeated_float_vectors_are_accepted(client) -> None:
    col = client.create_collection("repeated", dim=3, metric="l2")
    req = points_pb2.UpsertRequest(collection="repeated", ids=[types_pb2.PointId(num=1)],
                                   vectors=types_pb2.Vectors(dim=3, values=[1.0, 2.0, 3.0]))
    assert client.points.Upsert(req, timeout=20).upserted == 1
    np.testing.assert_array_equal(col.get([1]).vectors, [[1.0, 2.0, 3.0]])
    client.drop_collection("repeated")


# ------------------------------------------------------------------ errors

@pytest.fixture(scope="module")
def err_col(server):
    with shoal.Client(server.target, timeout=20) as c:
        col = c.create_collection("errs", dim=4, metric="l2")
        col.upsert([1, 2, "three"], np.eye(4, dtype=np.float32)[:3], [{"a": 1}, {"a": 2}, {}])
        yield col


ERROR_CASES = [
    ("bad dimension", lambda c: c.search(np.ones(5), k=1), errors.DimensionMismatchError, "INVALID_ARGUMENT"),
    ("NaN query", lambda c: c.search([np.nan, 0, 0, 0], k=1), errors.InvalidVectorError, "INVALID_ARGUMENT"),
    ("NaN upsert", lambda c: c.upsert([9], [[np.inf, 0, 0, 0]]), errors.InvalidVectorError, "INVALID_ARGUMENT"),
    ("k = 0", lambda c: c.search(np.ones(4), k=0), errors.InvalidArgumentError, "INVALID_ARGUMENT"),
    ("bad filter operand", lambda c: c.search(np.ones(4), k=1, filter={"a": {"$gt": True}}), errors.FilterError,
     "INVALID_ARGUMENT"),
    ("bad include", lambda c: c.search(np.ones(4), k=1, include=("nope",)), errors.InvalidArgumentError,
     "INVALID_ARGUMENT"),
    ("duplicate ids", lambda c: c.upsert([9, 9], np.ones((2, 4))), errors.DuplicateIdError, "INVALID_ARGUMENT"),
    ("lengths", lambda c: c.upsert([9, 10], np.ones((3, 4))), errors.InvalidArgumentError, "INVALID_ARGUMENT"),
    ("bad metadata", lambda c: c.upsert([9], np.ones(4), [{"$bad": 1}]), errors.InvalidArgumentError,
     "INVALID_ARGUMENT"),
    ("delete nothing", lambda c: c.delete(), errors.InvalidArgumentError, "INVALID_ARGUMENT"),
    ("unknown id get", lambda c: c.get([1, 404]), errors.IdNotFoundError, "NOT_FOUND"),
    ("unknown id update", lambda c: c.update([1, 404], metadata={}), errors.IdNotFoundError, "NOT_FOUND"),
]


@pytest.mark.parametrize("what, call, cls, code", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_codes_and_nothing_changes(err_col, what, call, cls, code) -> None:
    before = err_col.get([1, 2, "three"])
    with pytest.raises(cls) as info:
        call(err_col)
    assert type(info.value) is cls and info.value.grpc_code == code
    assert str(info.value)  # says what was wrong
    after = err_col.get([1, 2, "three"])
    assert err_col.count() == 3 and after.ids == before.ids and after.metadata == before.metadata
    np.testing.assert_array_equal(after.vectors, before.vectors)


def test_collection_level_error_codes(client) -> None:
    with pytest.raises(errors.CollectionNotFoundError) as info:
        client.get_collection("missing")
    assert info.value.grpc_code == "NOT_FOUND"
    with pytest.raises(errors.CollectionNotFoundError):
        client.drop_collection("missing")
    client.create_collection("twice", dim=2)
    with pytest.raises(errors.CollectionExistsError) as info:
        client.create_collection("twice", dim=3)
    assert info.value.grpc_code == "ALREADY_EXISTS" and client.get_collection("twice").dim == 2
    client.drop_collection("twice")
    with pytest.raises(errors.InvalidArgumentError, match="collection name"):
        client.create_collection("bad name!", dim=2)
    with pytest.raises(errors.InvalidSpecError):
        client.create_collection("spec", dim=2, index="NoSuchIndex")
    assert "spec" not in client.list_collections()


def test_status_codes_on_the_wire(server, err_col) -> None:
    """Raw stubs (what a client in another language sees): status code, message and error class trailer."""
    channel = grpc.insecure_channel(server.target)
    stub = service_pb2_grpc.SearchStub(channel)
    req = search_pb2.SearchRequest(collection="errs", batches=[search_pb2.QueryBatch(
        vectors=types_pb2.Vectors(dim=4, packed=np.ones(4, "<f4").tobytes()), k=0)])
    with pytest.raises(grpc.RpcError) as info:
        stub.Search(req, timeout=20)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "k must be a positive integer" in info.value.details()
    trailers = dict(info.value.trailing_metadata())
    assert trailers[ERROR_TRAILER] == "InvalidArgumentError" and len(trailers["x-request-id"]) == 16
    req.collection = "nope"
    with pytest.raises(grpc.RpcError) as info:
        stub.Search(req, timeout=20)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    channel.close()


def test_oversized_request_is_resource_exhausted(tmp_path) -> None:
    srv = start_server(tmp_path, "--max-message-mb", "0.05")  # a separate server with a small limit
    try:
        with shoal.Client(srv.target, timeout=20) as c:
            col = c.create_collection("big", dim=64)
            with pytest.raises(errors.ResourceExhaustedError) as info:
                col.upsert(list(range(400)), np.ones((400, 64)))  # ~100 KiB > 50 KiB
            assert info.value.grpc_code == "RESOURCE_EXHAUSTED"
            assert col.count() == 0
    finally:
        assert srv.stop() == 0


def growing_rows(col) -> int:
    """Rows in the collection's growing segment (the others are sealed), from the served stats."""
    (last,) = [s for s in col.stats()["segment_list"] if s["state"] == "growing"]
    return last["rows"]


def test_admin_calls_in_memory(client, server) -> None:
    col = client.create_collection("adm", dim=2)
    col.upsert([1, 2], [[1.0, 2.0], [3.0, 4.0]], [{"v": 1}, {"v": 2}])
    stats = client.stats()
    assert stats["collections"]["adm"]["count"] == 2 and isinstance(stats["collections"]["adm"]["dim"], int)
    assert col.stats()["count"] == 2
    assert growing_rows(col) == 2
    assert client.flush() is None
    assert growing_rows(col) == 0  # flush sealed the growing segment (in memory too)
    col.upsert([3], [[5.0, 6.0]])
    assert growing_rows(col) == 1 and col.flush() is None and growing_rows(col) == 0
    col.delete(ids=[3])
    assert col.compact() is True  # the sealed segments merge into one, without the deleted row
    assert col.compact() is False
    col.delete(ids=[1])
    assert col.compact() is True and col.get([2]).metadata == [{"v": 2}]
    with pytest.raises(errors.InvalidArgumentError, match="snapshot name"):
        client.snapshot("")
    client.snapshot("snap")
    with pytest.raises(errors.AlreadyExistsError, match="already exists"):
        client.snapshot("snap")
    snap = shoal.Database(str(server.snapshot_dir / "snap"))
    assert snap.get_collection("adm").get([2]).metadata == [{"v": 2}]
    snap.close()
    client.drop_collection("adm")


# ------------------------------------------------------- health, reflection

def test_health_service(server) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "shoal.v1.Search", "shoal.v1.Points"):
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=20)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=20)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_services(server) -> None:
    from google.protobuf import descriptor_pb2

    with grpc.insecure_channel(server.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        reqs = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="shoal.v1.Search")]
        list_resp, file_resp = list(stub.ServerReflectionInfo(iter(reqs), timeout=20))
        names = {s.name for s in list_resp.list_services_response.service}
        assert {"shoal.v1.Collections", "shoal.v1.Points", "shoal.v1.Search", "shoal.v1.Admin",
                "grpc.health.v1.Health"} <= names
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in file_resp.file_descriptor_response.file_descriptor_proto]
        search = next(s for f in files for s in f.service if s.name == "Search")
        assert [m.name for m in search.method] == ["Search", "SearchRange", "Recommend"]


# ------------------------------------------------------------- concurrency

def test_concurrent_upserts_and_searches(server) -> None:
    n_threads, per_thread, rounds = 4, 40, 5
    failures: list[BaseException] = []
    with shoal.Client(server.target, timeout=30) as c:
        col = c.create_collection("conc", dim=DIM, metric="l2")

        def worker(t: int) -> None:
            rng = np.random.default_rng(t)
            try:
                for r in range(rounds):
                    ids = [f"t{t}-{r}-{i}" for i in range(per_thread)]
                    col.upsert(ids, rng.standard_normal((per_thread, DIM)), [{"t": t}] * per_thread)
                    res = col.search(rng.standard_normal((3, DIM)), k=5, filter={"t": t})
                    assert all(len(h) == 5 and all(m["t"] == t for m in h.metadata) for h in res)
            except BaseException as exc:  # surfaced below
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not failures, failures
        assert col.count() == n_threads * per_thread * rounds
        for t in range(n_threads):
            assert col.count({"t": t}) == per_thread * rounds
        got = col.get([f"t{t}-{rounds - 1}-0" for t in range(n_threads)])
        assert [m["t"] for m in got.metadata] == list(range(n_threads))
        c.drop_collection("conc")
