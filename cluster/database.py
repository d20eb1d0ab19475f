"""RayDatabase: Shoal's Database API over a Ray cluster (``pip install 'shoal[cluster]'``).

``RayDatabase(root)`` starts a local Ray instance (a laptop, the tests); ``address="auto"`` or
``"ray://host:port"`` joins a running cluster. Each shard replica is a detached named actor
``shoal/<collection>/<shard>/<replica>`` in the Ray namespace ``shoal`` that keeps its own
durable Shoal data under ``root/<collection>/<shard>/<replica>/`` on its node (see
``cluster.replica``). Collections outlive the router: a new RayDatabase on the same cluster
(or ``shoal serve --ray``) finds them in the catalog, and after a whole-cluster restart the
replicas reopen their files.
"""
from __future__ import annotations

import os
import time
import uuid
from typing import Any

from ..engine.collection import Collection, config_difference
from ..engine.database import check_collection_name
from ..engine.echo import shorten
from ..engine.errors import (ClosedError, CollectionConfigMismatchError, CollectionNotFoundError,
                             InvalidArgumentError, ShardUnavailableError, UnimplementedError)
from . import remote
from .catalog import CATALOG_NAME, Catalog
from .collection import RayCollection
from .replica import SERVING, ReplicaSpec, actor_class

#: Most shards / replicas per collection (a sanity bound on actors created by one call).
MAX_SHARDS, MAX_REPLICAS = 1024, 16


def _ray() -> Any:
    try:
        import ray
    except ImportError:  # pragma: no cover - the extra is part of make install
        raise UnimplementedError("shoal.cluster needs Ray: pip install 'shoal[cluster]'") from None
    return ray


class RayDatabase:
    """Sharded, replicated collections on Ray with ``shoal.Database``'s methods.

    ``sync`` and other storage options apply to every replica's own database.
    ``unavailable_after``: seconds a call waits for a recovering shard before UNAVAILABLE;
    ``call_timeout``: seconds one replica call may take. Local instances take ``num_cpus``
    and ``object_store_memory`` (bytes). ``shards`` / ``replicas``: the layout of collections
    created without one (``shoal serve --ray`` clients, code written for ``shoal.Database``).
    """

    def __init__(self, root: str | os.PathLike, address: str | None = None, *, num_cpus: int | None = None,
                 object_store_memory: int | None = None, sync: str = "always", unavailable_after: float = 10.0,
                 call_timeout: float = 60.0, tail_bytes: int = 64 << 20, bootstrap_wait: float = 5.0,
                 shards: int = 1, replicas: int = 1, **storage: Any) -> None:
        ray = _ray()
        self.layout = {"shards": _check_layout("shards", shards, MAX_SHARDS),
                       "replicas": _check_layout("replicas", replicas, MAX_REPLICAS)}
        self.path = os.fspath(root)
        self.storage = {"sync": sync, **storage}
        self.unavailable_after = float(unavailable_after)
        self.call_timeout = float(call_timeout)
        self._replica_options = {"tail_bytes": int(tail_bytes), "bootstrap_wait": float(bootstrap_wait),
                                 "call_timeout": self.call_timeout}
        self._owns_ray = False
        if not ray.is_initialized():
            if address is None:
                ray.init(num_cpus=num_cpus, object_store_memory=object_store_memory, include_dashboard=False,
                         namespace=remote.NAMESPACE, log_to_driver=False)
            else:
                ray.init(address=address, namespace=remote.NAMESPACE, log_to_driver=False)
            self._owns_ray = True
        catalog_class = ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)(Catalog)
        self._catalog = catalog_class.options(name=CATALOG_NAME, namespace=remote.NAMESPACE, lifetime="detached",
                                              get_if_exists=True).remote(os.path.abspath(self.path))
        self.path = remote.get(self._catalog.check_root.remote(self.path), self.call_timeout)
        self._collections: dict[str, RayCollection] = {}
        self._closed = False
        for spec in remote.get(self._catalog.list.remote(), self.call_timeout).values():
            self._collections[spec["name"]] = self._start(spec)

    # -------------------------------------------------------------- replicas
    def _replica_spec(self, spec: dict[str, Any], shard: int, replica: int) -> ReplicaSpec:
        return ReplicaSpec(spec.get("key", spec["name"]), shard, replica, spec["replicas"], self.path, spec["create"],
                           dict(spec["storage"]), **self._replica_options)

    def _ensure_replicas(self, spec: dict[str, Any]) -> None:
        """Create every replica actor that is not alive (a live one is left as it is)."""
        cls = actor_class()
        for shard in range(spec["shards"]):
            for replica in range(spec["replicas"]):
                name = remote.replica_name(spec.get("key", spec["name"]), shard, replica)
                cls.options(name=name, namespace=remote.NAMESPACE, lifetime="detached",
                            get_if_exists=True).remote(self._replica_spec(spec, shard, replica))

    def _start(self, spec: dict[str, Any]) -> RayCollection:
        self._ensure_replicas(spec)
        return RayCollection(self, spec)

    def wait_ready(self, name: str, timeout: float = 60.0, all_replicas: bool = True) -> None:
        """Block until every shard of ``name`` has a leader (and, ``all_replicas``, every replica serves)."""
        col = self.get_collection(name)
        deadline = time.monotonic() + timeout
        while True:
            pending = []
            for shard in range(col.shards):
                states = col._states(shard)
                serving = [r for r, s in states.items() if s is not None and s["state"] == SERVING]
                has_leader = any(states[r]["leader"] == r for r in serving)
                if not has_leader or (all_replicas and len(serving) < col.replicas):
                    pending.append(shard)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ShardUnavailableError(f"collection {name!r}: shards {pending} not ready after {timeout:.0f} s")
            time.sleep(0.05)

    def repair(self, name: str, wait: bool = True, timeout: float = 60.0) -> None:
        """Recreate the replicas of ``name`` that are gone (killed for good); they reopen their data and catch up."""
        col = self.get_collection(name)
        self._ensure_replicas(col.spec)
        if wait:
            self.wait_ready(name, timeout)

    # ------------------------------------------------------------ collections
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"RayDatabase {self.path!r} is closed")

    def create_collection(self, name: str, dim: int, metric: str = "cosine", index: str = "flat", *,
                          shards: int | None = None, replicas: int | None = None, **options: Any) -> RayCollection:
        """Create a collection of ``shards`` shards with ``replicas`` copies each (None: this database's
        default); other arguments as ``shoal.Database.create_collection``. Returns once every replica serves."""
        self._check_open()
        check_collection_name(name)
        shards = self.layout["shards"] if shards is None else _check_layout("shards", shards, MAX_SHARDS)
        replicas = self.layout["replicas"] if replicas is None else _check_layout("replicas", replicas, MAX_REPLICAS)
        options.pop("backend", None)  # each replica picks its own (its node may have a GPU)
        Collection(name, dim, metric, index, **options)  # every argument checked before anything is created
        spec = {"name": name, "shards": shards, "replicas": replicas, "storage": self.storage,
                "create": {"dim": int(dim), "metric": metric, "index": index, "options": options},
                "request": uuid.uuid4().hex}  # (recognises this call if the catalog runs it twice)
        spec = remote.get(self._catalog.add.remote(spec), self.call_timeout)
        self._collections[name] = self._start(spec)
        self.wait_ready(name, self.call_timeout)
        return self._collections[name]

    def get_collection(self, name: str) -> RayCollection:
        self._check_open()
        if name not in self._collections:  # created by another router meanwhile?
            spec = remote.get(self._catalog.list.remote(), self.call_timeout).get(name)
            if spec is None:
                raise CollectionNotFoundError(f"collection {shorten(name)} does not exist; "
                                              f"existing: {shorten(self.list_collections())}")
            self._collections[name] = self._start(spec)
        return self._collections[name]

    def get_or_create_collection(self, name: str, dim: int, metric: str | None = None, index: str | None = None,
                                 **options: Any) -> RayCollection:
        """The collection of that name, created with these arguments if it does not exist; an existing
        one whose configuration differs from what is given raises CollectionConfigMismatchError
        (``shoal.Database.get_or_create_collection``)."""
        try:
            existing = self.get_collection(name)
        except CollectionNotFoundError:
            return self.create_collection(name, dim, metric or "cosine", index or "flat", **options)
        index_options = {k: v for k, v in options.items()
                         if k not in ("backend", "optimizer", "planner", "metadata", "shards", "replicas")}
        diff = config_difference(existing._local.describe(), dim, metric, index, index_options)
        if diff is not None:
            raise CollectionConfigMismatchError(f"collection {name!r} exists with {diff}; "
                                                "use another name or get_collection()")
        return existing

    def rename_collection(self, name: str, new_name: str) -> RayCollection:
        """Rename a collection (one catalog write; the replicas and their data stay where they are)
        and return its handle under the new name; this router's old handle raises CollectionNotFoundError."""
        self._check_open()
        check_collection_name(new_name)
        old = self.get_collection(name)
        spec = remote.get(self._catalog.rename.remote(name, new_name, old.key), self.call_timeout)
        old._retire(f"renamed to {new_name!r}")
        self._collections.pop(name, None)
        col = self._collections[new_name] = RayCollection(self, spec)
        return col

    def list_collections(self) -> list[str]:
        self._check_open()
        return sorted(remote.get(self._catalog.list.remote(), self.call_timeout))

    def describe(self, name: str) -> dict[str, Any]:
        """The collection's fields, shard map and the state of every replica."""
        return self.get_collection(name).describe()

    def drop_collection(self, name: str) -> None:
        """Remove a collection: catalog entry, replica actors and their data directories."""
        self._check_open()
        col = self.get_collection(name)
        remote.get(self._catalog.remove.remote(name, col.key), self.call_timeout)
        self._collections.pop(name, None)
        col._retire("dropped")
        ray = _ray()
        for shard in range(col.shards):
            for replica in range(col.replicas):
                try:
                    handle = remote.actor(remote.replica_name(col.key, shard, replica))
                except remote.Unreachable:
                    continue  # gone already; its directory stays on its node
                try:
                    remote.get(handle.close.remote(True), self.call_timeout)
                except remote.Unreachable:
                    pass
                ray.kill(handle, no_restart=True)

    def close(self) -> None:
        """Forget the collections; a local Ray instance this object started is shut down
        (replicas flush and close first, so the next open replays nothing)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_ray:
            for col in self._collections.values():
                col._on_all_replicas("flush")
            _ray().shutdown()
        self._collections.clear()

    def __enter__(self) -> "RayDatabase":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RayDatabase(path={self.path!r}, collections={sorted(self._collections)})"


def _check_layout(what: str, value: Any, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise InvalidArgumentError(f"{what} must be an integer in 1..{most}, got {shorten(value)}")
    return value
