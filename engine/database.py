"""Database: a named set of collections (in memory; durable when given a path).

A durable database is a directory: ``LOCK`` (held with ``fcntl.flock`` by the one
writing process) and ``collections/<name>/`` per collection (see
``shoal.storage.collection_store``). ``read_only=True`` takes no lock and sees the
state as of its open; ``repair=True`` keeps every valid record of a damaged log.
Durability per ``sync`` mode is documented in ``shoal.storage.wal``.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

from .collection import Collection
from .errors import (CollectionExistsError, CollectionNotFoundError, FailedPreconditionError, InvalidArgumentError,
                     LockedError, ReadOnlyError, StorageError)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
COLLECTIONS = "collections"
LOCK = "LOCK"


def check_collection_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"collection name must be 1-64 characters of letters, digits, '_', '-', '.', starting with a letter or digit; got {name!r}")
    return name


class Database:
    """Entry point of embedded use: ``db = shoal.Database()`` or ``shoal.Database("data/")``.

    Storage options (durable databases): ``sync`` ("always" | "batch" | "never"),
    ``sync_interval_ms`` / ``sync_records`` (group commit of "batch"), ``flush_rows``
    (growing segment size that triggers a flush), ``compact_threshold`` (deleted
    fraction that triggers automatic compaction), ``read_only``, ``repair``.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, backend: str | None = None,
                 read_only: bool = False, repair: bool = False, sync: str = "always", **storage: Any) -> None:
        self.path = None if path is None else str(path)
        self.backend = backend
        self.read_only = read_only
        self._collections: dict[str, Collection] = {}
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._closed = False
        self._options = None
        if path is None:
            if read_only or repair or storage or sync != "always":
                raise InvalidArgumentError("read_only, repair, sync and storage options need a path (durable database)")
            return
        from ..storage.collection_store import CollectionStore, StoreOptions

        try:
            self._options = StoreOptions(sync=sync, read_only=read_only, repair=repair, **storage)
        except TypeError as exc:
            raise InvalidArgumentError(f"{exc}; storage options are sync, sync_interval_ms, sync_records, "
                                       "flush_rows, compact_threshold, read_only, repair, verify") from None
        root = Path(path)
        if read_only and not (root / COLLECTIONS).is_dir():
            raise StorageError(f"{root} is not a Shoal data directory (no {COLLECTIONS}/); cannot open read-only")
        if not read_only:
            (root / COLLECTIONS).mkdir(parents=True, exist_ok=True)
            self._acquire_lock(root / LOCK)
        try:
            for child in sorted((root / COLLECTIONS).iterdir()):
                if child.name.startswith((".tmp-", ".drop-")):
                    if not read_only:  # a create or drop interrupted by a crash
                        shutil.rmtree(child)
                    continue
                col = CollectionStore.open(child, self._options, backend)
                self._collections[col.name] = col
        except BaseException:
            self._release()
            raise

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
            if col._store is not None:
                col._store.close(flush=False)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def _dir(self, name: str) -> Path:
        assert self.path is not None
        return Path(self.path) / COLLECTIONS / name

    def _check_open(self, writing: bool) -> None:
        if self._closed:
            raise FailedPreconditionError(f"database {self.path!r} is closed")
        if writing and self.read_only:
            raise ReadOnlyError(f"database {self.path!r} was opened read-only; writes are not allowed")

    def create_collection(self, name: str, dim: int, metric: str = "cosine", index: str = "flat",
                          **options: Any) -> Collection:
        """Create a collection; ``index`` is a spec ("flat", "hnsw", "IVF256,PQ16", "auto")."""
        check_collection_name(name)
        self._check_open(writing=True)
        options.setdefault("backend", self.backend)
        with self._lock:
            if name in self._collections:
                raise CollectionExistsError(f"collection {name!r} already exists")
            col = Collection(name, dim, metric, index, **options)
            if self._options is not None:
                from ..storage.collection_store import CollectionStore

                CollectionStore.create(self._dir(name), col, self._options)
            self._collections[name] = col
        return col

    def get_collection(self, name: str) -> Collection:
        try:
            return self._collections[name]
        except KeyError:
            raise CollectionNotFoundError(f"collection {name!r} does not exist; existing: {sorted(self._collections)}") from None

    def get_or_create_collection(self, name: str, dim: int, **kwargs: Any) -> Collection:
        with self._lock:
            existing = self._collections.get(name)
        return existing if existing is not None else self.create_collection(name, dim, **kwargs)

    def list_collections(self) -> list[str]:
        return sorted(self._collections)

    def drop_collection(self, name: str) -> None:
        """Remove a collection (durably: its directory is renamed away and fsynced, then deleted)."""
        self._check_open(writing=True)
        with self._lock:
            if name not in self._collections:
                raise CollectionNotFoundError(f"collection {name!r} does not exist")
            col = self._collections.pop(name)
            if col._store is not None:
                from ..storage.collection_store import remove_tree_durably

                col._store.close(flush=False)
                remove_tree_durably(self._dir(name))

    def snapshot(self, dest: str | os.PathLike) -> None:
        """Write a consistent copy of every collection to ``dest`` (new directory), openable as a Database.

        Each collection is copied at one point in time (writers to it wait meanwhile).
        """
        self._check_open(writing=False)
        target = Path(dest)
        if target.exists():
            raise InvalidArgumentError(f"snapshot destination {target} already exists; give a new directory")
        (target / COLLECTIONS).mkdir(parents=True)
        for name, col in sorted(self._collections.items()):
            col.snapshot(target / COLLECTIONS / name)

    def close(self) -> None:
        """Flush every collection and release the directory lock (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            for col in self._collections.values():
                if col._store is not None:
                    col._store.close(flush=not self.read_only)
        finally:
            self._release()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database(path={self.path!r}, collections={self.list_collections()})"
