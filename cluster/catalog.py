"""The catalog: which collections a cluster has and how each is sharded (``root/CATALOG.json``).

One named actor (``shoal/catalog``) owns the file, so every router (scripts, ``shoal serve
--ray``) sees one list and creates/drops are serialised. The file is replaced atomically;
after a whole-cluster restart the catalog reopens it and the replicas reopen their own data.
A collection's replica actors and directories are named by its ``key`` (its first name), so a
rename is one catalog write and moves no data.

The actor is restarted by Ray and its calls retried (``max_task_retries=-1``), so a call can run
twice: once before the actor died, after its file was saved, and again in the restarted actor.
Each change is therefore recognisable on the second run: ``add`` by the request id stored in the
spec, ``rename`` and ``remove`` by the collection's key; a retried one answers what the first did.
"""
from __future__ import annotations

import itertools
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

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Record a new collection; returns its spec with the ``key`` its replicas and directories are
        named by: the name, or ``name.N`` when a renamed collection still uses the name as its key (a key
        is a valid collection name: each replica's own database holds a collection of that name)."""
        name = spec["name"]
        existing = self.collections.get(name)
        if existing is not None:
            if spec.get("request") is not None and existing.get("request") == spec["request"]:
                return existing  # this very call, retried after the actor restarted: it was saved
            raise CollectionExistsError(f"collection {name!r} already exists")
        taken = {s.get("key", s["name"]) for s in self.collections.values()}
        key = next(k for k in itertools.chain([name], (f"{name[:56]}.{n}" for n in itertools.count(1))) if k not in taken)
        spec = {**spec, "key": key}
        self.collections[name] = spec
        self._save()
        return spec

    def rename(self, name: str, new_name: str, key: str | None = None) -> dict[str, Any]:
        """Rename in the catalog only (one atomic file replace): the replicas keep their key (``key``:
        the one the caller renames, so that a retried rename is recognised)."""
        moved = self.collections.get(new_name)
        if name not in self.collections and moved is not None and key is not None and moved.get("key") == key:
            return moved  # retried after the actor restarted: it was saved
        if name not in self.collections:
            raise CollectionNotFoundError(f"collection {name!r} does not exist")
        if new_name in self.collections:
            raise CollectionExistsError(f"collection {new_name!r} already exists")
        spec = self.collections.pop(name)
        spec = self.collections[new_name] = {**spec, "name": new_name, "key": spec.get("key", name)}
        self._save()
        return spec

    def remove(self, name: str, key: str | None = None) -> None:
        """Forget a collection (``key``: the one the caller drops; a retried remove finds no collection
        with it any more and succeeds)."""
        if name not in self.collections:
            if key is not None and all(s.get("key", s["name"]) != key for s in self.collections.values()):
                return  # retried after the actor restarted: it was saved
            raise CollectionNotFoundError(f"collection {name!r} does not exist")
        del self.collections[name]
        self._save()
