"""Database: a named set of collections (in memory; durable when given a path)."""
from __future__ import annotations

import re
import threading
from typing import Any

from .collection import Collection
from .errors import CollectionExistsError, CollectionNotFoundError, InvalidArgumentError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_collection_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"collection name must be 1-64 characters of letters, digits, '_', '-', '.', starting with a letter or digit; got {name!r}")
    return name


class Database:
    """Entry point of embedded use: ``db = shoal.Database()``."""

    def __init__(self, path: str | None = None, *, backend: str | None = None) -> None:
        self.path = path
        self.backend = backend
        self._collections: dict[str, Collection] = {}
        self._lock = threading.Lock()

    def create_collection(self, name: str, dim: int, metric: str = "cosine", index: str = "flat",
                          **options: Any) -> Collection:
        """Create a collection; ``index`` is a spec ("flat", "hnsw", "IVF256,PQ16", "auto")."""
        check_collection_name(name)
        options.setdefault("backend", self.backend)
        with self._lock:
            if name in self._collections:
                raise CollectionExistsError(f"collection {name!r} already exists")
            col = Collection(name, dim, metric, index, **options)
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
        with self._lock:
            if name not in self._collections:
                raise CollectionNotFoundError(f"collection {name!r} does not exist")
            del self._collections[name]

    def close(self) -> None:
        """Release resources (flushes and unlocks a durable database)."""

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database(path={self.path!r}, collections={self.list_collections()})"
