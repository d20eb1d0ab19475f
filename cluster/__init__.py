"""Shoal beyond one machine: sharded, replicated collections on Ray, with the embedded API.

    from shoal.cluster import RayDatabase
    db = RayDatabase("data/")                       # a local Ray instance; address="auto" joins a cluster
    col = db.create_collection("docs", dim=384, index="hnsw", shards=4, replicas=2)
    col.upsert(ids, vectors, metadata); col.search(queries, k=10, filter={"lang": "en"})
    db.describe("docs")["shard_map"]                # leader, state and position of every replica

Importing this package does not import Ray; creating a RayDatabase does (``shoal[cluster]``).
"""
from .collection import RayCollection
from .database import RayDatabase

__all__ = ["RayDatabase", "RayCollection"]
