"""The manifest and segment files, directly (fast; they guard storage/manifest.py and
storage/segment_files.py in ``make mutation``): round trips, every header field checked with
an error naming the file and offset, tombstone generations, the verify option."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from shoal.engine.errors import CorruptionError, FormatVersionError
from shoal.index.flat import FlatIndex
from shoal.storage import manifest, segment_files
from shoal.storage.segment_files import SegmentData, read_segment, write_segment, write_tombstones
from shoal.storage.wal import crc32c

DOC = {"name": "c", "segments": [{"dir": "seg-1", "n": 3}], "checkpoint": 7, "ünïcode": "✓"}


def test_manifest_round_trip_and_layout(tmp_path: Path) -> None:
    manifest.write_manifest(tmp_path, DOC)
    data = (tmp_path / manifest.NAME).read_bytes()
    magic, version, length, crc = struct.unpack_from("<8sIII", data)
    body = data[20:]
    assert (magic, version, length, crc) == (b"SHOALMAN", 1, len(body), crc32c(body))
    assert json.loads(body) == DOC and body == json.dumps(DOC, sort_keys=True, separators=(",", ":")).encode()
    assert manifest.read_manifest(tmp_path) == DOC
    manifest.write_manifest(tmp_path, {"v": 2})  # replaced whole
    assert manifest.read_manifest(tmp_path) == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == [manifest.NAME]  # no temp file left


def _damaged(tmp_path: Path, edit) -> Path:  # noqa: ANN001
    manifest.write_manifest(tmp_path, DOC)
    path = tmp_path / manifest.NAME
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(edit(data)))
    return path


@pytest.mark.parametrize("edit, error, message", [
    (lambda d: d[:19], CorruptionError, "manifest truncated at offset 19"),
    (lambda d: d[:0], CorruptionError, "manifest truncated at offset 0"),
    (lambda d: b"SHOALMAX" + d[8:], CorruptionError, "bad magic at offset 0"),
    (lambda d: d[:8] + struct.pack("<I", 2) + d[12:], FormatVersionError, r"version 2 is not supported \(supported: \[1\]\)"),
    (lambda d: d[:8] + struct.pack("<I", 0) + d[12:], FormatVersionError, "version 0"),
    (lambda d: d[:-1], CorruptionError, r"body has \d+ bytes at offset 20, expected"),
    (lambda d: d + b" ", CorruptionError, "expected"),
    (lambda d: d[:-2] + bytes([d[-2] ^ 1]) + d[-1:], CorruptionError, "checksum mismatch \\(body at offset 20\\)"),
    (lambda d: d[:16] + struct.pack("<I", (struct.unpack_from("<I", d, 16)[0] + 1) % 2**32) + d[20:],
     CorruptionError, "checksum mismatch"),
])
def test_manifest_damage_is_named(tmp_path: Path, edit, error, message) -> None:  # noqa: ANN001
    path = _damaged(tmp_path, edit)
    with pytest.raises(error, match=message) as info:
        manifest.read_manifest(tmp_path)
    assert str(path) in str(info.value)


def test_manifest_header_exactly_20_bytes_with_empty_body(tmp_path: Path) -> None:
    path = tmp_path / manifest.NAME
    path.write_bytes(struct.pack("<8sIII", b"SHOALMAN", 1, 0, crc32c(b"")))
    with pytest.raises(json.JSONDecodeError):  # a valid frame around no JSON: the header checks all pass
        manifest.read_manifest(tmp_path)


# ---------------------------------------------------------------- segments

def _data(n: int = 6, dim: int = 4, index: bool = False) -> SegmentData:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    live = np.ones(n, bool)
    live[[1, 4]] = False
    idx = None
    if index:
        idx = FlatIndex(dim)
        idx.add(x, np.arange(n))
    rows = {"id.value": np.arange(n, dtype=np.int64) * 10, "p.0.kind": np.full(n, 5, np.int8)}
    return SegmentData(x, (x ** 2).sum(1).astype(np.float32), live, rows, {"ids": {"others": [[1, "s"]]}}, idx)


def test_segment_round_trip_with_tombstones_and_index(tmp_path: Path) -> None:
    data = _data(index=True)
    entry = write_segment(tmp_path / "seg-1", data, generation=3)
    assert entry["dir"] == "seg-1" and entry["n"] == 6 and entry["dead"] == 2 and entry["tomb"] == "tomb-00000003.npy"
    assert set(entry["files"]) == {"vectors.npy", "norms.npy", "rows.bin", "index.bin", "tomb-00000003.npy"}
    for name, (size, crc) in entry["files"].items():
        path = tmp_path / "seg-1" / name
        assert path.stat().st_size == size and segment_files.file_crc(path) == crc
    got = read_segment(tmp_path, entry, 4, None)
    np.testing.assert_array_equal(got.vectors, data.vectors)
    np.testing.assert_array_equal(got.norms, data.norms)
    assert isinstance(got.vectors, np.memmap) and isinstance(got.norms, np.memmap)
    assert got.live.tolist() == data.live.tolist()
    assert got.row_meta == data.row_meta and set(got.row_arrays) == set(data.row_arrays)
    for name, arr in data.row_arrays.items():  # the engine's row arrays, memory-mapped back unchanged
        np.testing.assert_array_equal(got.row_arrays[name], arr)
        assert isinstance(got.row_arrays[name], np.memmap)
    assert got.index is not None and got.index.ntotal == 6 and got.legacy_rows is None


def test_all_live_segment_has_no_tombstones(tmp_path: Path) -> None:
    data = _data()
    data.live[:] = True
    entry = write_segment(tmp_path / "seg-2", data, generation=1)
    assert entry["tomb"] is None and entry["dead"] == 0 and "index.bin" not in entry["files"]
    got = read_segment(tmp_path, entry, 4, None)
    assert got.live.all() and got.index is None
    np.testing.assert_array_equal(got.row_arrays["id.value"], data.row_arrays["id.value"])


def test_tombstone_generations_replace_each_other(tmp_path: Path) -> None:
    data = _data()
    entry = write_segment(tmp_path / "seg-1", data, generation=1)
    live = data.live.copy()
    live[[0, 5]] = False
    write_tombstones(tmp_path, entry, live, generation=2)
    assert entry["tomb"] == "tomb-00000002.npy" and entry["dead"] == 4
    assert "tomb-00000001.npy" not in entry["files"] and "tomb-00000002.npy" in entry["files"]
    got = read_segment(tmp_path, entry, 4, None)
    assert got.live.tolist() == live.tolist()
    write_tombstones(tmp_path, entry, live, generation=2)  # the same generation again: kept, not dropped
    assert entry["tomb"] == "tomb-00000002.npy" and "tomb-00000002.npy" in entry["files"]


@pytest.mark.parametrize("name", ["vectors.npy", "rows.bin", "norms.npy"])
def test_damaged_segment_files_are_named(tmp_path: Path, name: str) -> None:
    entry = write_segment(tmp_path / "seg-1", _data(), generation=1)
    path = tmp_path / "seg-1" / name
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match=f"{name}: checksum mismatch"):
        read_segment(tmp_path, entry, 4, None)
    if name == "rows.bin":  # verify=False skips the checksum (the size still matches): damaged data is read
        got = read_segment(tmp_path, entry, 4, None, verify=False)
        assert not np.array_equal(got.row_arrays["p.0.kind"], np.full(6, 5, np.int8))
    path.write_bytes(bytes(data[:-5]))
    with pytest.raises(CorruptionError, match=rf"size {len(data) - 5} bytes, manifest says {len(data)} "
                       rf"\(truncated or extended at offset {len(data) - 5}\)"):
        read_segment(tmp_path, entry, 4, None, verify=False)
    path.write_bytes(bytes(data) + b"\0" * 3)  # extended: the damage starts where the file should end
    with pytest.raises(CorruptionError, match=rf"size {len(data) + 3} bytes, manifest says {len(data)} "
                       rf"\(truncated or extended at offset {len(data)}\)"):
        read_segment(tmp_path, entry, 4, None, verify=False)


def test_verify_false_skips_only_the_checksum(tmp_path: Path) -> None:
    entry = write_segment(tmp_path / "seg-1", _data(), generation=1)
    entry["files"]["vectors.npy"][1] ^= 1  # the manifest's CRC is wrong, the file is fine
    with pytest.raises(CorruptionError, match="checksum"):
        read_segment(tmp_path, entry, 4, None)
    got = read_segment(tmp_path, entry, 4, None, verify=False)
    assert got.vectors.shape == (6, 4)


def test_missing_file_and_shape_mismatch(tmp_path: Path) -> None:
    entry = write_segment(tmp_path / "seg-1", _data(), generation=1)
    with pytest.raises(FormatVersionError, match=r"do not match the manifest \(6, 5\) float32"):
        read_segment(tmp_path, entry, 5, None)
    bad = dict(entry, n=7)
    with pytest.raises(FormatVersionError, match="do not match"):
        read_segment(tmp_path, bad, 4, None)
    (tmp_path / "seg-1" / "norms.npy").unlink()
    with pytest.raises(FileNotFoundError, match="listed in the manifest but missing"):
        read_segment(tmp_path, entry, 4, None)


def test_a_failed_write_leaves_no_directory(tmp_path: Path) -> None:
    data = _data()
    data.row_meta["x"] = object()  # not JSON: the write fails after the vectors were written
    with pytest.raises(TypeError):
        write_segment(tmp_path / "seg-9", data, generation=1)
    assert not (tmp_path / "seg-9").exists()


def test_a_failed_cleanup_never_hides_the_writes_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second fault (the partial directory cannot be removed either) leaves the directory behind,
    but the caller still sees the write's own error, not the cleanup's OSError."""
    import os

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003
        raise PermissionError("read-only file system")

    data = _data()
    data.row_meta["x"] = object()
    monkeypatch.setattr(os, "rmdir", refuse)
    monkeypatch.setattr(os, "unlink", refuse)
    with pytest.raises(TypeError):
        write_segment(tmp_path / "seg-9", data, generation=1)
    monkeypatch.undo()
    assert (tmp_path / "seg-9").is_dir()  # the store removes unlisted directories when it next opens


def test_npy_that_is_not_an_array_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CorruptionError, match="not a readable .npy array"):
        segment_files._load_npy(path, True)


def _rewrite(tmp_path: Path, entry: dict, name: str, array: np.ndarray) -> None:
    """Replace a segment file with another array, recorded in the entry (size and CRC agree)."""
    path = tmp_path / entry["dir"] / name
    np.save(path, array)
    entry["files"][name] = [path.stat().st_size, segment_files.file_crc(path)]


def test_vectors_and_norms_must_each_match_the_manifest(tmp_path: Path) -> None:
    data = _data()
    for name, array in (("norms.npy", data.norms[:5]), ("vectors.npy", data.vectors.astype(np.float64)),
                        ("vectors.npy", data.vectors[:5])):
        entry = write_segment(tmp_path / f"seg-{name}-{array.dtype}-{len(array)}", data, generation=1)
        _rewrite(tmp_path, entry, name, array)
        with pytest.raises(FormatVersionError, match=r"do not match the manifest \(6, 4\) float32"):
            read_segment(tmp_path, entry, 4, None)


def test_postings_round_trip_and_are_checked(tmp_path: Path) -> None:
    from shoal.index.inverted import PostingsBuilder

    builder = PostingsBuilder(np.int64)
    for row in range(6):
        builder.add([row % 3, 7] if row != 2 else None, [1.0, 0.5] if row != 2 else None, doclen=2.0)
    data = _data()
    data.postings = {"body": builder.freeze()}
    entry = write_segment(tmp_path / "seg-1", data, generation=1)
    assert "postings.bin" in entry["files"]
    got = read_segment(tmp_path, entry, 4, None)
    assert list(got.postings) == ["body"]
    for key, arr in data.postings["body"].to_arrays().items():
        np.testing.assert_array_equal(got.postings["body"].to_arrays()[key], arr)
    assert read_segment(tmp_path, write_segment(tmp_path / "seg-2", _data(), 1), 4, None).postings is None
    path = tmp_path / "seg-1" / "postings.bin"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x20
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptionError, match="postings.bin: checksum mismatch"):
        read_segment(tmp_path, entry, 4, None)


def test_segments_written_before_the_rows_file_are_read(tmp_path: Path) -> None:
    data = _data()
    entry = write_segment(tmp_path / "seg-1", data, generation=1)
    seg = tmp_path / "seg-1"
    (seg / "rows.bin").unlink()
    del entry["files"]["rows.bin"]
    legacy = {"ids": [0, "b", 2, 3, 4, 5], "meta": [{"k": i} for i in range(6)]}
    (seg / "rows.json").write_text(json.dumps(legacy))
    entry["files"]["rows.json"] = [(seg / "rows.json").stat().st_size, segment_files.file_crc(seg / "rows.json")]
    got = read_segment(tmp_path, entry, 4, None)
    assert got.legacy_rows == legacy and got.row_arrays == {} and got.row_meta == {}
    assert got.live.tolist() == data.live.tolist()
    np.testing.assert_array_equal(got.vectors, data.vectors)


def test_file_crc_covers_files_larger_than_a_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big"
    payload = bytes(range(256)) * 40
    path.write_bytes(payload)
    monkeypatch.setattr(segment_files, "_CHUNK", 1000)  # 11 reads
    assert segment_files.file_crc(path) == crc32c(payload)
    path.write_bytes(payload[:-1] + b"\x00")
    assert segment_files.file_crc(path) != crc32c(payload)


def test_open_vectors_maps_the_stored_arrays(tmp_path: Path) -> None:
    data = _data()
    entry = write_segment(tmp_path / "seg-1", data, generation=1)
    vectors, norms = segment_files.open_vectors(tmp_path, entry)
    assert isinstance(vectors, np.memmap) and isinstance(norms, np.memmap)
    np.testing.assert_array_equal(vectors, data.vectors)
    np.testing.assert_array_equal(norms, data.norms)


def test_npy_files_never_unpickle(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CorruptionError, match="not a readable .npy array"):
        segment_files._load_npy(path, False)


def test_the_rows_file_is_version_1_of_its_kind(tmp_path: Path) -> None:
    """Files outlive the code: what this version writes is the ``ROWS`` format, version 1."""
    from shoal.storage.arrayfile import read_arrays

    write_segment(tmp_path / "seg-1", _data(), generation=1)
    _, meta, arrays = read_arrays(tmp_path / "seg-1" / "rows.bin", "ROWS", 1, mmap=False, verify=True)
    assert meta == {"ids": {"others": [[1, "s"]]}} and set(arrays) == {"id.value", "p.0.kind"}


@pytest.mark.parametrize("spec", ["Flat", "HNSW8"])
def test_a_read_index_is_the_segments_own_copy(tmp_path: Path, spec: str) -> None:
    """The engine removes deleted rows from a segment's index after reading it: that must neither
    fail nor reach the file."""
    from shoal.index.factory import make_index

    data = _data(n=64)
    data.index = make_index(spec, 4, "l2")
    data.index.add(data.vectors, np.arange(64))
    entry = write_segment(tmp_path / "seg-1", data, generation=1)
    before = (tmp_path / "seg-1" / "index.bin").read_bytes()
    got = read_segment(tmp_path, entry, 4, None)
    assert got.index.remove(np.array([0, 3])) == 2
    assert got.index.contains(np.array([0, 1, 3])).tolist() == [False, True, False]
    got.index.add(data.vectors[:1] + 1, np.array([0]))
    assert (tmp_path / "seg-1" / "index.bin").read_bytes() == before


def test_an_index_read_into_memory_is_checked_array_by_array(tmp_path: Path) -> None:
    """Without the whole-file check (verify=False) an index read into memory still verifies each
    array's checksum; with arrays left on disk (memory-mapped) that pass is skipped, and with
    verify=True the manifest's file CRC catches the damage first."""
    from shoal.index.factory import make_index

    data = _data(n=64)
    data.index = make_index("HNSW", 4, "l2")
    data.index.add(data.vectors, np.arange(64))
    entry = write_segment(tmp_path / "seg-1", data, generation=1)
    path = tmp_path / "seg-1" / "index.bin"
    damaged = bytearray(path.read_bytes())
    damaged[-60] ^= 1  # inside the last array ('deleted')
    path.write_bytes(bytes(damaged))
    with pytest.raises(CorruptionError, match="array 'deleted' checksum mismatch"):
        read_segment(tmp_path, entry, 4, None, verify=False)
    assert read_segment(tmp_path, entry, 4, None, verify=False, index_on_disk=("vectors",)).index is not None
    with pytest.raises(CorruptionError, match="index.bin: checksum mismatch"):
        read_segment(tmp_path, entry, 4, None)
