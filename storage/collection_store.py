"""One collection on disk: manifest + write-ahead log + immutable segments.

Directory ``<db>/collections/<name>/``::

    MANIFEST            commit point: options, segment list with file sizes/CRCs, WAL checkpoint
    wal.log             writes since the checkpoint (see storage.wal)
    seg-00000001/       vectors.npy norms.npy rows.json [index.bin] tomb-<generation>.npy

Writes: log (durable per sync mode) -> apply to the growing segment. Flush (size
threshold, close): seal the growing segment to files, persist changed tombstones,
swap the manifest, start an empty log. Files no manifest refers to (a crash mid
flush/compaction) are removed on the next writable open, never before the
manifest that stops referring to them is durable.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.errors import (CorruptionError, FailedPreconditionError, InvalidArgumentError, ReadOnlyError,
                             StorageError)
from ..engine.segment import Segment
from .manifest import NAME as MANIFEST, read_manifest, write_manifest
from .segment_files import NORMS, VECTORS, read_segment, write_segment, write_tombstones
from .wal import OP_DELETE, OP_UPSERT, Record, WriteAheadLog, fsync_dir, read_log, write_header

if TYPE_CHECKING:
    from ..engine.collection import Collection

WAL = "wal.log"
FORMAT = 1
#: Attempts of a read-only open racing a writer's flush (files renamed away meanwhile).
READ_RETRIES = 20


class StoreOptions:
    """Per-database storage settings (validated once)."""

    def __init__(self, sync: str = "always", sync_interval_ms: float = 50.0, sync_records: int = 1000,
                 flush_rows: int = 65536, compact_threshold: float = 0.2, read_only: bool = False,
                 repair: bool = False, verify: bool = True) -> None:
        from .wal import check_sync

        self.sync = check_sync(sync)
        for name, value in (("sync_interval_ms", sync_interval_ms), ("sync_records", sync_records),
                            ("flush_rows", flush_rows)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise InvalidArgumentError(f"{name} must be a positive number, got {value!r}")
        if not isinstance(compact_threshold, (int, float)) or not 0 < compact_threshold <= 1:
            raise InvalidArgumentError(f"compact_threshold must be in (0, 1], got {compact_threshold!r}")
        self.sync_interval_ms, self.sync_records = float(sync_interval_ms), int(sync_records)
        self.flush_rows, self.compact_threshold = int(flush_rows), float(compact_threshold)
        self.read_only, self.repair, self.verify = read_only, repair, verify


def _replay(col: "Collection", records: list[Record], checkpoint: int, path: Path, strict: bool) -> int:
    """Apply logged writes past the checkpoint through the live write paths; returns the last seq."""
    last = checkpoint
    for rec in records:
        if rec.seq <= checkpoint:
            continue
        if strict and rec.seq != last + 1:
            raise CorruptionError(f"{path}: record at offset {rec.offset} has sequence {rec.seq}, expected {last + 1}")
        if rec.op == OP_UPSERT:
            meta = rec.metadata if rec.metadata is not None else [{} for _ in rec.ids]
            col._apply_upsert(rec.ids, rec.vectors, meta)
        elif rec.op == OP_DELETE:
            present = [i for i in rec.ids if i in col._id_to_internal]  # may already be tombstoned on disk
            if present:
                col._apply_delete(col._internal_of(present))
        else:
            raise CorruptionError(f"{path}: record at offset {rec.offset} has unknown operation {rec.op}")
        last = max(last, rec.seq)
    return last


def _install(col: "Collection", sealed: list[Segment], ext_rows: list[list[Any]]) -> None:
    """Make ``sealed`` (+ a fresh growing segment) the collection's segments, renumbering internal ids."""
    start = 0
    external: list[Any] = []
    for seg, ext in zip(sealed, ext_rows):
        seg.start = start
        start += seg.n
        external.extend(_live_only(seg, ext))
    col.segments = sealed + [col._new_segment(start)]
    col._external = external
    col._id_to_internal = {e: i for i, e in enumerate(external) if e is not None}


def new_doc(col: "Collection") -> dict[str, Any]:
    """The manifest of an empty collection: its creation options are persisted here."""
    return {"format": FORMAT, "name": col.name, "dim": col.dim, "metric": col.metric, "index": col.index_spec,
            "index_options": col.index_options, "segments": [], "checkpoint": 0, "next_segment": 1,
            "generation": 0}


def write_snapshot(col: "Collection", dest: Path, last_seq: int = 0) -> None:
    """Write the collection's state (caller holds its read lock) as a new collection directory.

    Every segment, the growing one included, becomes a sealed segment; the copy's log is empty.
    """
    dest.mkdir(parents=True)
    doc = dict(new_doc(col), checkpoint=last_seq, generation=1)
    for seg in col.segments:
        if seg.n:
            number = doc["next_segment"]
            doc["segments"].append(write_segment(dest / f"seg-{number:08d}", seg,
                                                 col._external[seg.start:seg.start + seg.n], 1))
            doc["next_segment"] = number + 1
    write_manifest(dest, doc)
    write_header(dest / WAL, last_seq + 1)
    fsync_dir(dest.parent)


def _live_only(seg: Segment, ext: list[Any]) -> list[Any]:
    """External ids of a segment's rows, None where the row is deleted or superseded."""
    return [e if ok else None for e, ok in zip(ext, seg.live[: seg.n].tolist())]


class CollectionStore:
    """Persistence of one collection; the collection calls it under its write lock."""

    def __init__(self, directory: Path, col: "Collection", options: StoreOptions, doc: dict[str, Any],
                 wal: WriteAheadLog | None) -> None:
        self.dir = directory
        self.col = col
        self.opts = options
        self.doc = doc
        self.wal = wal
        self.closed = False
        self._compacting = threading.Lock()
        self._in_progress: set[str] = set()  # segment dirs being written outside the lock

    # ----------------------------------------------------------------- create/open
    @classmethod
    def create(cls, directory: Path, col: "Collection", options: StoreOptions) -> "CollectionStore":
        """Lay out a new collection durably: build it in a temp dir, then rename into place."""
        doc = new_doc(col)
        tmp = directory.with_name(f".tmp-{directory.name}-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            write_manifest(tmp, doc)
        except TypeError as exc:
            shutil.rmtree(tmp)
            raise InvalidArgumentError(f"index options must be JSON values to be persisted: {exc}") from None
        write_header(tmp / WAL, 1)
        os.rename(tmp, directory)
        fsync_dir(directory.parent)
        wal = WriteAheadLog(directory / WAL, os.path.getsize(directory / WAL), 1, options.sync,
                            options.sync_interval_ms, options.sync_records)
        store = cls(directory, col, options, doc, wal)
        col._store = store
        return store

    @classmethod
    def open(cls, directory: Path, options: StoreOptions, backend: Any) -> "Collection":
        """Load the manifest's segments, replay the log past the checkpoint, attach the store."""
        for attempt in range(READ_RETRIES):
            try:
                return cls._open_once(directory, options, backend)
            except FileNotFoundError:  # read-only open racing a writer's flush: retry on the new manifest
                if not options.read_only or attempt == READ_RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    @classmethod
    def _open_once(cls, directory: Path, options: StoreOptions, backend: Any) -> "Collection":
        from ..engine.collection import Collection

        doc = read_manifest(directory)
        if doc.get("format") != FORMAT:
            raise CorruptionError(f"{directory / MANIFEST}: unknown collection format {doc.get('format')!r}")
        col = Collection(doc["name"], doc["dim"], doc["metric"], doc["index"], backend=backend, **doc["index_options"])
        sealed, ext_rows = [], []
        for entry in doc["segments"]:
            seg, ext = read_segment(directory, entry, 0, col.dim, col.metric, col._exact, col._new_index,
                                    col.backend, options.verify)
            sealed.append(seg)
            ext_rows.append(ext)
        _install(col, sealed, ext_rows)
        wal_path = directory / WAL
        base, records, end, damaged = read_log(wal_path, repair=options.repair)
        checkpoint = doc["checkpoint"]
        if base > checkpoint + 1:
            if options.read_only:  # the log was rotated after we read the manifest
                raise FileNotFoundError(f"{wal_path} is newer than the manifest")
            raise CorruptionError(f"{wal_path}: log starts at sequence {base} but the manifest checkpoint is "
                                  f"{checkpoint}; writes {checkpoint + 1}..{base - 1} are missing")
        last = _replay(col, records, checkpoint, wal_path, strict=not damaged)
        wal = None
        if not options.read_only:
            wal = WriteAheadLog(wal_path, end, last + 1, options.sync, options.sync_interval_ms,
                                options.sync_records)
        store = cls(directory, col, options, doc, wal)
        col._store = store
        if not options.read_only:
            if damaged:
                shutil.copyfile(wal_path, directory / f"{WAL}.damaged-{int(time.time())}")
                store.checkpoint()  # rewrite the state without the damaged bytes
            store._remove_orphans()
        return col

    # ----------------------------------------------------------------- write path
    def _writable(self) -> WriteAheadLog:
        if self.opts.read_only:
            raise ReadOnlyError(f"collection {self.col.name!r} was opened read-only; writes are not allowed")
        if self.closed or self.wal is None:
            raise FailedPreconditionError(f"collection {self.col.name!r} is closed")
        return self.wal

    def log_upsert(self, ids: list[Any], x: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        self._writable().append(OP_UPSERT, ids, x, payloads)

    def log_delete(self, ids: list[Any]) -> None:
        self._writable().append(OP_DELETE, ids)

    def after_write(self) -> None:
        """Seal the growing segment once it reaches the flush threshold (caller holds the write lock)."""
        if self.col.growing.n >= self.opts.flush_rows:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Flush: growing segment -> files, changed tombstones -> files, new manifest, empty log.

        Caller holds the write lock (or is the only user of the collection).
        """
        wal = self._writable()
        col = self.col
        seg = col.growing
        if seg.n:
            seg.disk = write_segment(self._new_segment_dir(), seg, col._external[seg.start:seg.start + seg.n],
                                     self.doc["generation"] + 1)
            seg_dir = self.dir / seg.disk["dir"]
            seg.seal(np.load(seg_dir / VECTORS, mmap_mode="r"), np.load(seg_dir / NORMS, mmap_mode="r"))
            col.segments.append(col._new_segment(seg.start + seg.n))
        wal.sync_now()
        self._commit(wal.next_seq - 1)
        wal.close()
        write_header(self.dir / WAL, wal.next_seq)
        self.wal = WriteAheadLog(self.dir / WAL, os.path.getsize(self.dir / WAL), wal.next_seq, self.opts.sync,
                                 self.opts.sync_interval_ms, self.opts.sync_records)

    def _new_segment_dir(self) -> Path:
        number = self.doc["next_segment"]
        self.doc["next_segment"] = number + 1
        return self.dir / f"seg-{number:08d}"

    def _commit(self, checkpoint: int) -> None:
        """Persist changed tombstones and swap the manifest; then drop files it no longer names."""
        generation = self.doc["generation"] + 1
        sealed = [s for s in self.col.segments if s.sealed]
        for seg in sealed:
            assert seg.disk is not None
            if seg.n - seg.live_count != seg.disk["dead"]:
                write_tombstones(self.dir, seg.disk, seg.live[: seg.n], generation)
        doc = dict(self.doc, segments=[s.disk for s in sealed], checkpoint=checkpoint, generation=generation)
        write_manifest(self.dir, doc)
        self.doc = doc
        self._remove_orphans()

    def _remove_orphans(self) -> None:
        """Delete files and segment dirs the durable manifest does not reference."""
        keep = {e["dir"]: set(e["files"]) for e in self.doc["segments"]}
        for path in self.dir.iterdir():
            if path.name in (MANIFEST, WAL) or path.name.startswith(f"{WAL}.damaged-"):
                continue
            if path.is_dir() and path.name in keep:
                for f in path.iterdir():
                    if f.name not in keep[path.name]:
                        f.unlink()
            elif path.name in self._in_progress:
                continue
            elif path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

    # ----------------------------------------------------------------- compaction
    def needs_compaction(self) -> bool:
        thr = self.opts.compact_threshold
        return not self.opts.read_only and any(
            s.sealed and s.n and (s.n - s.live_count) / s.n > thr for s in self.col.segments)

    def compact(self, force: bool) -> bool:
        """Merge sealed segments without their deleted rows, rebuilding the index.

        ``force`` (``col.compact()``) first seals the growing segment and merges every
        sealed segment; otherwise only segments past the deleted-fraction threshold.
        Readers are never blocked: the new segment is built from a snapshot under the
        read lock, and swapped in under the write lock re-applying deletes made meanwhile.
        Returns whether anything was compacted.
        """
        col = self.col
        if not self._compacting.acquire(blocking=force):
            return False
        try:
            if force:
                with col._lock.write():
                    self.checkpoint()
            with col._lock.read():
                self._writable()
                thr = self.opts.compact_threshold
                chosen = [s for s in col.segments if s.sealed and s.n and
                          (force or (s.n - s.live_count) / s.n > thr)]
                if not chosen or (len(chosen) == 1 and chosen[0].live_count == chosen[0].n):
                    return False
                taken, ext, x, payloads = col._live_records(chosen)
                new_dir = self._new_segment_dir()
                self._in_progress.add(new_dir.name)
            merged = col._segment_from(x, payloads)
            merged.disk = write_segment(new_dir, merged, ext, 0)
            merged.seal(np.load(new_dir / VECTORS, mmap_mode="r"), np.load(new_dir / NORMS, mmap_mode="r"))
            with col._lock.write():
                killed = np.concatenate([~s.live[rows] for s, rows in zip(chosen, taken)])
                merged.delete(np.flatnonzero(killed))
                ext = [None if k else e for e, k in zip(ext, killed.tolist())]
                sealed, ext_rows = [], []
                for seg in col.segments:
                    if seg is chosen[0] and merged.live_count:  # an all-deleted result is dropped
                        sealed.append(merged)
                        ext_rows.append(ext)
                    elif seg.sealed and not any(seg is c for c in chosen):
                        sealed.append(seg)
                        ext_rows.append(col._external[seg.start:seg.start + seg.n])
                growing = col.growing
                growing_ext = _live_only(growing, col._external[growing.start:growing.start + growing.n])
                _install(col, sealed, ext_rows)
                growing.start = col.growing.start  # keep the growing rows, renumbered after the sealed ones
                col.segments[-1] = growing
                col._external.extend(growing_ext)
                col._id_to_internal.update((e, growing.start + i) for i, e in enumerate(growing_ext) if e is not None)
                self._in_progress.clear()
                self._commit(self.doc["checkpoint"])  # the log still holds the growing rows: keep its checkpoint
            return True
        finally:
            self._in_progress.clear()
            self._compacting.release()

    # ----------------------------------------------------------------- snapshot/close
    def snapshot(self, dest: Path) -> None:
        """Write a consistent, openable copy of the collection's current state to ``dest``.

        Holds the read lock (writers wait, readers do not).
        """
        with self.col._lock.read():
            seq = self.wal.next_seq - 1 if self.wal is not None else self.doc["checkpoint"]
            write_snapshot(self.col, dest, seq)

    def close(self, flush: bool = True) -> None:
        """Flush (writable stores) and release the log; later writes raise FailedPreconditionError."""
        if self.closed:
            return
        with self._compacting, self.col._lock.write():
            if self.wal is not None:
                try:
                    if flush and (self.col.growing.n or any(s.sealed and s.n - s.live_count != s.disk["dead"]
                                                            for s in self.col.segments)):
                        self.checkpoint()
                finally:
                    self.wal.close()
            self.closed = True


def remove_tree_durably(directory: Path) -> None:
    """Drop a collection: rename it out of the namespace (durable), then delete the files."""
    trash = directory.with_name(f".drop-{directory.name}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(directory, trash)
    except OSError as exc:
        raise StorageError(f"cannot drop {directory}: {exc}") from None
    fsync_dir(directory.parent)
    shutil.rmtree(trash)
