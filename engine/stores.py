"""Where a shard keeps its data: in memory, or durably in a collection directory.

Both stores take the same calls from the shard (log, seal, write a merged
segment, commit, snapshot, close), so the shard has one code path; the memory
store's calls just keep everything in RAM.

Directory of a durable collection ``<db>/collections/<name>/``::

    MANIFEST            commit point: config, segment list with file sizes/CRCs, WAL checkpoint
    wal.log             writes since the checkpoint (see storage.wal)
    seg-00000001/       vectors.npy norms.npy rows.json [index.bin] tomb-<generation>.npy

Writes: log (durable per sync mode) -> apply to the growing segment. Seal (size
threshold, flush, close): growing segment -> files, changed tombstones -> files,
new manifest, empty log. A merge writes its segment's files first and then swaps
the manifest. Files no manifest refers to (a crash mid seal/merge) are removed on
the next writable open, never before the manifest that stops referring to them
is durable.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..storage.io_errors import storage_errors
from ..storage.manifest import NAME as MANIFEST, read_manifest, write_manifest
from ..storage.segment_files import (SegmentData, open_index, open_vectors, read_segment, write_payload_index_file,
                                     write_segment, write_tombstones)
from ..storage.wal import OP_DELETE, OP_UPSERT, Record, WriteAheadLog, fsync_dir, read_log, write_header
from .disk_vectors import arrays_on_disk
from .errors import CorruptionError, FailedPreconditionError, InvalidArgumentError, ReadOnlyError, StorageError
from .metadata import MetadataStore
from .payload_index import PayloadIndexes, ensure_payload_indexes
from .segment import Segment
from .segment_ids import SegmentIds

WAL = "wal.log"
FORMAT = 1
#: Attempts of a read-only open racing a writer's seal (files renamed away meanwhile).
READ_RETRIES = 20


class StoreOptions:
    """Per-database storage settings (validated once)."""

    def __init__(self, sync: str = "always", sync_interval_ms: float = 50.0, sync_records: int = 1000,
                 flush_rows: int = 65536, compact_threshold: float = 0.2, read_only: bool = False,
                 repair: bool = False, verify: bool = True) -> None:
        from ..storage.wal import check_sync

        self.sync = check_sync(sync)
        for name, value in (("sync_interval_ms", sync_interval_ms), ("sync_records", sync_records),
                            ("flush_rows", flush_rows)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise InvalidArgumentError(f"{name} must be a positive number, got {value!r}")
        if isinstance(compact_threshold, bool) or not isinstance(compact_threshold, (int, float)) \
                or not 0 < compact_threshold <= 1:
            raise InvalidArgumentError(f"compact_threshold must be in (0, 1], got {compact_threshold!r}")
        self.sync_interval_ms, self.sync_records = float(sync_interval_ms), int(sync_records)
        self.flush_rows, self.compact_threshold = int(flush_rows), float(compact_threshold)
        self.read_only, self.repair, self.verify = bool(read_only), bool(repair), bool(verify)


def segment_data(seg: Segment) -> SegmentData:
    """A segment's rows as the file layer writes them."""
    n = seg.n
    id_arrays, id_meta = seg.ids.to_arrays()
    payload_arrays, payload_meta = seg.meta.to_arrays()
    arrays = {**{f"id.{k}": v for k, v in id_arrays.items()}, **{f"p.{k}": v for k, v in payload_arrays.items()}}
    meta = {"ids": id_meta, "payload": payload_meta}
    indexes = ensure_payload_indexes(seg)
    if indexes is not None:
        index_arrays, meta["payload_indexes"] = indexes.to_arrays()
        arrays.update({f"x.{k}": v for k, v in index_arrays.items()})
    return SegmentData(seg.vectors[:n], seg.norms[:n], seg.live[:n], arrays, meta,
                       seg.index if seg.indexed else None, postings=None if seg.postings is None else seg.postings.frozen())


def _stored_part(data: SegmentData, prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in data.row_arrays.items() if k.startswith(prefix)}


def payload_indexes_of(data: SegmentData) -> PayloadIndexes | None:
    """A stored segment's payload indexes (memory-mapped): its side file's when it has one
    (indexes declared later), else its rows file's; None when it was written without them."""
    if data.payload_index_file is not None:
        arrays, meta = data.payload_index_file
        return PayloadIndexes.from_arrays(arrays, meta["payload_indexes"])
    meta = data.row_meta.get("payload_indexes")
    return None if meta is None else PayloadIndexes.from_arrays(_stored_part(data, "x."), meta)


def rows_of(data: SegmentData) -> tuple[SegmentIds, MetadataStore]:
    """A stored segment's ids and payload store (memory-mapped arrays; rebuilt from the JSON rows
    of a segment written before rows files). Rows deleted since the file was written lose their ids."""
    live = np.asarray(data.live, bool)
    if data.legacy_rows is not None:
        ids = SegmentIds.from_list(data.legacy_rows["ids"])
        meta = MetadataStore()
        meta.append([p if ok else {} for p, ok in zip(data.legacy_rows["meta"], live.tolist())])
    else:
        ids = SegmentIds.from_arrays(_stored_part(data, "id."), data.row_meta["ids"])
        meta = MetadataStore.from_arrays(_stored_part(data, "p."), data.row_meta["payload"])
    ids.kill(np.flatnonzero(~live))
    return ids, meta


def _changed(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with ``changes`` applied (a None value removes the key)."""
    out = {k: v for k, v in doc.items() if k not in changes}
    out.update({k: v for k, v in changes.items() if v is not None})
    return out


def write_snapshot(dest: Path, doc: dict[str, Any], segments: list[Segment], last_seq: int) -> None:
    """Write segments (the growing one too, all sealed in the copy) as a new collection directory."""
    dest.mkdir(parents=True)
    doc = dict(doc, format=FORMAT, checkpoint=last_seq, generation=1, segments=[], next_segment=1)
    for seg in segments:
        if seg.n:
            number = doc["next_segment"]
            doc["segments"].append(write_segment(dest / f"seg-{number:08d}", segment_data(seg), 1))
            doc["next_segment"] = number + 1
    write_manifest(dest, doc)
    write_header(dest / WAL, last_seq + 1)
    fsync_dir(dest.parent)


class MemoryStore:
    """An in-memory shard's store: nothing to log or write; snapshots still go to disk."""

    read_only = False

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def log_upsert(self, ids: list[Any], x: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        pass

    def log_delete(self, ids: list[Any]) -> None:
        pass

    def seal(self, seg: Segment, segments: list[Segment]) -> None:
        if seg.n:
            seg.seal()

    def write_merged(self, seg: Segment) -> None:
        seg.seal()

    def commit(self, segments: list[Segment]) -> None:
        pass

    def abandon_merge(self) -> None:
        pass

    def write_payload_indexes(self, seg: Segment, indexes: PayloadIndexes) -> tuple[None, PayloadIndexes]:
        return None, indexes

    def commit_config(self, segments: list[Segment], changes: dict[str, Any]) -> None:
        self.doc = _changed(self.doc, changes)

    def abandon_side_files(self) -> None:
        pass

    def snapshot(self, dest: Path, segments: list[Segment]) -> None:
        write_snapshot(dest, self.doc, segments, 0)

    def close(self, segments: list[Segment], flush: bool) -> None:
        pass


class DiskStore:
    """A collection directory; the shard calls it under its write lock (merges: outside, then commit)."""

    read_only = False

    def __init__(self, directory: Path, options: StoreOptions, doc: dict[str, Any]) -> None:
        self.dir = directory
        self.opts = options
        self.doc = doc
        self.read_only = options.read_only
        self.wal: WriteAheadLog | None = None
        self._in_progress: set[str] = set()  # segment dirs a merge is writing outside the lock
        self._side_files: set[str] = set()  # "seg-dir/pidx-….bin" written for a config change not yet committed
        self._dirs = threading.Lock()  # _next_dir, _in_progress and _side_files, shared by seal, merge and admin
        self._next_dir = int(doc.get("next_segment", 1))

    # ----------------------------------------------------------------- create/open
    @classmethod
    def create(cls, directory: Path, doc: dict[str, Any], options: StoreOptions) -> "DiskStore":
        """Lay out a new collection durably: build it in a temp dir, then rename into place."""
        doc = dict(doc, format=FORMAT, segments=[], checkpoint=0, next_segment=1, generation=0)
        tmp = directory.with_name(f".tmp-{directory.name}-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            write_manifest(tmp, doc)
            write_header(tmp / WAL, 1)
            os.rename(tmp, directory)
        except TypeError as exc:
            shutil.rmtree(tmp)
            raise InvalidArgumentError(f"collection options must be JSON values to be persisted: {exc}") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(directory.parent)
        store = cls(directory, options, doc)
        store._open_wal(os.path.getsize(directory / WAL), 1)
        return store

    @staticmethod
    def read_doc(directory: Path) -> dict[str, Any]:
        doc = read_manifest(directory)
        if doc.get("format") != FORMAT:
            raise CorruptionError(f"{directory / MANIFEST}: unknown collection format {doc.get('format')!r}")
        return doc

    def load(self, dim: int, backend: Any) -> tuple[list[SegmentData], list[Record], bool]:
        """The manifest's segments and the log records past its checkpoint; ``damaged`` if repair skipped bytes."""
        on_disk = arrays_on_disk(self.doc)
        segments = [read_segment(self.dir, entry, dim, backend, self.opts.verify, on_disk) for entry in self.doc["segments"]]
        base, records, end, damaged = read_log(self.dir / WAL, repair=self.opts.repair)
        checkpoint = self.doc["checkpoint"]
        if base > checkpoint + 1:
            if self.read_only:  # the log was rotated after we read the manifest
                raise FileNotFoundError(f"{self.dir / WAL} is newer than the manifest")
            raise CorruptionError(f"{self.dir / WAL}: log starts at sequence {base} but the manifest checkpoint is "
                                  f"{checkpoint}; writes {checkpoint + 1}..{base - 1} are missing")
        self.log_end = end  # where the valid records end (a follower reads on from here: engine.follower)
        return segments, [r for r in records if r.seq > checkpoint], bool(damaged)

    def attach(self, segments: list[Segment], last_seq: int, damaged: bool) -> None:
        """After replay: open the log for appends (writable stores) and clean up."""
        for seg, entry in zip(segments, self.doc["segments"]):
            seg.disk = entry
        if self.read_only:
            return
        self._open_wal(self.log_end, last_seq + 1)
        if damaged:
            shutil.copyfile(self.dir / WAL, self.dir / f"{WAL}.damaged-{int(time.time())}")
        self._remove_orphans()

    def _open_wal(self, end: int, next_seq: int) -> None:
        o = self.opts
        self.wal = WriteAheadLog(self.dir / WAL, end, next_seq, o.sync, o.sync_interval_ms, o.sync_records)

    # ----------------------------------------------------------------- write path
    def _writable(self) -> WriteAheadLog:
        if self.read_only:
            raise ReadOnlyError(f"collection {self.doc['name']!r} was opened read-only; writes are not allowed")
        if self.wal is None:
            raise FailedPreconditionError(f"collection {self.doc['name']!r} is closed")
        return self.wal

    def log_upsert(self, ids: list[Any], x: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        self._writable().append(OP_UPSERT, ids, x, payloads)

    def log_delete(self, ids: list[Any]) -> None:
        self._writable().append(OP_DELETE, ids)

    def seal(self, seg: Segment, segments: list[Segment]) -> None:
        """Growing segment -> files, then a commit that checkpoints and empties the log.

        On failure (a full disk) nothing changes: the segment stays growing and its
        rows stay in the log, so a later seal can succeed.
        """
        wal = self._writable()
        if seg.n:
            entry = write_segment(self._new_segment_dir(), segment_data(seg), self.doc["generation"] + 1)
            seg.disk = entry
            try:
                self._commit([s for s in segments if s.sealed or s is seg], wal.next_seq - 1)
            except BaseException:
                seg.disk = None
                raise
            seg.seal(*open_vectors(self.dir, entry))
        else:
            self._commit([s for s in segments if s.sealed], wal.next_seq - 1)
        try:
            write_header(self.dir / WAL, wal.next_seq)  # an empty log replaces the old one atomically
        except StorageError:
            if not wal.replaced():
                return  # the old log stays: replay skips its records up to the checkpoint; the next seal rotates
        wal.close()
        self._open_wal(os.path.getsize(self.dir / WAL), wal.next_seq)

    def write_merged(self, seg: Segment) -> None:
        """Write a merged segment's files (outside the shard's lock); ``commit`` makes it visible."""
        directory = self._new_segment_dir(in_progress=True)
        seg.disk = write_segment(directory, segment_data(seg), 0)
        seg.seal(*open_vectors(self.dir, seg.disk))
        if seg.indexed and arrays_on_disk(self.doc):  # the in-memory copy of the vectors goes
            seg.index = open_index(directory, seg.index.backend, arrays_on_disk(self.doc))

    def abandon_merge(self) -> None:
        with self._dirs:
            for name in self._in_progress:
                shutil.rmtree(self.dir / name, ignore_errors=True)
            self._in_progress.clear()

    def commit(self, segments: list[Segment]) -> None:
        """Make the sealed segments' current state durable (the log's checkpoint is unchanged)."""
        self._commit(segments, self.doc["checkpoint"])
        with self._dirs:
            self._in_progress.clear()

    def write_payload_indexes(self, seg: Segment, indexes: PayloadIndexes) -> tuple[dict[str, Any], PayloadIndexes]:
        """A sealed segment's payload indexes as a side file (outside the shard's lock; kept from
        orphan removal until ``commit_config``); returns the manifest entry that names it and the
        indexes memory-mapped from it."""
        self._writable()
        arrays, meta = indexes.to_arrays()
        entry, mapped = write_payload_index_file(self.dir, seg.disk, arrays, {"payload_indexes": meta},
                                                 self.doc["generation"] + 1)
        with self._dirs:
            self._side_files.add(f"{entry['dir']}/{entry['pidx']}")
        return entry, PayloadIndexes.from_arrays(mapped, meta)

    def commit_config(self, segments: list[Segment], changes: dict[str, Any]) -> None:
        """Commit a configuration change (keys set, or removed when None) with the sealed segments'
        current entries, in one manifest write; side files written for it stop being in progress."""
        self._writable()
        doc = self.doc
        self.doc = _changed(doc, changes)
        try:
            self._commit(segments, doc["checkpoint"])
        except BaseException:
            self.doc = doc
            raise
        with self._dirs:
            self._side_files.clear()

    def abandon_side_files(self) -> None:
        """Remove side files written for a configuration change that was not committed."""
        with self._dirs:
            for name in self._side_files:
                (self.dir / name).unlink(missing_ok=True)
            self._side_files.clear()

    def _new_segment_dir(self, in_progress: bool = False) -> Path:
        with self._dirs:
            number = self._next_dir
            self._next_dir = number + 1
            name = f"seg-{number:08d}"
            if in_progress:
                self._in_progress.add(name)
        return self.dir / name

    def _commit(self, sealed: list[Segment], checkpoint: int) -> None:
        """Persist changed tombstones and swap the manifest; then drop files it no longer names."""
        generation = self.doc["generation"] + 1
        for seg in sealed:
            assert seg.disk is not None
            if seg.n - seg.live_count != seg.disk["dead"]:
                write_tombstones(self.dir, seg.disk, seg.live[: seg.n], generation)
        with self._dirs:
            next_dir = self._next_dir
        doc = dict(self.doc, segments=[s.disk for s in sealed], checkpoint=checkpoint, generation=generation,
                   next_segment=next_dir)
        write_manifest(self.dir, doc)
        self.doc = doc
        self._remove_orphans()

    def _remove_orphans(self) -> None:
        """Delete files and segment dirs the durable manifest does not reference."""
        keep = {e["dir"]: set(e["files"]) for e in self.doc["segments"]}
        with self._dirs:
            busy = self._in_progress | self._side_files
        for path in self.dir.iterdir():
            if path.name in (MANIFEST, WAL) or path.name.startswith(f"{WAL}.damaged-") or path.name in busy:
                continue
            if path.is_dir() and path.name in keep:
                for f in path.iterdir():
                    if f.name not in keep[path.name] and f"{path.name}/{f.name}" not in busy:
                        f.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

    # ----------------------------------------------------------------- snapshot/close
    def snapshot(self, dest: Path, segments: list[Segment]) -> None:
        seq = self.wal.next_seq - 1 if self.wal is not None else self.doc["checkpoint"]
        write_snapshot(dest, self.doc, segments, seq)

    def close(self, segments: list[Segment], flush: bool) -> None:
        """Seal what changed (writable stores) and release the log.

        If the seal fails (a full disk) the log stays open and the error propagates,
        so ``close()`` can be called again once space is back; nothing is lost either way.
        """
        if self.wal is None:
            return
        growing = segments[-1]
        changed = growing.n or any(s.sealed and s.disk is not None and s.n - s.live_count != s.disk["dead"]
                                   for s in segments)
        if flush and changed:
            self.seal(growing, segments)
        self.wal.close()
        self.wal = None


def open_store(directory: Path, options: StoreOptions) -> DiskStore:
    """A collection directory's store with its manifest read (the shard then loads and replays)."""
    return DiskStore(directory, options, DiskStore.read_doc(directory))


def remove_tree_durably(directory: Path) -> None:
    """Drop a collection: rename it out of the namespace (durable), then delete the files."""
    trash = directory.with_name(f".drop-{directory.name}-{os.getpid()}-{time.monotonic_ns()}")
    with storage_errors(directory, "drop"):
        os.rename(directory, trash)
    fsync_dir(directory.parent)
    shutil.rmtree(trash)
