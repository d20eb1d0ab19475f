"""A small versioned container for named numpy arrays plus JSON metadata.

Used for index files and segment side files. No pickle: the header is JSON,
arrays are raw little-endian bytes at 64-byte aligned offsets, so they can be
memory-mapped on load.

Layout::

    b"SHOALARR"            8-byte magic
    kind                   8 bytes, ASCII, space padded (e.g. b"HNSW    ")
    version                uint32 little endian
    header_len             uint32
    header                 JSON: {"meta": {...}, "arrays": {name: {dtype, shape, offset}}}
    header_crc             uint32 CRC32 of the header bytes
    ...arrays at their offsets
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.errors import CorruptionError, FormatVersionError
from .io_errors import atomic_file

MAGIC = b"SHOALARR"
_PREFIX = struct.Struct("<8s8sII")
_ALIGN = 64


def _kind_bytes(kind: str) -> bytes:
    raw = kind.encode("ascii")
    if len(raw) > 8:
        raise ValueError(f"kind {kind!r} longer than 8 bytes")
    return raw.ljust(8)


def write_arrays(path: str | os.PathLike, kind: str, version: int, arrays: dict[str, np.ndarray],
                 meta: dict[str, Any] | None = None, fsync: bool = True) -> None:
    """Write arrays atomically (temp file + rename) so a crash never leaves half a file."""
    path = Path(path)
    descr: dict[str, dict[str, Any]] = {}
    offset = 0
    prepared: list[tuple[int, np.ndarray]] = []
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        if a.dtype == object:
            raise TypeError(f"array {name!r} has dtype object; not storable")
        descr[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset,
                       "crc32": zlib.crc32(memoryview(a).cast("B")) if a.nbytes else 0}
        prepared.append((offset, a))
        offset += -(-a.nbytes // _ALIGN) * _ALIGN
    header = json.dumps({"meta": meta or {}, "arrays": descr}, sort_keys=True).encode()
    data_start = -(-(_PREFIX.size + len(header) + 4) // _ALIGN) * _ALIGN
    with atomic_file(path, "write", fsync=fsync) as f:
        f.write(_PREFIX.pack(MAGIC, _kind_bytes(kind), version, len(header)))
        f.write(header)
        f.write(struct.pack("<I", zlib.crc32(header)))
        for off, a in prepared:
            f.seek(data_start + off)
            f.write(a.tobytes())
        f.truncate(data_start + (prepared[-1][0] + prepared[-1][1].nbytes if prepared else 0))


def read_arrays(path: str | os.PathLike, kind: str, versions: tuple[int, ...] | int,
                mmap: bool = True, verify: bool = True) -> tuple[int, dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`write_arrays`; returns ``(version, meta, arrays)``.

    ``verify`` checks each array's CRC32 (one sequential read), so a flipped
    byte is reported instead of answered from.

    Raises FormatVersionError for a wrong kind or unknown version and
    CorruptionError for a damaged header or truncated data.
    """
    path = Path(path)
    if isinstance(versions, int):
        versions = (versions,)
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size or prefix[:8] != MAGIC:
            raise FormatVersionError(f"{path}: not a Shoal array file (bad magic)")
        _, file_kind, version, header_len = _PREFIX.unpack(prefix)
        if file_kind != _kind_bytes(kind):
            raise FormatVersionError(
                f"{path}: file holds {file_kind.decode(errors='replace').strip()!r}, expected {kind!r}")
        if version not in versions:
            raise FormatVersionError(
                f"{path}: format version {version} of {kind!r} is not supported (supported: {list(versions)})")
        header = f.read(header_len)
        crc = f.read(4)
    if len(header) != header_len or len(crc) != 4 or struct.unpack("<I", crc)[0] != zlib.crc32(header):
        raise CorruptionError(f"{path}: header checksum mismatch at offset {_PREFIX.size}")
    doc = json.loads(header)
    data_start = -(-(_PREFIX.size + header_len + 4) // _ALIGN) * _ALIGN
    arrays: dict[str, np.ndarray] = {}
    for name, d in doc["arrays"].items():
        dtype = np.dtype(d["dtype"])
        shape = tuple(d["shape"])
        start = data_start + d["offset"]
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if start + nbytes > size:
            raise CorruptionError(f"{path}: array {name!r} truncated (needs bytes up to {start + nbytes}, file has {size})")
        if nbytes == 0:
            arrays[name] = np.zeros(shape, dtype=dtype)
        elif mmap:
            arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape)
        else:
            with open(path, "rb") as f:
                f.seek(start)
                arrays[name] = np.frombuffer(f.read(nbytes), dtype=dtype).reshape(shape).copy()
        if verify and nbytes and zlib.crc32(memoryview(np.ascontiguousarray(arrays[name])).cast("B")) != d.get("crc32"):
            raise CorruptionError(f"{path}: array {name!r} checksum mismatch (data at offset {start})")
    return version, doc["meta"], arrays


def read_kind(path: str | os.PathLike) -> str:
    """The kind tag of an array file, to dispatch loading to the right class."""
    with open(path, "rb") as f:
        prefix = f.read(_PREFIX.size)
    if len(prefix) < _PREFIX.size or prefix[:8] != MAGIC:
        raise FormatVersionError(f"{path}: not a Shoal array file (bad magic)")
    return prefix[8:16].decode("ascii", errors="replace").strip()
