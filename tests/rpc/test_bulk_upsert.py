"""The bulk upsert forms (issue 27): packed int ids and payloads as one JSON array, both sides."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest

import shoal
from shoal.engine import errors
from shoal.rpc import convert
from shoal.rpc.server import build_server
from shoal.rpc.v1 import points_pb2, types_pb2


def test_forms_round_trip_and_mixed_ids_use_the_general_form() -> None:
    req = points_pb2.UpsertRequest()
    convert.fill_upsert_ids(req, [3, 1, 2])
    assert list(req.int_ids) == [3, 1, 2] and not req.ids and convert.upsert_ids_from_proto(req).tolist() == [3, 1, 2]
    mixed = points_pb2.UpsertRequest()
    convert.fill_upsert_ids(mixed, [1, "b", np.int64(5)])
    assert not mixed.int_ids and convert.upsert_ids_from_proto(mixed) == [1, "b", 5]
    req.metadata_json = convert.payloads_to_json([{"a": 1}, {"a": 1.0, "s": "ü"}, {}])
    rows = convert.upsert_payloads_from_proto(req)
    assert rows == [{"a": 1}, {"a": 1.0, "s": "ü"}, {}] and type(rows[0]["a"]) is int and type(rows[1]["a"]) is float


@pytest.mark.parametrize("fill, message", [
    (lambda r: (r.int_ids.append(1), r.ids.add(num=2)), "either ids or int_ids"),
    (lambda r: (setattr(r, "metadata_json", b"[{}]"), r.metadata.add()), "either metadata or metadata_json"),
    (lambda r: setattr(r, "metadata_json", b"[{"), "not valid UTF-8 JSON"),
    (lambda r: setattr(r, "metadata_json", b"\xff\xfe"), "not valid UTF-8 JSON"),
    (lambda r: setattr(r, "metadata_json", b"[" * 100_000 + b"]" * 100_000), "not valid UTF-8 JSON"),
    (lambda r: setattr(r, "metadata_json", b'{"a": 1}'), "JSON array of objects"),
    (lambda r: setattr(r, "metadata_json", b"[1]"), "JSON array of objects"),
])
def test_malformed_bulk_fields_are_invalid_argument(fill, message) -> None:
    req = points_pb2.UpsertRequest()
    fill(req)
    with pytest.raises(errors.InvalidArgumentError, match=message):
        convert.upsert_ids_from_proto(req)
        convert.upsert_payloads_from_proto(req)


@contextlib.contextmanager
def served(batch_size: int = 4096) -> Iterator[shoal.Client]:
    """A client of a fresh in-memory server (stopped afterwards)."""
    server = build_server(shoal.Database(), "127.0.0.1", 0)
    try:
        with shoal.Client(f"127.0.0.1:{server.port}", timeout=20, batch_size=batch_size) as c:
            yield c
    finally:
        server.stop(0)


def test_served_upserts_in_both_forms_store_the_same_records() -> None:
    with served(batch_size=50) as c:
        col = c.create_collection("b", dim=2, metric="l2")
        x = np.random.default_rng(0).standard_normal((120, 2))
        meta = [{"i": i, "f": i / 2, "tags": [i, "t"], "nested": {"k": None}} for i in range(120)]
        assert col.upsert(list(range(120)), x, meta) == 120  # streamed, bulk forms
        old = points_pb2.UpsertRequest(collection="b", ids=[types_pb2.PointId(str="s")],
                                       vectors=convert.vectors_to_proto(x[:1]),
                                       metadata=[convert.metadata_to_proto({"i": -1})])
        assert c.points.Upsert(old, timeout=20).upserted == 1  # the per-row form still works
        assert col.get([7, "s"]).metadata == [meta[7], {"i": -1}]
        with pytest.raises(errors.InvalidArgumentError, match="64 bits"):
            col.upsert([1000], x[:1], [{"big": 2 ** 70}])
        assert col.count() == 121


def test_streamed_upsert_sends_plain_rows_as_given_and_checks_every_row_before_the_first_chunk() -> None:
    with served(batch_size=40) as c:
        col = c.create_collection("p", dim=3, metric="l2")
        x = np.random.default_rng(1).standard_normal((100, 3))
        meta = [{"z": i, "a": "x", "m": None} for i in range(100)]  # unsorted keys: sent unsorted
        meta[5] = {"np": np.int64(5), "t": (1, 2)}  # not plain: converted by the full check
        assert col.upsert(np.arange(100), x, meta) == 100
        got = col.get([0, 5]).metadata
        assert got == [{"a": "x", "m": None, "z": 0}, {"np": 5, "t": [1, 2]}]
        assert list(got[0]) == ["a", "m", "z"]  # stored with sorted keys, as embedded
        bad = [{"i": i} for i in range(100)]
        bad[90] = {"$bad": 1}  # in the third chunk: refused before the first is sent
        with pytest.raises(errors.InvalidArgumentError, match=r"metadata\[90\]"):
            col.upsert(np.arange(200, 300), x, bad)
        assert col.count() == 100


def test_search_answers_int_ids_packed_only_when_asked_and_all_ids_are_ints() -> None:
    from shoal.rpc.v1 import search_pb2, service_pb2_grpc

    with served() as c:
        col = c.create_collection("s", dim=2, metric="l2")
        col.upsert([1, 2, 3], [[0, 0], [1, 0], [0, 1]])
        res = col.search([0.1, 0], k=3)
        assert res.ids == [1, 2, 3] and all(type(i) is int for i in res.ids)
        stub = service_pb2_grpc.SearchStub(c._channel)

        def ask(packed: bool) -> search_pb2.QueryHits:
            batch = search_pb2.QueryBatch(vectors=convert.vectors_to_proto([0.1, 0]), k=3)
            return stub.Search(search_pb2.SearchRequest(collection="s", batches=[batch], packed_int_ids=packed),
                               timeout=20).results[0]

        assert list(ask(True).int_ids) == [1, 2, 3] and not ask(True).ids
        assert [p.num for p in ask(False).ids] == [1, 2, 3] and not ask(False).int_ids  # other clients
        col.upsert(["x"], [[0.1, 0]])  # a string id among the hits: the general form
        hits = ask(True)
        assert not hits.int_ids and hits.ids[0].str == "x"
        assert col.search([0.1, 0], k=2).ids == ["x", 1]
