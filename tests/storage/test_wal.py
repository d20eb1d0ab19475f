"""Write-ahead log framing: round trip, torn tails, corruption detection and repair."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shoal.engine.errors import CorruptionError, FormatVersionError, InvalidArgumentError
from shoal.storage.wal import OP_DELETE, OP_UPSERT, WriteAheadLog, read_log, write_header


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
