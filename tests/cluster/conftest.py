"""One local Ray instance per test module, small object store; a RayDatabase on it.

``collection_factory`` makes a collection of either implementation ("embedded": a single-node
``shoal.Database`` collection, "ray": a sharded RayCollection) with the same arguments, so the
tests here compare the two on the same data. (The behavioural contract suite, tests/contract,
runs against a RayDatabase of its own: its ``implementations.ray_cluster``.)
"""
from __future__ import annotations

import itertools
from typing import Any, Callable

import pytest

ray = pytest.importorskip("ray", reason="shoal.cluster needs the 'cluster' extra (ray)")

IMPLEMENTATIONS = ("embedded", "ray")
_names = itertools.count()


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, namespace="shoal",
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def cluster_db(ray_instance, tmp_path_factory):
    from shoal.cluster import RayDatabase

    # a small log tail, so a replica that falls behind is caught up by snapshot as well as by the tail
    db = RayDatabase(tmp_path_factory.mktemp("cluster"), unavailable_after=3.0, call_timeout=30.0,
                     tail_bytes=256 << 10, bootstrap_wait=3.0)
    yield db
    db.close()


@pytest.fixture(scope="module")
def collection_factory(cluster_db) -> Callable[..., Any]:
    """``make(impl, dim, metric, index, shards=2, replicas=1, **options)`` -> a fresh, empty collection."""
    import shoal

    embedded = shoal.Database()

    def make(impl: str, dim: int, metric: str = "cosine", index: str = "flat", *, shards: int = 2,
             replicas: int = 1, **options: Any) -> Any:
        name = f"c{next(_names)}"
        if impl == "embedded":
            return embedded.create_collection(name, dim, metric, index, **options)
        return cluster_db.create_collection(name, dim, metric, index, shards=shards, replicas=replicas, **options)

    return make
