"""Request bytes -> message in our code, so a request that does not decode is INVALID_ARGUMENT saying why.

When grpcio's deserializer raises, grpcio answers INTERNAL "Exception deserializing
request!" (1,634 fuzz cases in issue 15: deep filters, deep metadata, invalid UTF-8,
random bytes). The server registers its handlers with raw bytes in
(``server.DecodeInterceptor``) and parses them with :func:`parse_request`.

protobuf's own error says little ("Error parsing message with type ..."), so on failure
:func:`diagnose` walks the wire format against the message descriptor and names the
first problem and where it is: bytes that are not protobuf, a string that is not
UTF-8, or nesting beyond the decoder's limit.

Nesting: the decoder accepts at most :data:`MAX_DEPTH` levels of sub-messages. The
engine's own limits keep every valid request well inside it: filters nest at most
``engine.filters.MAX_DEPTH`` (32) levels of $and/$or/$not (2 messages per level),
metadata at most ``engine.metadata.MAX_NESTING`` (16) levels of dicts/lists (3
messages per dict level, 2 per list level).
"""
from __future__ import annotations

from typing import Any

from google.protobuf import message
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from ..engine.echo import clip
from ..engine.errors import InvalidArgumentError

#: Sub-message levels below the request the protobuf decoder (upb) accepts.
MAX_DEPTH = 100

_FIXED64 = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}
_FIXED32 = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_SFIXED32}
_DELIMITED = {FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_MESSAGE}
_WIRE_TYPES = (0, 1, 2, 5)  # varint, 64-bit, length-delimited, 32-bit (groups, 3 and 4, are not proto3)


def parse_request(cls: Any, data: bytes) -> Any:
    """``cls.FromString(data)``, or InvalidArgumentError saying what is wrong with ``data``."""
    try:
        return cls.FromString(data)
    except message.DecodeError:
        raise InvalidArgumentError(
            f"request is not a valid {cls.DESCRIPTOR.full_name} message: {diagnose(cls.DESCRIPTOR, data)}") from None


def diagnose(descriptor: Descriptor, data: bytes) -> str:
    """The first problem of ``data`` as a ``descriptor`` message, in words."""
    try:
        _walk(descriptor, memoryview(data), 0, len(data), 0, descriptor.name)
    except _Malformed as bad:
        return str(bad)
    return "the protobuf decoder rejected it"


class _Malformed(Exception):
    pass


def _varint(data: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    start = pos
    while True:
        if pos >= end or shift > 63:
            raise _Malformed(f"bytes are not protobuf: bad varint at byte {start}")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _expected_wire(field: FieldDescriptor) -> set[int]:
    if field.type in _DELIMITED:
        return {2}
    scalar = 1 if field.type in _FIXED64 else (5 if field.type in _FIXED32 else 0)
    return {scalar, 2} if field.is_repeated else {scalar}  # 2: packed


def _walk(desc: Descriptor, data: memoryview, pos: int, end: int, depth: int, path: str) -> None:
    if depth > MAX_DEPTH:
        raise _Malformed(f"{clip(path, 120)} nests sub-messages deeper than {MAX_DEPTH} levels (the decoder's "
                         "limit; filters may nest 32 levels, metadata 16)")
    while pos < end:
        at = pos
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0 or wire not in _WIRE_TYPES:
            raise _Malformed(f"bytes are not protobuf: bad field key {key} at byte {at}")
        field = desc.fields_by_number.get(number)
        if field is not None and wire not in _expected_wire(field):
            field = None  # the decoder keeps a known number with another wire type as an unknown field
        name = f"{path}.{field.name}" if field is not None else f"{path}.<field {number}>"
        if wire == 0:
            _, pos = _varint(data, pos, end)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            length, pos = _varint(data, pos, end)
            stop = pos + length
            if stop > end:
                raise _Malformed(f"{clip(name, 120)} at byte {at} claims {length} bytes, only {end - pos} remain")
            if field is not None and field.type == FieldDescriptor.TYPE_MESSAGE:
                _walk(field.message_type, data, pos, stop, depth + 1, name)
            elif field is not None and field.type == FieldDescriptor.TYPE_STRING:
                try:
                    bytes(data[pos:stop]).decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _Malformed(f"{clip(name, 120)} is not valid UTF-8 (byte {pos + exc.start}); "
                                     "strings must be UTF-8") from None
            pos = stop
        if pos > end:
            raise _Malformed(f"bytes are not protobuf: {clip(name, 120)} at byte {at} runs past the end")
