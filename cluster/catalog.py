"""The catalog: which collections a cluster has and how each is sharded (``root/CATALOG.json``).

One named actor (``shoal/catalog``) owns the file, so every router (scripts, ``shoal serve
--ray``) sees one list and creates/drops are serialised. The file is replaced atomically;
after a whole-cluster restart the catalog reopens it and the replicas reopen their own data.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..engine.errors import CollectionExistsError, CollectionNotFoundError, InvalidArgumentError
from ..storage.io_errors import atomic_file, storage_errors

CATALOG_NAME = "shoal/catalog"
FILE = "CATALOG.json"
VERSION = 1


class Catalog:
    def __init__(self, root: str) -> None:
        self.root = str(Path(root).resolve())
        self.path = Path(self.root) / FILE
        with storage_errors(self.path, "open catalog"):
            Path(self.root).mkdir(parents=True, exist_ok=True)
            doc = json.loads(self.path.read_text()) if self.path.exists() else {"version": VERSION, "collections": {}}
        self.collections: dict[str, dict[str, Any]] = doc["collections"]

    def check_root(self, root: str) -> str:
        """The catalog's root; a router with another root joined the wrong Shoal deployment."""
        if str(Path(root).resolve()) != self.root:
            raise InvalidArgumentError(f"this Ray cluster's Shoal catalog lives at {self.root}, not {root}; "
                                       "give that root or use another Ray namespace")
        return self.root

    def _save(self) -> None:
        with atomic_file(self.path, "write catalog") as f:
            f.write(json.dumps({"version": VERSION, "collections": self.collections}, sort_keys=True).encode())

    def list(self) -> dict[str, dict[str, Any]]:
        return dict(self.collections)

    def add(self, spec: dict[str, Any]) -> None:
        if spec["name"] in self.collections:
            raise CollectionExistsError(f"collection {spec['name']!r} already exists")
        self.collections[spec["name"]] = spec
        self._save()

    def remove(self, name: str) -> None:
        if name not in self.collections:
            raise CollectionNotFoundError(f"collection {name!r} does not exist")
        del self.collections[name]
        self._save()
