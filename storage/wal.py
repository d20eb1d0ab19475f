"""Write-ahead log: every acknowledged write of a collection, framed and checksummed.

File layout::

    b"SHOALWAL"  u32 version  u64 base_seq       header (20 bytes); base_seq = first seq it may hold
    records:     u32 payload_len  u32 crc32c(len)  payload  u32 crc32c(payload)

Payload (no pickle): ``u8 op, u64 seq, u32 json_len, json`` then, for an upsert,
``u32 n, u32 dim`` and ``n*dim`` raw little-endian float32. The JSON holds the
external ids (and metadata for upserts). One call = one record, so a batch is
all-or-nothing on replay.

A failed append (the write or, in ``"always"`` mode, the fsync; e.g. a full disk) cuts
the file back to where the record began and raises ``DiskFullError`` / ``StorageError``,
so neither the next append nor a replay ever sees part of it, and the caller, which
logs before applying, applies nothing. If even that cut fails the log refuses further
appends until the collection is reopened (reopening drops a torn tail).

Torn tail: a crash can leave a prefix of the last record; a record whose
extent runs past the end of the file (or a complete final record failing its
checksum) is dropped. Any other damage raises CorruptionError naming the file
and offset; ``repair=True`` skips damaged bytes and keeps every valid record.

Durability modes (what an acknowledged write survives):

* ``"always"`` — fsync before the call returns: survives process crash and power loss.
* ``"batch"``  — written to the OS before return (survives a process crash); fsync in
  groups every ``sync_interval_ms`` or ``sync_records`` records, so power loss loses at
  most that window.
* ``"never"``  — written to the OS before return (survives a process crash); fsync only at
  flush/close, so power loss may lose everything since the last flush.
"""
from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

from ..engine.errors import CorruptionError, FormatVersionError, InvalidArgumentError, ShoalError, StorageError
from .io_errors import atomic_file, fsync_dir, storage_errors  # noqa: F401  (fsync_dir: re-exported)

log = logging.getLogger("shoal.storage")

MAGIC = b"SHOALWAL"
VERSION = 1
_HEADER = struct.Struct("<8sIQ")
_REC = struct.Struct("<II")
_CRC = struct.Struct("<I")
_BODY = struct.Struct("<BQI")
_SHAPE = struct.Struct("<II")
OP_UPSERT, OP_DELETE = 1, 2
SYNC_MODES = ("always", "batch", "never")


def crc32c(data: bytes | memoryview) -> int:
    return google_crc32c.value(bytes(data))


def check_sync(sync: str) -> str:
    if sync not in SYNC_MODES:
        raise InvalidArgumentError(f"sync must be one of {SYNC_MODES}, got {sync!r}")
    return sync


@dataclass
class Record:
    """One logged write: an upsert (ids, vectors, metadata) or a delete (ids)."""

    op: int
    seq: int
    ids: list[Any]
    vectors: np.ndarray | None = None
    metadata: list[dict[str, Any]] | None = None
    offset: int = 0


def encode(op: int, seq: int, ids: list[Any], vectors: np.ndarray | None = None,
           metadata: list[dict[str, Any]] | None = None) -> bytes:
    doc: dict[str, Any] = {"ids": ids}
    if metadata is not None:
        doc["meta"] = metadata
    js = json.dumps(doc, separators=(",", ":")).encode()
    parts = [_BODY.pack(op, seq, len(js)), js]
    if vectors is not None:
        v = np.ascontiguousarray(vectors, dtype="<f4")
        parts += [_SHAPE.pack(*v.shape), v.tobytes()]
    payload = b"".join(parts)
    length = _CRC.pack(len(payload))
    return b"".join([length, _CRC.pack(crc32c(length)), payload, _CRC.pack(crc32c(payload))])


def decode(payload: bytes, offset: int) -> Record:
    """A record's payload; raises ValueError/KeyError/struct.error unless it is exactly one
    upsert or delete (a valid checksum around anything else is a writer's bug, not a record)."""
    op, seq, jlen = _BODY.unpack_from(payload)
    if op not in (OP_UPSERT, OP_DELETE):
        raise ValueError(f"unknown op {op}")
    pos = _BODY.size + jlen
    doc = json.loads(payload[_BODY.size:pos])
    vectors = None
    if op == OP_UPSERT:
        n, dim = _SHAPE.unpack_from(payload, pos)
        pos += _SHAPE.size
        vectors = np.frombuffer(payload, "<f4", n * dim, pos).reshape(n, dim).astype(np.float32)
        pos += vectors.nbytes
    if pos != len(payload):
        raise ValueError(f"{len(payload) - pos} bytes past the record's content")
    return Record(op, seq, doc["ids"], vectors, doc.get("meta"), offset)


def write_header(path: Path, base_seq: int) -> None:
    """Create an empty log atomically (temp + fsync + rename + fsync dir)."""
    with atomic_file(path, "create the write-ahead log") as f:
        f.write(_HEADER.pack(MAGIC, VERSION, base_seq))


def _record_at(data: bytes, pos: int) -> tuple[str, int]:
    """Classify bytes at ``pos``: ("ok", end) | ("torn", _) | ("bad", _)."""
    size = len(data)
    if pos + _REC.size > size:
        return "torn", size
    length, len_crc = _REC.unpack_from(data, pos)
    if len_crc != crc32c(data[pos:pos + 4]):
        return "bad", pos
    end = pos + _REC.size + length + _CRC.size
    if end > size:
        return "torn", size
    payload = data[pos + _REC.size:end - _CRC.size]
    if _CRC.unpack_from(data, end - _CRC.size)[0] != crc32c(payload):
        return ("torn" if end == size else "bad"), pos
    return "ok", end


def read_log(path: Path, repair: bool = False) -> tuple[int, list[Record], int, list[int]]:
    """Parse a log: ``(base_seq, records, valid_end, damaged_offsets)``.

    ``valid_end`` is where the next record should be written (a torn tail is
    cut there). Without ``repair``, damage before the tail raises CorruptionError.
    """
    data = path.read_bytes()
    return (log_base(data, path), *parse_records(data, _HEADER.size, path, repair))


def log_base(data: bytes, path: Path) -> int:
    """The ``base_seq`` of a log's bytes, after checking its header."""
    if len(data) < _HEADER.size:
        raise CorruptionError(f"{path}: log header truncated at offset 0 ({len(data)} bytes)")
    magic, version, base_seq = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptionError(f"{path}: bad magic at offset 0; not a Shoal write-ahead log")
    if version != VERSION:
        raise FormatVersionError(f"{path}: log format version {version} is not supported (supported: [{VERSION}])")
    return base_seq


def parse_records(data: bytes, start: int, path: Path, repair: bool = False) -> tuple[list[Record], int, list[int]]:
    """The records of ``data`` from offset ``start`` (a record boundary: the header's end or an
    earlier ``valid_end``): ``(records, valid_end, damaged_offsets)``. A reader following a live
    log (``engine.follower``) parses only what was appended since it last looked."""
    records: list[Record] = []
    damaged: list[int] = []
    pos = start
    while pos < len(data):
        state, end = _record_at(data, pos)
        if state == "ok":
            payload = data[pos + _REC.size:end - _CRC.size]
            try:
                records.append(decode(payload, pos))
            except (ValueError, KeyError, struct.error) as exc:  # checksum ok but content unusable
                raise CorruptionError(f"{path}: undecodable record at offset {pos}: {exc}") from None
            pos = end
            continue
        if state == "torn":
            break
        if not repair:
            raise CorruptionError(f"{path}: record at offset {pos} fails its checksum (corrupt log; "
                                  "open with repair=True to keep every valid record)")
        damaged.append(pos)
        pos = _resync(data, pos + 1)
    return records, pos if pos <= len(data) else len(data), damaged


def _resync(data: bytes, pos: int) -> int:
    """Next offset holding a complete valid record (repair mode), else end of data."""
    while pos < len(data):
        if _record_at(data, pos)[0] == "ok":
            return pos
        pos += 1
    return len(data)


class WriteAheadLog:
    """Appends records with the configured durability; one writer (the collection's write lock)."""

    def __init__(self, path: Path, end: int, next_seq: int, sync: str = "always",
                 sync_interval_ms: float = 50.0, sync_records: int = 1000) -> None:
        self.path = path
        self.sync = check_sync(sync)
        self.next_seq = next_seq
        with storage_errors(path, "open the write-ahead log"):
            self._fd = os.open(path, os.O_WRONLY)
            os.ftruncate(self._fd, end)  # drop a torn tail before appending after it
            os.lseek(self._fd, end, os.SEEK_SET)
        self._end = end
        #: Set when a failed append could not be cut back: appending after it would corrupt the log.
        self._broken: StorageError | None = None
        self._pending = 0
        self._last_sync = time.monotonic()
        self._interval = sync_interval_ms / 1000.0
        self._sync_records = sync_records
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        if self.sync == "batch":
            self._thread = threading.Thread(target=self._sync_loop, name=f"wal-sync {path}", daemon=True)
            self._thread.start()

    def append(self, op: int, ids: list[Any], vectors: np.ndarray | None = None,
               metadata: list[dict[str, Any]] | None = None) -> int:
        """Write one record; returns when it is as durable as the sync mode promises."""
        seq = self.next_seq
        frame = encode(op, seq, ids, vectors, metadata)
        with self._cond:
            if self._broken is not None:
                raise StorageError(f"{self.path}: the write-ahead log refuses appends after a failed append "
                                   f"could not be rolled back ({self._broken}); reopen the collection")
            group_full = self.sync == "batch" and self._pending + 1 >= self._sync_records
            try:
                with storage_errors(self.path, "append to"):
                    written = 0
                    while written < len(frame):
                        written += os.write(self._fd, frame[written:])
                    if self.sync == "always" or group_full:
                        os.fdatasync(self._fd)  # this record and every pending one
            except ShoalError:
                self._roll_back()
                raise
            self._end += len(frame)
            self.next_seq = seq + 1
            if self.sync == "always" or group_full:
                self._pending = 0
                self._last_sync = time.monotonic()
            else:
                self._pending += 1
        return seq

    def _roll_back(self) -> None:
        """Cut the file back to the end of the last complete record (after a failed append)."""
        try:
            os.ftruncate(self._fd, self._end)
            os.lseek(self._fd, self._end, os.SEEK_SET)
        except OSError as exc:
            self._broken = StorageError(f"cannot truncate {self.path} to offset {self._end}: {exc.strerror}")

    def _sync_locked(self) -> None:
        if self._pending:
            with storage_errors(self.path, "sync"):
                os.fdatasync(self._fd)
            self._pending = 0
        self._last_sync = time.monotonic()

    def _sync_loop(self) -> None:
        with self._cond:
            while not self._closed:
                self._cond.wait(self._interval)
                if not self._closed:
                    try:
                        self._sync_locked()
                    except StorageError as exc:  # acknowledged records stay pending: retried next interval
                        log.warning("group commit of %s failed, retrying: %s", self.path, exc)

    def sync_now(self) -> None:
        with self._cond:
            self._sync_locked()

    @property
    def size(self) -> int:
        return self._end

    def replaced(self) -> bool:
        """Whether the file at ``path`` is no longer the one this log writes (a new log took its name)."""
        with storage_errors(self.path, "inspect"):
            return os.stat(self.path).st_ino != os.fstat(self._fd).st_ino

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._sync_locked()  # raises while the disk is full; close() again once there is space
            self._closed = True
            self._cond.notify_all()
            os.close(self._fd)
        if self._thread is not None:
            self._thread.join()
