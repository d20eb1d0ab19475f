"""Immutable segment files: vectors/norms as ``.npy`` (memory-mapped on open), the rows'
ids and payload columns as one array file (memory-mapped on open, so opening parses no
per-row data), the segment's index (``index.save``), and per-generation tombstone bitmaps.
Segments written before the rows file kept ids and payloads as JSON (``rows.json``); they
are still read.

Every file's size and CRC32C is recorded in the manifest and checked on open, so
a flipped byte is reported (CorruptionError naming the file) instead of answered from.
This module knows files and arrays only; the engine turns them into segments.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

from ..engine.errors import CorruptionError, FormatVersionError
from .arrayfile import read_arrays, write_arrays
from .io_errors import storage_errors
from .wal import fsync_dir

VECTORS, NORMS, ROWS, LEGACY_ROWS, INDEX = "vectors.npy", "norms.npy", "rows.bin", "rows.json", "index.bin"
ROWS_KIND, ROWS_VERSION = "ROWS", 1
#: Payload indexes declared after a segment was written (``create_payload_index``): a side file
#: ``pidx-<generation>.bin`` named by the segment's manifest entry (``"pidx"``), preferred to the
#: indexes inside its rows file.
PIDX_KIND, PIDX_VERSION = "PIDX", 1
POSTINGS = "postings.bin"  # inverted indexes of text/sparse fields (index.inverted)
_CHUNK = 1 << 22


@dataclass
class SegmentData:
    """What a sealed segment's files hold.

    ``row_arrays`` / ``row_meta``: the rows' ids and payloads as the engine lays them out
    (named arrays plus JSON metadata; this layer stores them without reading them). A segment
    written before the rows file has ``legacy_rows`` instead: ``{"ids": [...], "meta": [...]}``.
    """

    vectors: np.ndarray
    norms: np.ndarray
    live: np.ndarray
    row_arrays: dict[str, np.ndarray]
    row_meta: dict[str, Any]
    index: Any = None
    legacy_rows: dict[str, list[Any]] | None = None
    #: Field name -> ``index.inverted.InvertedIndex`` (collections with text or sparse fields).
    postings: dict[str, Any] | None = None
    #: ``(arrays, meta)`` of the segment's payload-index side file, when its entry names one.
    payload_index_file: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None


def file_crc(path: Path) -> int:
    crc = google_crc32c.Checksum()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc.update(chunk)
    return int.from_bytes(crc.digest(), "big")


def _fsynced(path: Path, write) -> list[int]:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    return [path.stat().st_size, file_crc(path)]


def write_segment(directory: Path, data: SegmentData, generation: int) -> dict[str, Any]:
    """Write a segment's files into a new directory; returns its manifest entry.

    A failure removes the partial directory, so nothing half-written is left behind.
    """
    with storage_errors(directory, "create segment directory"):
        directory.mkdir()
    try:
        with storage_errors(directory, "write segment"):
            return _write_segment(directory, data, generation)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _write_segment(directory: Path, data: SegmentData, generation: int) -> dict[str, Any]:
    n = data.vectors.shape[0]
    live = np.asarray(data.live[:n], bool)
    files = {
        VECTORS: _fsynced(directory / VECTORS, lambda f: np.save(f, np.ascontiguousarray(data.vectors[:n]))),
        NORMS: _fsynced(directory / NORMS, lambda f: np.save(f, np.ascontiguousarray(data.norms[:n]))),
    }
    write_arrays(directory / ROWS, ROWS_KIND, ROWS_VERSION, data.row_arrays, data.row_meta)
    files[ROWS] = [(directory / ROWS).stat().st_size, file_crc(directory / ROWS)]
    if data.index is not None:
        data.index.save(directory / INDEX)
        files[INDEX] = [(directory / INDEX).stat().st_size, file_crc(directory / INDEX)]
    if data.postings is not None:
        from ..index.inverted import save_postings

        save_postings(directory / POSTINGS, data.postings)
        files[POSTINGS] = [(directory / POSTINGS).stat().st_size, file_crc(directory / POSTINGS)]
    entry = {"dir": directory.name, "n": n, "files": files, "tomb": None, "dead": 0}
    if not live.all():
        write_tombstones(directory.parent, entry, live, generation)
    fsync_dir(directory)
    fsync_dir(directory.parent)
    return entry


def write_tombstones(directory: Path, entry: dict[str, Any], live: np.ndarray, generation: int) -> None:
    """Persist a segment's deleted rows as a new bitmap file and point ``entry`` at it."""
    name = f"tomb-{generation:08d}.npy"
    dead = ~np.asarray(live, bool)
    with storage_errors(directory / entry["dir"] / name, "write tombstones"):
        entry["files"][name] = _fsynced(directory / entry["dir"] / name, lambda f: np.save(f, np.packbits(dead)))
        fsync_dir(directory / entry["dir"])
    old = entry["tomb"]
    if old is not None and old != name:
        entry["files"].pop(old, None)
    entry["tomb"], entry["dead"] = name, int(dead.sum())


def write_payload_index_file(directory: Path, entry: dict[str, Any], arrays: dict[str, np.ndarray],
                             meta: dict[str, Any], generation: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Write a sealed segment's payload indexes as a side file (fsynced); returns a new manifest
    entry naming it in place of any earlier one (the caller's manifest commit makes it the
    segment's) and the arrays read back memory-mapped. Until that commit the file is an orphan
    that the next writable open removes, so a crash leaves the old state whole."""
    name = f"pidx-{generation:08d}.bin"
    path = directory / entry["dir"] / name
    with storage_errors(path, "write payload indexes"):
        write_arrays(path, PIDX_KIND, PIDX_VERSION, arrays, meta)
        fsync_dir(path.parent)
        _, _, mapped = read_arrays(path, PIDX_KIND, PIDX_VERSION, mmap=True, verify=False)
        files = {k: v for k, v in entry["files"].items() if k != entry.get("pidx")}
        files[name] = [path.stat().st_size, file_crc(path)]
    return dict(entry, files=files, pidx=name), mapped


def _checked(path: Path, expect: list[int], verify: bool) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: listed in the manifest but missing")
    size = path.stat().st_size
    if size != expect[0]:
        raise CorruptionError(f"{path}: size {size} bytes, manifest says {expect[0]} (truncated or extended at offset {min(size, expect[0])})")
    if verify and file_crc(path) != expect[1]:
        raise CorruptionError(f"{path}: checksum mismatch (file damaged somewhere in bytes 0..{size})")
    return path


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        raise CorruptionError(f"{path}: not a readable .npy array: {exc}") from None


def open_vectors(directory: Path, entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The segment's vectors and norms, memory-mapped (the stored copy replaces the in-memory one)."""
    seg_dir = directory / entry["dir"]
    return _load_npy(seg_dir / VECTORS, True), _load_npy(seg_dir / NORMS, True)


def open_index(seg_dir: Path, backend: Any, on_disk: tuple[str, ...] = ()) -> Any:
    """A segment's index, read into memory except the arrays named in ``on_disk`` (memory-mapped;
    their per-array checksums are skipped: the manifest's whole-file CRC covers them when verifying)."""
    from ..index.io import load_index

    return load_index(seg_dir / INDEX, mmap=False, backend=backend, keep_on_disk=on_disk, verify=not on_disk)


def read_segment(directory: Path, entry: dict[str, Any], dim: int, backend: Any, verify: bool = True,
                 index_on_disk: tuple[str, ...] = ()) -> SegmentData:
    """Open a sealed segment's files (vectors memory-mapped; the index's arrays named in
    ``index_on_disk`` too, the rest of the index read into memory)."""
    from ..index.inverted import load_postings

    seg_dir = directory / entry["dir"]
    paths = {name: _checked(seg_dir / name, expect, verify) for name, expect in entry["files"].items()}
    vectors, norms = _load_npy(paths[VECTORS], True), _load_npy(paths[NORMS], True)
    n = entry["n"]
    if vectors.shape != (n, dim) or norms.shape != (n,) or vectors.dtype != np.float32:
        raise FormatVersionError(f"{seg_dir}: vectors {vectors.shape}/{vectors.dtype} do not match the manifest ({n}, {dim}) float32")
    live = np.ones(n, bool)
    if entry["tomb"] is not None:
        live = ~np.unpackbits(_load_npy(paths[entry["tomb"]], False), count=n).astype(bool)
    index = open_index(seg_dir, backend, index_on_disk) if INDEX in paths else None
    postings = load_postings(paths[POSTINGS], verify) if POSTINGS in paths else None
    if ROWS not in paths:  # written before the rows file
        return SegmentData(vectors, norms, live, {}, {}, index, json.loads(paths[LEGACY_ROWS].read_bytes()), postings)
    # The whole file's CRC was checked above (when verifying): no second pass over the arrays.
    _, meta, arrays = read_arrays(paths[ROWS], ROWS_KIND, ROWS_VERSION, mmap=True, verify=False)
    side = None
    if entry.get("pidx") is not None:
        _, side_meta, side_arrays = read_arrays(paths[entry["pidx"]], PIDX_KIND, PIDX_VERSION, mmap=True, verify=False)
        side = (side_arrays, side_meta)
    return SegmentData(vectors, norms, live, arrays, meta, index, postings=postings, payload_index_file=side)
