"""A shard replica's replication position: the (epoch, sequence) of the last write it applied.

File layout (32 bytes, rewritten in place)::

    b"SHOALPOS"  u32 version  u64 epoch  u64 seq  u32 crc32c(first 28 bytes)

``seq`` numbers a shard's writes 1, 2, 3, ... in the order its leader applied them; ``epoch``
is the leader term under which that write was numbered, so two replicas that reached the
same ``seq`` under different leaders can tell their histories apart (``shoal.cluster``).
The position is written *after* the collection's own write-ahead log has the write, so after
a crash it lags the data by at most one write, and replaying that write is harmless (writes
are replayed in order and are idempotent then). A 32-byte write sits inside one sector; a
torn or damaged file fails its CRC and reads as ``CorruptionError``, and the replica then
takes a snapshot from a peer instead of trusting its own position.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import google_crc32c

from ..engine.errors import CorruptionError, FormatVersionError
from .io_errors import fsync_dir, storage_errors

MAGIC = b"SHOALPOS"
VERSION = 1
_BODY = struct.Struct("<8sIQQ")
_CRC = struct.Struct("<I")
SIZE = _BODY.size + _CRC.size


class PositionFile:
    """The open position file of one replica (created at (0, 0))."""

    def __init__(self, path: str | os.PathLike, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        with storage_errors(self.path, "open replica position"):
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if created:
            self.write(0, 0)
            fsync_dir(self.path.parent)

    def read(self) -> tuple[int, int]:
        """``(epoch, seq)``; CorruptionError / FormatVersionError when the file is damaged or foreign."""
        with storage_errors(self.path, "read replica position"):
            raw = os.pread(self._fd, SIZE, 0)
        if len(raw) != SIZE:
            raise CorruptionError(f"{self.path}: replica position is {len(raw)} bytes, expected {SIZE}")
        magic, version, epoch, seq = _BODY.unpack_from(raw)
        (crc,) = _CRC.unpack_from(raw, _BODY.size)
        if crc != google_crc32c.value(raw[:_BODY.size]):
            raise CorruptionError(f"{self.path}: replica position fails its checksum")
        if magic != MAGIC or version != VERSION:
            raise FormatVersionError(f"{self.path}: not a version-{VERSION} replica position file")
        return epoch, seq

    def write(self, epoch: int, seq: int) -> None:
        body = _BODY.pack(MAGIC, VERSION, epoch, seq)
        with storage_errors(self.path, "write replica position"):
            os.pwrite(self._fd, body + _CRC.pack(google_crc32c.value(body)), 0)
            if self.fsync:
                os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
