"""Database: a named set of collections (in memory; durable when given a path).

A durable database is a directory: ``LOCK`` (held with ``fcntl.flock`` by the one
writing process) and ``collections/<name>/`` per collection (see
``shoal.engine.stores``). A collection whose files cannot be opened (damage) is
reported by ``get_collection`` with the error; the others open normally. ``read_only=True`` takes no lock and sees the
state as of its open; ``repair=True`` keeps every valid record of a damaged log.
Durability per ``sync`` mode is documented in ``shoal.storage.wal``.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from .collection import Collection, config_difference
from .echo import shorten
from .errors import (ClosedError, CollectionConfigMismatchError, CollectionExistsError, CollectionNotFoundError, InvalidArgumentError, LockedError,
                     ReadOnlyError, ShoalError, StorageError)
from ..storage.io_errors import as_storage_error, storage_errors
from ..storage.io_errors import fsync_dir
from .stores import READ_RETRIES, WAL, DiskStore, StoreOptions, open_store, remove_tree_durably

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
COLLECTIONS = "collections"
LOCK = "LOCK"


def check_collection_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"collection name must be 1-64 characters of letters, digits, '_', '-', '.', starting with a letter or digit; got {shorten(name)}")
    return name


class Database:
    """Entry point of embedded use: ``db = shoal.Database()`` or ``shoal.Database("data/")``.

    Storage options (durable databases): ``sync`` ("always" | "batch" | "never"),
    ``sync_interval_ms`` / ``sync_records`` (group commit of "batch"), ``flush_rows``
    (growing segment size that triggers a seal), ``compact_threshold`` (deleted
    fraction past which the optimizer rebuilds a segment; a collection's
    ``optimizer={"vacuum_threshold": ...}`` overrides it), ``read_only``, ``repair``.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, backend: str | None = None,
                 read_only: bool = False, repair: bool = False, sync: str = "always", **storage: Any) -> None:
        self.path = None if path is None else str(path)
        self.backend = backend
        self.read_only = read_only
        self._collections: dict[str, Collection] = {}
        #: Collections that failed to open, with the error ``get_collection`` raises for them.
        self.unavailable: dict[str, ShoalError] = {}
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._closed = False
        self._options: StoreOptions | None = None
        if path is None:
            if read_only or repair or storage or sync != "always":
                raise InvalidArgumentError("read_only, repair, sync and storage options need a path (durable database)")
            return
        try:
            self._options = StoreOptions(sync=sync, read_only=read_only, repair=repair, **storage)
        except TypeError as exc:
            raise InvalidArgumentError(f"{exc}; storage options are sync, sync_interval_ms, sync_records, "
                                       "flush_rows, compact_threshold, read_only, repair, verify") from None
        root = Path(path)
        if "\0" in str(root):
            raise InvalidArgumentError(f"database path {shorten(str(root))} contains a NUL byte")
        with storage_errors(root, "open database"):
            if root.exists() and not root.is_dir():
                raise StorageError(f"{root} is not a directory; a durable database is a directory")
            if read_only and not (root / COLLECTIONS).is_dir():
                raise StorageError(f"{root} is not a Shoal data directory (no {COLLECTIONS}/); cannot open read-only")
            if not read_only:
                (root / COLLECTIONS).mkdir(parents=True, exist_ok=True)
                self._acquire_lock(root / LOCK)
            children = sorted((root / COLLECTIONS).iterdir())
        try:
            for child in children:
                if child.name.startswith((".tmp-", ".drop-")):
                    if not read_only:  # a create or drop interrupted by a crash
                        shutil.rmtree(child)
                    continue
                try:
                    col = self._open_collection(child)
                except ShoalError as exc:
                    self.unavailable[child.name] = exc
                    continue
                self._collections[col.name] = col
        except BaseException:
            self._release()
            raise

    def _open_collection(self, directory: Path) -> Collection:
        """Open one collection: manifest, segments, log replay (read-only opens retry a racing seal)."""
        assert self._options is not None
        for attempt in range(READ_RETRIES):
            try:
                return self._open_once(directory)
            except FileNotFoundError as exc:
                if not self._options.read_only or attempt == READ_RETRIES - 1:
                    raise as_storage_error(exc, directory, "open collection") from exc
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _open_once(self, directory: Path) -> Collection:
        with storage_errors(directory, "open collection"):
            return self._load(directory)

    def _load(self, directory: Path) -> Collection:
        options = self._options
        assert options is not None
        store = open_store(directory, options)
        doc = store.doc
        doc["name"] = directory.name  # the directory is the name (rename_collection renames it atomically)
        col = Collection(doc["name"], doc["dim"], doc["metric"], doc["index"], backend=self.backend,
                         optimizer=doc.get("optimizer"), planner=doc.get("planner"),
                         metadata=doc.get("metadata"), payload_indexes=doc.get("payload_indexes"),
                         vectors_on_disk=doc.get("vectors_on_disk", False), _store=store,
                         _flush_rows=options.flush_rows, **doc.get("lexical", {}), **doc["index_options"])
        stored, records, damaged = store.load(col.dim, col.backend)
        shard = col._shard
        last = shard.restore(stored, records, options.repair, directory / WAL)
        store.attach(shard.segments[:-1], max(last, doc["checkpoint"]), damaged)
        if damaged and not options.read_only:
            shard.flush()  # rewrite the state without the damaged bytes
        if not options.read_only:
            shard.optimizer.wake()
        return col

    def _acquire_lock(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(f"{path.parent} is open for writing by another process or Database object; "
                              "open it with read_only=True or close the other one") from None
        self._lock_fd = fd

    def _release(self) -> None:
        for col in self._collections.values():
            col._shard.close(flush=False)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def _dir(self, name: str) -> Path:
        assert self.path is not None
        return Path(self.path) / COLLECTIONS / name

    def _check_open(self, writing: bool) -> None:
        if self._closed:
            raise ClosedError(f"database {self.path!r} is closed")
        if writing and self.read_only:
            raise ReadOnlyError(f"database {self.path!r} was opened read-only; writes are not allowed")

    def create_collection(self, name: str, dim: int, metric: str = "cosine", index: str = "flat",
                          **options: Any) -> Collection:
        """Create a collection; ``index`` is a spec ("flat", "hnsw", "HNSW32", "ivf", "IVF256,PQ16",
        "OPQ16,PQ16", "SQ8", "KDTree", "auto"); ``metric`` is "cosine", "l2" or "ip".

        ``metadata={...}`` is the user's own small dict about the collection (``describe()["metadata"]``).
        ``optimizer={...}`` and ``planner={...}`` set its merge and planning thresholds
        (``engine.optimizer.OptimizerConfig``, ``engine.planner.PlannerConfig``); other
        keyword options go to the index family (HNSW ``M``, ``ef_construction``, ``ef_search``;
        IVF/PQ ``nprobe``...; see ``index/options.py``). Raises CollectionExistsError when the name is
        taken, InvalidArgumentError for a bad name, dim, metric, spec or option, ReadOnlyError.
        """
        check_collection_name(name)
        self._check_open(writing=True)
        options.setdefault("backend", self.backend)
        for reserved in ("_store", "_flush_rows"):
            if reserved in options:
                raise InvalidArgumentError(f"{reserved!r} is not a collection option")
        with self._lock:
            if name in self._collections or name in self.unavailable:
                raise CollectionExistsError(f"collection {name!r} already exists")
            if self._options is None:
                col = self._collections[name] = Collection(name, dim, metric, index, **options)
                return col
            opts = self._options
            optimizer = {"vacuum_threshold": opts.compact_threshold, **dict(options.pop("optimizer", None) or {})}
            col = Collection(name, dim, metric, index, optimizer=optimizer, _flush_rows=opts.flush_rows,
                             _store=lambda doc: DiskStore.create(self._dir(name), doc, opts), **options)
            self._collections[name] = col
        return col

    def get_collection(self, name: str) -> Collection:
        """The collection of that name; CollectionNotFoundError (listing those that exist) otherwise, or the
        error that kept a damaged collection from opening."""
        self._check_open(writing=False)
        try:
            return self._collections[name]
        except KeyError:
            pass
        if name in self.unavailable:
            raise self.unavailable[name]
        raise CollectionNotFoundError(f"collection {shorten(name)} does not exist; "
                                      f"existing: {shorten(sorted(self._collections))}")

    def get_or_create_collection(self, name: str, dim: int, metric: str | None = None, index: str | None = None,
                                 **options: Any) -> Collection:
        """The collection of that name, created with these arguments if it does not exist
        (``metric`` default "cosine", ``index`` default "flat").

        An existing collection whose dim, or metric / index spec / index option *given here*, differs
        raises CollectionConfigMismatchError naming each difference (it is never silently returned).
        """
        with self._lock:
            existing = self._collections.get(name)
        if existing is None:
            return self.create_collection(name, dim, metric or "cosine", index or "flat", **options)
        index_options = {k: v for k, v in options.items() if k not in ("backend", "optimizer", "planner", "metadata")}
        diff = config_difference(existing.describe(), dim, metric, index, index_options)
        if diff is not None:
            raise CollectionConfigMismatchError(f"collection {name!r} exists with {diff}; "
                                                "use another name or get_collection()")
        return existing

    def list_collections(self) -> list[str]:
        """Names of the open collections, sorted."""
        return sorted(self._collections)

    def rename_collection(self, name: str, new_name: str) -> Collection:
        """Rename a collection and return its handle under the new name.

        Durable databases rename the directory (one atomic, fsynced rename, after sealing the
        collection); handles to the old name then raise CollectionNotFoundError. Raises
        CollectionNotFoundError / CollectionExistsError / InvalidArgumentError for the names.
        """
        check_collection_name(new_name)
        self._check_open(writing=True)
        with self._lock:
            col = self.get_collection(name)
            if new_name in self._collections or new_name in self.unavailable:
                raise CollectionExistsError(f"collection {new_name!r} already exists")
            if self._options is None:
                col.name = col._shard.name = new_name
                self._collections[new_name] = self._collections.pop(name)
                return col
            col._shard.close(flush=True, why=f"renamed to {new_name!r}")
            with storage_errors(self._dir(name), "rename collection"):
                os.rename(self._dir(name), self._dir(new_name))
                fsync_dir(self._dir(new_name).parent)
            del self._collections[name]
            col = self._collections[new_name] = self._open_collection(self._dir(new_name))
            return col

    def drop_collection(self, name: str) -> None:
        """Remove a collection (durably: its directory is renamed away and fsynced, then deleted).

        Handles to it raise CollectionNotFoundError afterwards.
        """
        self._check_open(writing=True)
        with self._lock:
            if name not in self._collections and name not in self.unavailable:
                raise CollectionNotFoundError(f"collection {name!r} does not exist")
            col = self._collections.pop(name, None)
            self.unavailable.pop(name, None)
            if col is not None:
                col._shard.close(flush=False, why="dropped")
            if self._options is not None:
                remove_tree_durably(self._dir(name))

    def snapshot(self, dest: str | os.PathLike) -> None:
        """Write a consistent copy of every collection to ``dest`` (new directory), openable as a Database.

        Each collection is copied at one point in time (writers to it wait meanwhile).
        """
        self._check_open(writing=False)
        target = Path(dest)
        if os.path.lexists(target):
            raise InvalidArgumentError(f"snapshot destination {target} already exists; give a new directory")
        with storage_errors(target, "create snapshot directory"):
            (target / COLLECTIONS).mkdir(parents=True)
        for name, col in sorted(self._collections.items()):
            col.snapshot(target / COLLECTIONS / name)

    def close(self) -> None:
        """Stop optimizers, seal every collection and release the directory lock.

        Idempotent. If sealing fails (a full disk) the error propagates and the database
        stays open, so ``close()`` can be retried once space is back; nothing is lost.
        Handles to its collections raise ClosedError afterwards.
        """
        if self._closed:
            return
        for col in self._collections.values():
            col._shard.close(flush=not self.read_only)
        self._closed = True
        self._release()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database(path={self.path!r}, collections={self.list_collections()})"
