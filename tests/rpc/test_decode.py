"""rpc/decode.py: requests that do not decode become INVALID_ARGUMENT saying what is wrong.

Unit tests of ``parse_request`` / ``diagnose`` on hand-made wire bytes, then the same
bytes through a real server (grpcio used to answer INTERNAL "Exception deserializing
request!" for all of them).
"""
from __future__ import annotations

import grpc
import numpy as np
import pytest

import shoal
from shoal.engine.errors import FilterError, InvalidArgumentError
from shoal.engine.filters import MAX_DEPTH
from shoal.engine.metadata import MAX_NESTING
from shoal.rpc import convert
from shoal.rpc.decode import parse_request
from shoal.rpc.server import build_server
from shoal.rpc.v1 import collections_pb2, points_pb2, search_pb2


def _len(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2]) + _len(len(payload)) + payload


def deep_not_filter(depth: int) -> bytes:
    """A Filter of ``depth`` nested ``not`` around an empty Filter (built as bytes: the message API refuses it)."""
    inner = b""
    for _ in range(depth):
        inner = _field(4, inner)
    return inner


def deep_metadata(depth: int) -> bytes:
    """A Metadata of ``depth`` nested struct values: {"a": {"a": ...}}."""
    inner = b""
    for _ in range(depth):
        value = _field(7, inner)  # Value.struct_value
        inner = _field(1, _field(1, b"a") + _field(2, value))  # Metadata.fields entry: key, value
    return inner


CASES = [
    (points_pb2.CountRequest, _field(1, b"c") + _field(2, deep_not_filter(150)), "nests sub-messages deeper than 100"),
    (points_pb2.UpsertRequest, _field(1, b"c") + _field(4, deep_metadata(40)), "deeper than 100"),
    (collections_pb2.GetCollectionRequest, _field(1, b"\xff\xfe"), "GetCollectionRequest.name is not valid UTF-8"),
    (points_pb2.GetPointsRequest, _field(1, b"c") + _field(2, _field(2, b"\xc3")), "ids.str is not valid UTF-8"),
    (collections_pb2.GetCollectionRequest, b"\xff\xff\xff", "bad varint"),
    (collections_pb2.GetCollectionRequest, b"\x0a\x10ab", "claims 16 bytes, only 2 remain"),
    (search_pb2.SearchRequest, b"\x07", "bad field key"),
]


@pytest.mark.parametrize("cls, data, message", CASES, ids=[m for _, _, m in CASES])
def test_undecodable_bytes_are_explained(cls, data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as info:
        parse_request(cls, data)
    assert cls.DESCRIPTOR.full_name in str(info.value) and len(str(info.value)) < 600


def test_valid_bytes_parse() -> None:
    msg = parse_request(points_pb2.CountRequest, _field(1, b"c") + _field(2, deep_not_filter(90)))
    assert msg.collection == "c" and msg.HasField("filter")
    odd = parse_request(collections_pb2.GetCollectionRequest, b"\x08\x01" + _field(1, b"c"))  # name as a varint
    assert odd.name == "c"  # ... is an unknown field to the decoder, not an error


def test_engine_limits_fit_inside_the_decoder() -> None:
    """The deepest filter and payload the engine accepts decode; one level more is the engine's clear error."""
    flt: dict = {"f": 1}
    for _ in range(MAX_DEPTH - 1):
        flt = {"$and": [flt, {"g": 2}]}
    request = points_pb2.CountRequest(collection="c", filter=convert.filter_to_proto(flt))
    decoded = parse_request(points_pb2.CountRequest, request.SerializeToString())
    col = shoal.Database().create_collection("c", 2)
    assert col.count(convert.filter_from_proto(decoded.filter)) == 0
    with pytest.raises(FilterError, match=f"deeper than {MAX_DEPTH}"):
        col.count({"$not": flt})
    meta: dict = {"x": 1}
    for _ in range(MAX_NESTING - 1):
        meta = {"m": meta}
    up = points_pb2.UpsertRequest(collection="c", metadata=[convert.metadata_to_proto(meta)])
    parse_request(points_pb2.UpsertRequest, up.SerializeToString())
    col.upsert([1], [[1.0, 2.0]], [meta])
    with pytest.raises(InvalidArgumentError, match=f"deeper than {MAX_NESTING}"):
        col.upsert([2], [[1.0, 2.0]], [{"m": meta}])
    with pytest.raises(InvalidArgumentError, match=f"deeper than {MAX_NESTING}"):
        col.upsert([2], [[1.0, 2.0]], [{"l": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}])
    assert col.count() == 1


METHODS = {points_pb2.CountRequest: "/shoal.v1.Points/Count", points_pb2.UpsertRequest: "/shoal.v1.Points/Upsert",
           collections_pb2.GetCollectionRequest: "/shoal.v1.Collections/Get",
           points_pb2.GetPointsRequest: "/shoal.v1.Points/Get", search_pb2.SearchRequest: "/shoal.v1.Search/Search"}


def test_server_answers_invalid_argument_not_internal() -> None:
    db = shoal.Database()
    db.create_collection("c", 2).upsert([1], np.ones((1, 2)))
    server = build_server(db, "127.0.0.1", 0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            for cls, data, message in CASES:
                call = channel.unary_unary(METHODS[cls], request_serializer=None, response_deserializer=None)
                with pytest.raises(grpc.RpcError) as info:
                    call(data, timeout=10)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (message, info.value.details())
                assert message.split(" ")[-1] in info.value.details()
            stream = channel.stream_unary("/shoal.v1.Points/UpsertStream", request_serializer=None,
                                          response_deserializer=None)
            good = points_pb2.UpsertRequest(collection="c", ids=convert.ids_to_proto([5]),
                                            vectors=convert.vectors_to_proto(np.ones((1, 2)))).SerializeToString()
            with pytest.raises(grpc.RpcError) as info:
                stream(iter([good, b"\xff\xff"]), timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "bad varint" in info.value.details()
    finally:
        server.stop(grace=1)
