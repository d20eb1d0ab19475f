"""The manifest: a collection's commit point (options, segment list, checkpoint).

Layout: ``b"SHOALMAN" u32 version u32 json_len u32 crc32c(json)`` then the JSON.
It is only ever replaced whole (temp file, fsync, rename, fsync the directory),
so a reader sees the old or the new commit point, never a mix.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from ..engine.errors import CorruptionError, FormatVersionError
from .io_errors import atomic_file
from .wal import crc32c

MAGIC = b"SHOALMAN"
VERSION = 1
NAME = "MANIFEST"
_PREFIX = struct.Struct("<8sIII")


def write_manifest(directory: Path, doc: dict[str, Any]) -> None:
    body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    with atomic_file(directory / NAME, "write the manifest") as f:
        f.write(_PREFIX.pack(MAGIC, VERSION, len(body), crc32c(body)))
        f.write(body)


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / NAME
    data = path.read_bytes()
    if len(data) < _PREFIX.size:
        raise CorruptionError(f"{path}: manifest truncated at offset {len(data)}")
    magic, version, length, crc = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CorruptionError(f"{path}: bad magic at offset 0; not a Shoal manifest")
    if version != VERSION:
        raise FormatVersionError(f"{path}: manifest format version {version} is not supported (supported: [{VERSION}])")
    body = data[_PREFIX.size:]
    if len(body) != length:
        raise CorruptionError(f"{path}: manifest body has {len(body)} bytes at offset {_PREFIX.size}, expected {length}")
    if crc32c(body) != crc:
        raise CorruptionError(f"{path}: manifest checksum mismatch (body at offset {_PREFIX.size})")
    return json.loads(body)
