"""JSON <-> ``shoal.v1`` messages: the proto3 JSON mapping, with Shoal's value types written plainly.

Every HTTP route decodes its body into the very request message gRPC would receive and
encodes the servicer's response message back, by walking the message descriptors, so a
method added to the .proto files is spoken over HTTP with no code here.

Like ``google.protobuf.Struct`` in proto3's own JSON mapping, five types have a JSON form
of their own (what a curl user would write), the rest follows proto3 JSON (field names as
in the .proto or lowerCamelCase, enums by name, bytes as base64, ``null`` = default):

* ``PointId``: a JSON integer or string (``7``, ``"doc-7"``).
* ``Vectors``: an array of vectors, or one vector; each vector is an array of numbers or a
  base64 string of little-endian float32 (``[[0.1, 0.2]]``, ``"zczMPc3MTD4="``). The message
  form ``{"dim": 2, "packed": "<base64>"}`` / ``{"dim": 2, "values": [...]}`` is accepted too.
  Responses give arrays of arrays of numbers.
* ``Metadata``: a JSON object; ``Value``: any JSON value (integers stay integers).
* ``Filter``: the embedded filter language, e.g. ``{"lang": "en", "year": {"$gte": 2020}}``.

Integers are JSON numbers both ways (proto3 JSON writes 64-bit ones as strings; strings of
digits are still accepted). Errors are :class:`InvalidArgumentError` naming the field path.
"""
from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from ...engine.echo import shorten
from ...engine.errors import InvalidArgumentError, InvalidVectorError
from .. import convert

_LE_F32 = np.dtype("<f4")
_INT_TYPES = {FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT32,
              FieldDescriptor.CPPTYPE_UINT64}
_FLOAT_TYPES = {FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE}
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# ------------------------------------------------------------ shoal value types

def _decode_point_id(msg: Any, value: Any, path: str) -> None:
    if isinstance(value, str):
        msg.str = value
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            msg.num = value
        except ValueError:
            raise InvalidArgumentError(f"{path}: id {value} does not fit in 64 bits") from None
    else:
        raise InvalidArgumentError(f"{path}: an id is a JSON integer or string, got {shorten(value)}")


def _encode_point_id(msg: Any) -> Any:
    return convert.ids_from_proto([msg])[0] if msg.WhichOneof("kind") else None


def _one_vector(value: Any, path: str) -> np.ndarray:
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidVectorError(f"{path}: not valid base64 (a vector as a string is base64 of "
                                     "little-endian float32)") from None
        if len(raw) % 4:
            raise InvalidVectorError(f"{path}: {len(raw)} bytes of base64 is not a whole number of float32")
        return np.frombuffer(raw, dtype=_LE_F32)
    if not isinstance(value, list) or any(isinstance(v, (bool, list, dict, str)) or v is None for v in value):
        raise InvalidVectorError(f"{path}: a vector is an array of numbers or a base64 string, got {shorten(value)}")
    return np.asarray(value, dtype=np.float32)


def _decode_vectors(msg: Any, value: Any, path: str) -> None:
    if isinstance(value, Mapping):  # the message form: {"dim", "packed" | "values"}
        _decode_message(msg, value, path)
        return
    one = isinstance(value, str) or (isinstance(value, list) and value and not isinstance(value[0], (list, str)))
    rows = [_one_vector(value, path)] if one else None
    if rows is None:
        if not isinstance(value, list):
            raise InvalidVectorError(f"{path}: vectors are an array of vectors, got {shorten(value)}")
        rows = [_one_vector(v, f"{path}[{i}]") for i, v in enumerate(value)]
    dims = {len(r) for r in rows}
    if len(dims) > 1:
        raise InvalidVectorError(f"{path}: vectors have different lengths {sorted(dims)}")
    if not rows or not dims.pop():
        raise InvalidVectorError(f"{path}: no vector values given")
    msg.CopyFrom(convert.vectors_to_proto(np.stack(rows)))


def _encode_vectors(msg: Any) -> list[list[float]]:
    return convert.vectors_from_proto(msg).tolist() if msg.dim else []


def _decode_metadata(msg: Any, value: Any, path: str) -> None:
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"{path}: metadata is a JSON object, got {shorten(value)}")
    convert.fill_metadata(msg, value)


def _decode_filter(msg: Any, value: Any, path: str) -> None:
    msg.CopyFrom(convert.filter_to_proto(value))


#: Message full name -> (decode into message, encode to a JSON value).
SHOAL_TYPES: dict[str, tuple[Callable[[Any, Any, str], None], Callable[[Any], Any]]] = {
    "shoal.v1.PointId": (_decode_point_id, _encode_point_id),
    "shoal.v1.Vectors": (_decode_vectors, _encode_vectors),
    "shoal.v1.Metadata": (_decode_metadata, convert.metadata_from_proto),
    "shoal.v1.Value": (lambda msg, value, path: convert.fill_value(msg, value), convert.value_from_proto),
    "shoal.v1.Filter": (_decode_filter, convert.filter_from_proto),
}


# ----------------------------------------------------------------------- decode

def from_json(cls: type[Message], value: Any, path: str = "body") -> Message:
    """A ``cls`` message from a parsed JSON value (raises InvalidArgumentError naming the field)."""
    msg = cls()
    try:
        _fill(msg, value, path)
    except RecursionError:
        raise InvalidArgumentError(f"{path} nests too deeply") from None
    return msg


def _fill(msg: Any, value: Any, path: str) -> None:
    special = SHOAL_TYPES.get(msg.DESCRIPTOR.full_name)
    if special is not None:
        msg.SetInParent()
        special[0](msg, value, path)
    else:
        _decode_message(msg, value, path)


def _field_lookup(desc: Descriptor) -> dict[str, FieldDescriptor]:
    return {**{f.json_name: f for f in desc.fields}, **desc.fields_by_name}


def _decode_message(msg: Any, value: Any, path: str) -> None:
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"{path} must be a JSON object ({msg.DESCRIPTOR.name}), got {shorten(value)}")
    msg.SetInParent()
    fields = _field_lookup(msg.DESCRIPTOR)
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            known = ", ".join(f.name for f in msg.DESCRIPTOR.fields) or "none"
            raise InvalidArgumentError(f"{path}: unknown field {shorten(key)} ({msg.DESCRIPTOR.name} fields: {known})")
        if item is not None:
            _decode_field(msg, field, item, f"{path}.{field.name}")


def _decode_field(msg: Any, field: FieldDescriptor, value: Any, path: str) -> None:
    target = getattr(msg, field.name)
    if _is_map(field):
        if not isinstance(value, Mapping):
            raise InvalidArgumentError(f"{path} must be a JSON object, got {shorten(value)}")
        entry = field.message_type.fields_by_name["value"]
        for key, item in value.items():
            key = _scalar(field.message_type.fields_by_name["key"], key, f"{path} key")
            if entry.message_type is not None:
                _fill(target[key], item, f"{path}.{key}")
            else:
                target[key] = _scalar(entry, item, f"{path}.{key}")
    elif field.is_repeated:
        if not isinstance(value, list):
            raise InvalidArgumentError(f"{path} must be a JSON array, got {shorten(value)}")
        for i, item in enumerate(value):
            if field.message_type is not None:
                _fill(target.add(), item, f"{path}[{i}]")
            else:
                target.append(_scalar(field, item, f"{path}[{i}]"))
    elif field.message_type is not None:
        _fill(target, value, path)
    else:
        setattr(msg, field.name, _scalar(field, value, path))


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _scalar(field: FieldDescriptor, value: Any, path: str) -> Any:
    """A JSON scalar as the field's Python value, checked (range included) the way proto3 JSON does."""
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        if isinstance(value, str) and value in ("true", "false"):  # map keys and query strings
            return value == "true"
        if isinstance(value, bool):
            return value
    elif kind == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES and isinstance(value, str):
            try:
                return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_" if "-" in value or
                                        "_" in value else None, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArgumentError(f"{path}: not valid base64") from None
        if isinstance(value, str):
            return value
    elif kind == FieldDescriptor.CPPTYPE_ENUM:
        enum = field.enum_type
        if isinstance(value, str) and value in enum.values_by_name:
            return enum.values_by_name[value].number
        if isinstance(value, int) and not isinstance(value, bool) and value in enum.values_by_number:
            return value
        raise InvalidArgumentError(f"{path}: {shorten(value)} is not one of {', '.join(enum.values_by_name)}")
    elif kind in _INT_TYPES:
        number = _integer(value)
        if number is not None:
            lo, hi = _int_range(field)
            if not lo <= number <= hi:
                raise InvalidArgumentError(f"{path}: {number} is out of range [{lo}, {hi}]")
            return number
    elif kind in _FLOAT_TYPES:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and value in _NON_FINITE:
            return _NON_FINITE[value]
    raise InvalidArgumentError(f"{path}: expected {_type_word(field)}, got {shorten(value)}")


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _int_range(field: FieldDescriptor) -> tuple[int, int]:
    bits = 32 if field.cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_UINT32) else 64
    if field.cpp_type in (FieldDescriptor.CPPTYPE_UINT32, FieldDescriptor.CPPTYPE_UINT64):
        return 0, 2 ** bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _type_word(field: FieldDescriptor) -> str:
    kind = field.cpp_type
    if kind in _INT_TYPES:
        return "an unsigned integer" if kind in (FieldDescriptor.CPPTYPE_UINT32, FieldDescriptor.CPPTYPE_UINT64) \
            else "an integer"
    return {FieldDescriptor.CPPTYPE_BOOL: "true or false", FieldDescriptor.CPPTYPE_FLOAT: "a number",
            FieldDescriptor.CPPTYPE_DOUBLE: "a number"}.get(
        kind, "a base64 string" if field.type == FieldDescriptor.TYPE_BYTES else "a string")


# ----------------------------------------------------------------------- encode

def to_json(msg: Message) -> Any:
    """A message as a JSON-ready value (scalars always present, defaults included)."""
    special = SHOAL_TYPES.get(msg.DESCRIPTOR.full_name)
    if special is not None:
        return special[1](msg)
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if _is_map(field):
            entry = field.message_type.fields_by_name["value"]
            out[field.name] = {str(k): _encode_value(entry, v) for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_encode_value(field, v) for v in value]
        elif field.has_presence and not msg.HasField(field.name):
            continue
        else:
            out[field.name] = _encode_value(field, value)
    return out


def _encode_value(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None:
        return to_json(value)
    if field.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        found = field.enum_type.values_by_number.get(value)
        return found.name if found is not None else value
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    if field.cpp_type in _FLOAT_TYPES and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value
