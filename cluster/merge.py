"""Exact top-k over shards: every shard returns its own top-k, the router merges them.

The global top-k is contained in the union of per-shard top-k lists, so the merge is exact
whenever each shard's answer is. Order: distance ascending; equal distances keep shard
order, then each shard's own order (a single collection breaks ties by lower internal id,
i.e. insertion order within a shard; across shards there is no common insertion order, so
shard number stands in for it). A stable sort of the shard lists concatenated in shard
order gives exactly that.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..engine.results import QueryResult


def merge_topk(parts: Sequence[QueryResult], k: int) -> QueryResult:
    """One query's results from each shard (in shard order) -> its global top-k."""
    if len(parts) == 1:
        return parts[0]
    distances = np.concatenate([p.distances for p in parts])
    order = np.argsort(distances, kind="stable")[:k]
    ids = [x for p in parts for x in p.ids]
    take = order.tolist()
    metadata = None
    if parts[0].metadata is not None:
        flat = [m for p in parts for m in p.metadata]
        metadata = [flat[i] for i in take]
    vectors = None
    if parts[0].vectors is not None:
        vectors = np.concatenate([p.vectors for p in parts])[order]
    return QueryResult([ids[i] for i in take], distances[order],
                       np.concatenate([p.scores for p in parts])[order], metadata, vectors)
