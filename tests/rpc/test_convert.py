"""Message conversion: values keep their types, filters keep their meaning, vectors their bits."""
from __future__ import annotations

import numpy as np
import pytest

from shoal.engine.errors import FilterError, InvalidArgumentError
from shoal.engine.filters import compile_filter
from shoal.rpc import convert
from shoal.rpc.v1 import types_pb2 as pb


def roundtrip(msg):
    return type(msg).FromString(msg.SerializeToString())


def test_metadata_round_trip_keeps_ints_and_nesting() -> None:
    meta = {"i": 2 ** 53 + 1, "neg": -7, "f": 1.5, "whole_float": 2.0, "s": "x", "b": True, "n": None,
            "l": [1, "a", [False, 2.5]], "o": {"deep": {"k": 3}}}
    back = convert.metadata_from_proto(roundtrip(convert.metadata_to_proto(meta)))
    assert back == meta
    assert type(back["i"]) is int and type(back["whole_float"]) is float and type(back["b"]) is bool
    assert type(back["l"][0]) is int


def test_unsupported_values_are_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="unsupported value type"):
        convert.metadata_to_proto({"x": object()})
    with pytest.raises(InvalidArgumentError, match="64 bits"):
        convert.value_to_proto(2 ** 70)


def test_ids_round_trip() -> None:
    ids = [0, -3, 2 ** 62, "a", "é"]
    assert convert.ids_from_proto([roundtrip(p) for p in convert.ids_to_proto(ids)]) == ids
    assert convert.ids_to_proto([np.int64(5)])[0].num == 5
    with pytest.raises(InvalidArgumentError):
        convert.ids_to_proto([True])
    with pytest.raises(InvalidArgumentError, match="neither"):
        convert.ids_from_proto([pb.PointId()])


def test_vectors_packed_and_repeated_forms() -> None:
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    packed = roundtrip(convert.vectors_to_proto(x))
    assert len(packed.packed) == x.nbytes and packed.dim == 5
    np.testing.assert_array_equal(convert.vectors_from_proto(packed), x)
    listed = pb.Vectors(dim=5, values=x.ravel().tolist())
    np.testing.assert_array_equal(convert.vectors_from_proto(listed), x)
    assert np.frombuffer(packed.packed, "<f4")[1] == x[0, 1]  # little-endian float32, row-major


@pytest.mark.parametrize("msg, match", [
    (pb.Vectors(dim=0, packed=b"\0" * 4), "positive"),
    (pb.Vectors(dim=2, packed=b"\0" * 12), "multiple of 4"),
    (pb.Vectors(dim=2, values=[1.0, 2.0, 3.0]), "multiple of dim"),
    (pb.Vectors(dim=1, packed=b"\0" * 4, values=[1.0]), "not both"),
])
def test_bad_vector_messages(msg, match) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        convert.vectors_from_proto(msg)


PAYLOADS = [{"lang": "en", "year": 2021, "tags": ["a", "b"], "ok": True},
            {"lang": "de", "year": 2024, "score": 0.5},
            {"lang": None, "year": 2019.0, "ok": False},
            {}]
FILTERS = [
    {}, {"lang": "en"}, {"lang": None}, {"year": {"$gte": 2021, "$lt": 2024}}, {"lang": {"$in": ["en", "de"]}},
    {"lang": {"$nin": ["en"]}}, {"score": {"$exists": True}}, {"ok": {"$ne": True}},
    {"$or": [{"lang": "de"}, {"tags": "b"}]}, {"$not": {"year": {"$gt": 2020}}},
    {"lang": "en", "year": 2021}, {"$and": [{"lang": {"$gte": "d"}}, {"ok": {"$eq": False}}]},
]


@pytest.mark.parametrize("flt", FILTERS)
def test_filter_round_trip_keeps_meaning(flt) -> None:
    back = convert.filter_from_proto(roundtrip(convert.filter_to_proto(flt)))
    want = [compile_filter(flt).matches(p) for p in PAYLOADS]
    assert [compile_filter(back).matches(p) for p in PAYLOADS] == want


@pytest.mark.parametrize("flt, match", [
    ({"$xor": []}, "unknown operator"), ({"f": {"$regex": "a"}}, "unknown operator"),
    ({"f": {"$in": 3}}, "takes a list"), ({"$and": []}, "non-empty list"), ({"f": {}}, "empty operator"),
    ("lang", "must be a dict"),
])
def test_bad_filters_are_rejected_when_encoding(flt, match) -> None:
    with pytest.raises(FilterError, match=match):
        convert.filter_to_proto(flt)


def test_malformed_filter_messages_are_rejected_when_decoding() -> None:
    with pytest.raises(FilterError, match="no operator"):
        convert.filter_from_proto(pb.Filter(field=pb.FieldCondition(field="a", value=pb.Value(int_value=1))))
    with pytest.raises(FilterError, match="empty field"):
        convert.filter_from_proto(pb.Filter(field=pb.FieldCondition(op=pb.FieldCondition.EQ)))
    with pytest.raises(FilterError, match="needs a value"):
        convert.filter_from_proto(pb.Filter(field=pb.FieldCondition(field="a", op=pb.FieldCondition.GT)))
