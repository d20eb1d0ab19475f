"""A full disk (or any I/O error) at the file layer: injected ENOSPC / EDQUOT / EIO.

The storage modules call ``os`` through their module globals, so a test swaps in an
``os`` whose chosen functions fail; everything else is the real thing. Checked: the
error is DiskFullError / StorageError naming the file, a failed WAL append leaves no
trace (neither the next append nor a replay sees it), replaced files stay whole and
temp files are removed, and everything works again once "space is back".
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shoal
from shoal.engine.errors import DiskFullError, ResourceExhaustedError, StorageError
from shoal.storage import arrayfile, io_errors, manifest, wal
from shoal.storage.wal import OP_UPSERT, WriteAheadLog, read_log, write_header


class FaultyOS:
    """The real ``os`` except ``fail``: function name -> errno it raises (after ``allow`` good calls)."""

    def __init__(self, fail: dict[str, int], allow: int = 0, partial: bool = False) -> None:
        self.fail, self.allow, self.partial, self.calls = fail, allow, partial, 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in self.fail:
            return real

        def faulty(*args: Any) -> Any:
            self.calls += 1
            if self.calls <= self.allow:
                return real(*args)
            if name == "write" and self.partial and self.calls == self.allow + 1:
                return real(args[0], args[1][: len(args[1]) // 2])  # half the frame reaches the file
            raise OSError(self.fail[name], os.strerror(self.fail[name]))

        return faulty


def _wal(tmp_path: Path, sync: str, **kw: Any) -> WriteAheadLog:
    path = tmp_path / "wal.log"
    write_header(path, 1)
    return WriteAheadLog(path, path.stat().st_size, 1, sync=sync, **kw)


def _append(log: WriteAheadLog, i: int) -> int:
    return log.append(OP_UPSERT, [i], np.full((1, 4), i, np.float32), [{"i": i}])


def test_disk_full_error_is_resource_exhausted() -> None:
    from shoal.rpc.status import _BY_CODE

    assert issubclass(DiskFullError, StorageError) and issubclass(DiskFullError, ResourceExhaustedError)
    assert DiskFullError.grpc_code == "RESOURCE_EXHAUSTED"
    assert _BY_CODE["RESOURCE_EXHAUSTED"] is ResourceExhaustedError  # the general class stays the default


@pytest.mark.parametrize("code, cls", [(errno.ENOSPC, DiskFullError), (errno.EDQUOT, DiskFullError),
                                       (errno.EIO, StorageError)])
def test_storage_errors_maps_errno(tmp_path: Path, code: int, cls: type) -> None:
    with pytest.raises(cls) as info, io_errors.storage_errors(tmp_path / "f", "write"):
        raise OSError(code, os.strerror(code))
    assert type(info.value) is cls and str(tmp_path / "f") in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize("sync", ["always", "batch", "never"])
@pytest.mark.parametrize("fault", ["write", "partial-write", "fdatasync"])
def test_failed_append_leaves_no_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: str,
                                       fault: str) -> None:
    if fault == "fdatasync" and sync == "never":
        pytest.skip("sync='never' does not fsync on append")
    log = _wal(tmp_path, sync, sync_records=1)  # batch: every append closes its group
    _append(log, 1)
    end = log.size
    name = "write" if fault != "fdatasync" else "fdatasync"
    monkeypatch.setattr(wal, "os", FaultyOS({name: errno.ENOSPC}, partial=fault == "partial-write"))
    with pytest.raises(DiskFullError, match="wal.log"):
        _append(log, 2)
    assert log.size == end and log.path.stat().st_size == end and log.next_seq == 2
    monkeypatch.setattr(wal, "os", os)  # space is back
    assert _append(log, 3) == 2
    log.close()
    _, records, valid_end, damaged = read_log(log.path)
    assert [r.ids for r in records] == [[1], [3]] and not damaged and valid_end == log.path.stat().st_size


def test_failed_rollback_refuses_later_appends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _wal(tmp_path, "always")
    _append(log, 1)
    monkeypatch.setattr(wal, "os", FaultyOS({"fdatasync": errno.EIO, "ftruncate": errno.EIO}))
    with pytest.raises(StorageError, match="wal.log"):
        _append(log, 2)
    monkeypatch.setattr(wal, "os", os)
    with pytest.raises(StorageError, match="reopen"):
        _append(log, 3)


def test_group_commit_failure_keeps_records_pending(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _wal(tmp_path, "batch", sync_interval_ms=1e6, sync_records=10**6)
    _append(log, 1)
    monkeypatch.setattr(wal, "os", FaultyOS({"fdatasync": errno.ENOSPC}))
    with pytest.raises(DiskFullError):
        log.sync_now()
    with pytest.raises(DiskFullError):
        log.close()  # close fails while the disk is full ...
    monkeypatch.setattr(wal, "os", os)
    log.close()  # ... and succeeds once space is back
    assert [r.ids for r in read_log(log.path)[1]] == [[1]]


@pytest.mark.parametrize("fault", ["write", "fsync"])
def test_replaced_files_stay_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    manifest.write_manifest(tmp_path, {"v": 1})
    arrayfile.write_arrays(tmp_path / "a.arr", "TEST", 1, {"x": np.arange(4)})
    faulty = FaultyOS({fault: errno.ENOSPC})
    if fault == "write":  # buffered file writes reach the disk at close: fail them through the file object
        monkeypatch.setattr(io_errors, "open", _full_disk_open, raising=False)
    else:
        monkeypatch.setattr(io_errors, "os", faulty)
    with pytest.raises(DiskFullError, match="MANIFEST"):
        manifest.write_manifest(tmp_path, {"v": 2})
    with pytest.raises(DiskFullError, match="a.arr"):
        arrayfile.write_arrays(tmp_path / "a.arr", "TEST", 1, {"x": np.arange(8)})
    monkeypatch.undo()
    assert manifest.read_manifest(tmp_path) == {"v": 1}
    assert arrayfile.read_arrays(tmp_path / "a.arr", "TEST", 1, mmap=False)[2]["x"].tolist() == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MANIFEST", "a.arr"]  # no temp file left behind


class _FullFile:
    """A binary file whose writes fail with ENOSPC."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def __enter__(self) -> "_FullFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.f.close()


def _full_disk_open(path: Any, mode: str = "r") -> _FullFile:
    return _FullFile(open(path, mode))


def test_upsert_on_full_disk_is_not_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    with shoal.Database(tmp_path / "db") as db:
        col = db.create_collection("c", dim=4)
        col.upsert([1, 2], rng.standard_normal((2, 4)))
        monkeypatch.setattr(wal, "os", FaultyOS({"write": errno.ENOSPC}, partial=True))
        with pytest.raises(DiskFullError):
            col.upsert([3, 4], rng.standard_normal((2, 4)))
        assert col.count() == 2
        monkeypatch.setattr(wal, "os", os)
        col.upsert([5], rng.standard_normal((1, 4)))
    with shoal.Database(tmp_path / "db") as db:
        assert sorted(db.get_collection("c").get([1, 2, 5]).ids) == [1, 2, 5]
        assert db.get_collection("c").count() == 3


@pytest.mark.parametrize("sync", ["always", "batch", "never"])
def test_seal_on_full_disk_loses_nothing_and_flush_close_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              sync: str) -> None:
    """A seal that fails (full disk) leaves every acknowledged upsert applied and logged; flush and
    close raise DiskFullError and succeed once space is back."""
    from shoal.storage import segment_files

    rng = np.random.default_rng(1)
    x = rng.standard_normal((90, 4)).astype(np.float32)
    db = shoal.Database(tmp_path / "db", sync=sync, flush_rows=10)
    col = db.create_collection("c", dim=4, metric="l2", optimizer={"background": False})
    col.upsert(list(range(30)), x[:30])
    real = segment_files._fsynced

    def full(path: Path, write: Any) -> list[int]:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(segment_files, "_fsynced", full)
    for s in range(30, 90, 10):  # each of these would seal: the seal fails, the upsert stands
        assert col.upsert(list(range(s, s + 10)), x[s:s + 10]) == 10
    assert col.count() == 90 and "seal failed" in col.describe()["optimizer"]["last_error"]
    assert not [p for p in (tmp_path / "db" / "collections" / "c").glob("seg-*")
                if not (p / "vectors.npy").exists()]  # no half-written segment left behind
    with pytest.raises(DiskFullError):
        col.flush()
    with pytest.raises(DiskFullError):
        db.close()
    assert col.count() == 90  # still open and whole after the failed close
    monkeypatch.setattr(segment_files, "_fsynced", real)
    db.close()
    with shoal.Database(tmp_path / "db") as db2:
        got = db2.get_collection("c").get(list(range(90)))
        np.testing.assert_array_equal(got.vectors, x)


@pytest.mark.parametrize("renamed", [False, True])
def test_log_rotation_failure_after_a_seal_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        renamed: bool) -> None:
    """The seal is committed before the log is rotated: a rotation that fails before its rename keeps
    appending to the old log (replay skips what the checkpoint covers); one that fails after it
    (say, the directory fsync) switches to the new log, so no later write goes to an unlinked file."""
    from shoal.engine import stores

    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 4)).astype(np.float32)
    db = shoal.Database(tmp_path / "db")
    col = db.create_collection("c", dim=4, metric="l2", optimizer={"background": False})
    col.upsert(list(range(10)), x[:10])
    real = stores.write_header

    def failing(path: Path, base_seq: int) -> None:
        if renamed:
            real(path, base_seq)
        raise DiskFullError(f"cannot create the write-ahead log {path}: No space left on device")

    monkeypatch.setattr(stores, "write_header", failing)
    col.flush()  # sealed and committed; only the rotation failed
    monkeypatch.setattr(stores, "write_header", real)
    col.upsert(list(range(10, 30)), x[10:])
    col.delete(ids=[3])
    db._release()  # a crash: nothing flushed at close
    with shoal.Database(tmp_path / "db") as db2:
        c2 = db2.get_collection("c")
        assert len(c2) == 29
        keep = [i for i in range(30) if i != 3]
        np.testing.assert_array_equal(c2.get(keep).vectors, x[keep])
