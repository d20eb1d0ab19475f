"""Write-ahead log framing: round trip, torn tails, corruption detection and repair."""
from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from shoal.engine.errors import CorruptionError, FormatVersionError, InvalidArgumentError
from shoal.storage import wal as wal_module
from shoal.storage.wal import OP_DELETE, OP_UPSERT, WriteAheadLog, read_log, write_header
from tests.conftest import wait_for


def _log(path: Path, n: int, rng: np.random.Generator) -> list[tuple[list, np.ndarray]]:
    write_header(path, 1)
    wal = WriteAheadLog(path, path.stat().st_size, 1, sync="never")
    batches = []
    for b in range(n):
        ids = [f"id{b}-{j}" for j in range(3)] if b % 2 else [b * 10 + j for j in range(3)]
        x = rng.standard_normal((3, 4)).astype(np.float32)
        wal.append(OP_UPSERT, ids, x, [{"b": b, "tags": ["x"]} for _ in ids])
        batches.append((ids, x))
    wal.append(OP_DELETE, batches[0][0])
    wal.close()
    return batches


def test_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "wal.log"
    batches = _log(path, 5, rng)
    base, records, end, damaged = read_log(path)
    assert base == 1 and end == path.stat().st_size and not damaged
    assert [r.seq for r in records] == list(range(1, 7))
    for rec, (ids, x) in zip(records, batches):
        assert rec.op == OP_UPSERT and rec.ids == ids and np.array_equal(rec.vectors, x)
        assert rec.metadata[0]["tags"] == ["x"]
    assert records[-1].op == OP_DELETE and records[-1].ids == batches[0][0] and records[-1].vectors is None


def test_torn_tail_dropped_at_every_cut(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "wal.log"
    _log(path, 3, rng)
    data = path.read_bytes()
    _, records, _, _ = read_log(path)
    last_start = records[-1].offset
    for cut in range(last_start, len(data)):
        path.write_bytes(data[:cut])
        _, got, end, damaged = read_log(path)
        assert [r.seq for r in got] == [r.seq for r in records[:-1]] and end == last_start and not damaged


def test_corruption_in_the_middle_raises_and_repair_keeps_valid(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "wal.log"
    _log(path, 5, rng)
    _, records, _, _ = read_log(path)
    data = bytearray(path.read_bytes())
    for where in (records[1].offset + 2, records[1].offset + 30):  # length field, then payload
        bad = bytearray(data)
        bad[where] ^= 0x40
        path.write_bytes(bad)
        with pytest.raises(CorruptionError, match=rf"wal.log: record at offset {records[1].offset}"):
            read_log(path)
        _, kept, _, damaged = read_log(path, repair=True)
        assert damaged == [records[1].offset]
        assert [r.seq for r in kept] == [1, 3, 4, 5, 6]


def test_header_errors(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "wal.log"
    _log(path, 1, rng)
    data = bytearray(path.read_bytes())
    data[8] = 9  # version
    path.write_bytes(data)
    with pytest.raises(FormatVersionError, match="version 9"):
        read_log(path)
    path.write_bytes(b"NOTAWAL!" + bytes(data[8:]))
    with pytest.raises(CorruptionError, match="bad magic"):
        read_log(path)
    with pytest.raises(InvalidArgumentError, match="sync must be one of"):
        WriteAheadLog(path, 0, 1, sync="sometimes")


def test_truncated_header_and_empty_log(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    write_header(path, 42)
    assert path.stat().st_size == 20
    assert read_log(path) == (42, [], 20, [])  # a header alone: an empty log that starts at seq 42
    for cut in (0, 7, 19):
        path.write_bytes(path.read_bytes()[:cut] if cut else b"")
        with pytest.raises(CorruptionError, match=rf"log header truncated at offset 0 \({cut} bytes\)"):
            read_log(path)
        write_header(path, 42)


def _frame(payload: bytes) -> bytes:
    from shoal.storage.wal import crc32c

    length = struct.pack("<I", len(payload))
    return length + struct.pack("<I", crc32c(length)) + payload + struct.pack("<I", crc32c(payload))


@pytest.mark.parametrize("payload", [
    struct.pack("<BQI", OP_DELETE, 1, 5) + b"{bad}",  # checksum fine, JSON not
    struct.pack("<BQI", OP_DELETE, 1, 2) + b"{}",  # JSON without ids
    struct.pack("<BQI", OP_UPSERT, 1, 11) + b'{"ids":[1]}',  # an upsert without its shape
    b"\x01\x02",  # shorter than the record's fixed fields
    struct.pack("<BQI", 3, 1, 11) + b'{"ids":[1]}',  # an op that does not exist
    struct.pack("<BQI", OP_DELETE, 1, 11) + b'{"ids":[1]}' + b"\x00",  # a byte past the content
    struct.pack("<BQI", OP_UPSERT, 1, 11) + b'{"ids":[1]}' + struct.pack("<II", 1, 2) + b"\x00" * 9,
])
def test_undecodable_record_with_a_valid_checksum(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "wal.log"
    write_header(path, 1)
    with open(path, "ab") as f:
        f.write(_frame(payload))
    with pytest.raises(CorruptionError, match="wal.log: undecodable record at offset 20"):
        read_log(path)


def test_record_layout_is_as_documented(tmp_path: Path) -> None:
    from shoal.storage.wal import crc32c, encode

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    frame = encode(OP_UPSERT, 7, [1, "b"], x, [{"k": 1}, {}])
    length, len_crc = struct.unpack_from("<II", frame)
    payload = frame[8:8 + length]
    assert len(frame) == 8 + length + 4 and len_crc == crc32c(frame[:4])
    assert struct.unpack_from("<I", frame, 8 + length)[0] == crc32c(payload)
    op, seq, jlen = struct.unpack_from("<BQI", payload)
    assert (op, seq) == (OP_UPSERT, 7)
    assert payload[13:13 + jlen] == b'{"ids":[1,"b"],"meta":[{"k":1},{}]}'
    assert struct.unpack_from("<II", payload, 13 + jlen) == (2, 3)
    assert payload[13 + jlen + 8:] == x.astype("<f4").tobytes()
    header = (tmp_path / "h")
    write_header(header, 5)
    assert header.read_bytes() == b"SHOALWAL" + struct.pack("<IQ", 1, 5)


def _count_fdatasync(monkeypatch: pytest.MonkeyPatch, fail_first: bool = False) -> list[int]:
    """Record each fdatasync the log makes (the first fails with a full disk when ``fail_first``)."""
    syncs: list[int] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        syncs.append(fd)
        if fail_first and len(syncs) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(wal_module.os, "fdatasync", counted)
    return syncs


def test_batch_mode_fsyncs_every_sync_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "wal.log"
    write_header(path, 1)
    syncs = _count_fdatasync(monkeypatch)
    log = WriteAheadLog(path, 20, 1, sync="batch", sync_interval_ms=60_000, sync_records=3)  # the timer never fires
    try:
        for i in range(7):
            log.append(OP_DELETE, [i])
        assert len(syncs) == 2 and log._pending == 1  # after records 3 and 6
        log.sync_now()
        assert len(syncs) == 3 and log._pending == 0
        log.sync_now()
        assert len(syncs) == 3  # nothing pending: no fsync
    finally:
        log.close()
    always = tmp_path / "always.log"
    write_header(always, 1)
    log = WriteAheadLog(always, 20, 1, sync="always")
    log.append(OP_DELETE, [1])
    log.append(OP_DELETE, [2])
    assert len(syncs) == 5 and log._pending == 0
    log.close()
    never = tmp_path / "never.log"
    write_header(never, 1)
    log = WriteAheadLog(never, 20, 1, sync="never")
    log.append(OP_DELETE, [1])
    assert len(syncs) == 5 and log._pending == 1
    log.close()  # close syncs what is pending
    assert len(syncs) == 6


def test_appends_continue_after_a_torn_tail_and_keep_sequence(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "wal.log"
    _log(path, 2, rng)
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # a torn last record (the delete, seq 3)
    base, records, end, _ = read_log(path)
    assert [r.seq for r in records] == [1, 2]
    log = WriteAheadLog(path, end, records[-1].seq + 1, sync="never")
    assert log.size == end and log.append(OP_DELETE, ["x"]) == 3 and log.next_seq == 4
    log.close()
    _, records, end, _ = read_log(path)
    assert [(r.seq, r.ids) for r in records][-1] == (3, ["x"]) and end == path.stat().st_size


def test_replaced_notices_a_new_file_under_the_name(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    write_header(path, 1)
    log = WriteAheadLog(path, 20, 1)
    try:
        assert log.replaced() is False
        write_header(path, 9)  # atomic replace: a new inode takes the name
        assert log.replaced() is True
    finally:
        log.close()


def test_a_damaged_last_record_is_a_torn_tail_but_garbage_is_not(tmp_path: Path, rng: np.random.Generator) -> None:
    """A complete final record that fails its checksum is what a crash mid-write leaves: dropped.
    Bytes after the last record that are not the start of a record are damage: reported."""
    path = tmp_path / "wal.log"
    _log(path, 3, rng)
    data = path.read_bytes()
    _, records, _, _ = read_log(path)
    last = records[-1].offset
    bad = bytearray(data)
    bad[-6] ^= 0x10  # inside the last record's payload
    path.write_bytes(bytes(bad))
    _, got, end, damaged = read_log(path)
    assert [r.seq for r in got] == [r.seq for r in records[:-1]] and end == last and not damaged
    for tail in (b"\x12" * 8, b"\x12" * 9, b"\x00" * 12):  # 8 bytes exactly: a length whose check fails
        path.write_bytes(data + tail)
        with pytest.raises(CorruptionError, match=rf"record at offset {len(data)} fails its checksum"):
            read_log(path)
        _, got, end, damaged = read_log(path, repair=True)
        assert [r.seq for r in got] == [r.seq for r in records] and damaged == [len(data)] and end == len(data) + len(tail)
    for cut in (1, 7):  # fewer bytes than a length and its check: a torn start of a record
        path.write_bytes(data + b"\xff" * cut)
        _, got, end, damaged = read_log(path)
        assert len(got) == len(records) and end == len(data) and not damaged


def test_repair_resumes_at_the_next_valid_record(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "wal.log"
    _log(path, 4, rng)
    _, records, _, _ = read_log(path)
    data = bytearray(path.read_bytes())
    for r in (records[1], records[2]):  # two damaged records in a row
        data[r.offset + 30] ^= 0x01
    path.write_bytes(bytes(data))
    _, kept, end, damaged = read_log(path, repair=True)
    assert [r.seq for r in kept] == [1, 4, 5] and damaged == [records[1].offset] and end == len(data)
    assert [r.offset for r in kept] == [records[0].offset, records[3].offset, records[4].offset]


def test_batch_mode_syncs_on_its_timer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "wal.log"
    write_header(path, 1)
    syncs = _count_fdatasync(monkeypatch)
    log = WriteAheadLog(path, 20, 1, sync="batch", sync_interval_ms=20, sync_records=10**6)
    try:
        assert log._interval == 0.02 and log._thread is not None and log._thread.daemon  # never holds up exit
        log.append(OP_DELETE, [1])
        wait_for(lambda: log._pending == 0, timeout=10, what="the group commit timer")
        assert len(syncs) == 1  # one fsync for the pending record; idle intervals sync nothing
        log.append(OP_DELETE, [2])
        wait_for(lambda: len(syncs) == 2, timeout=10, what="a second group commit")
    finally:
        log.close()
    assert log._thread is not None and not log._thread.is_alive()
    for sync in ("always", "never"):  # no timer thread outside batch mode
        other = tmp_path / f"{sync}.log"
        write_header(other, 1)
        log = WriteAheadLog(other, 20, 1, sync=sync)
        assert log._thread is None
        log.close()
        log.close()  # closing twice is harmless


def test_op_codes_are_fixed_in_the_format(tmp_path: Path) -> None:
    """Logs outlive the code that wrote them: an upsert is op 1 and a delete op 2 on disk."""
    from shoal.storage.wal import encode

    assert (OP_UPSERT, OP_DELETE) == (1, 2)
    payload = b"\x02" + struct.pack("<QI", 3, 11) + b'{"ids":[5]}'
    assert encode(OP_DELETE, 3, [5]) == _frame(payload)
    assert encode(OP_UPSERT, 3, [5], np.zeros((1, 1), np.float32))[8] == 1
    path = tmp_path / "wal.log"  # a record written by hand, byte by byte, replays as a delete
    write_header(path, 3)
    with open(path, "ab") as f:
        f.write(_frame(payload))
    (rec,) = read_log(path)[1]
    assert (rec.op, rec.seq, rec.ids, rec.vectors) == (OP_DELETE, 3, [5], None)


def test_a_failed_group_commit_is_retried_by_the_timer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "wal.log"
    write_header(path, 1)
    calls = _count_fdatasync(monkeypatch, fail_first=True)
    log = WriteAheadLog(path, 20, 1, sync="batch", sync_interval_ms=20, sync_records=10**6)
    try:
        log.append(OP_DELETE, [1])
        wait_for(lambda: log._pending == 0, timeout=10, what="the retried group commit")
        assert len(calls) == 2 and "group commit of" in caplog.text and "retrying" in caplog.text
    finally:
        log.close()


def test_bytes_past_a_records_content_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    write_header(path, 1)
    with open(path, "ab") as f:
        f.write(_frame(struct.pack("<BQI", OP_DELETE, 1, 11) + b'{"ids":[1]}' + b"\x00\x00\x00"))
    with pytest.raises(CorruptionError, match=r"offset 20: 3 bytes past the record's content"):
        read_log(path)


def test_a_follower_parses_from_where_it_stopped_and_never_repairs(tmp_path: Path, rng: np.random.Generator) -> None:
    """``parse_records`` from an earlier ``valid_end`` (a read-only follower's catch-up) returns only
    what was appended since, and by default raises on damage instead of skipping it."""
    from shoal.storage.wal import parse_records

    path = tmp_path / "wal.log"
    _log(path, 5, rng)
    data = path.read_bytes()
    _, records, end, _ = read_log(path)
    later, later_end, damaged = parse_records(data, records[3].offset, path)
    assert [r.seq for r in later] == [4, 5, 6] and later_end == end and not damaged
    assert parse_records(data, end, path) == ([], end, [])
    bad = bytearray(data)
    bad[records[4].offset + 30] ^= 0x40
    with pytest.raises(CorruptionError, match=rf"record at offset {records[4].offset}"):
        parse_records(bytes(bad), records[3].offset, path)
    kept, _, damaged = parse_records(bytes(bad), records[3].offset, path, repair=True)
    assert [r.seq for r in kept] == [4, 6] and damaged == [records[4].offset]
