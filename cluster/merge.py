"""Merging per-shard answers into the one answer a single collection gives.

Searches: every shard returns its own best hits, the router keeps the best ``k`` (or, for a
range search, the first ``limit``) of their union, which is exact whenever each shard's answer
is. Order: distance ascending, equal distances by id order (``engine.ids.order_key``: ints,
then strings). A single collection breaks ties by insertion order, which a cluster does not
have across shards; id order is a rule that does not depend on how rows are spread over
shards (so resharding does not reorder results). Ties cut by a shard's own ``k``-th place
follow that shard's insertion order.

Record reads: shards return records in id order; the router merges them in id order.
"""
from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..engine.ids import order_key
from ..engine.results import GetResult, QueryResult


def _ranked(distances: np.ndarray, ids: list[Any]) -> np.ndarray:
    """Positions by (distance, id order); numpy's stable sort alone when no two distances are equal."""
    order = np.argsort(distances, kind="stable")
    ranked = distances[order]
    if ranked.size < 2 or not np.any(ranked[1:] == ranked[:-1]):
        return order
    return np.asarray(sorted(range(len(ids)), key=lambda i: (distances[i], order_key(ids[i]))), np.int64)


def merge_topk(parts: Sequence[QueryResult], k: int | None) -> QueryResult:
    """One query's hits from each shard -> the best ``k`` of them (None: all), ties in id order
    (one shard: its answer as it is, which is the single collection's)."""
    if len(parts) == 1:
        return parts[0]
    distances = np.concatenate([p.distances for p in parts])
    ids = [x for p in parts for x in p.ids]
    order = _ranked(distances, ids)[:k]
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


def merge_by_id(parts: Sequence[GetResult], dim: int, include: tuple[str, ...], skip: int = 0,
                limit: int | None = None) -> GetResult:
    """Shards' records (each in id order) -> all of them in id order, after ``skip``, at most ``limit``."""
    streams = [[(order_key(ext), s, i) for i, ext in enumerate(p.ids)] for s, p in enumerate(parts)]
    picked = list(heapq.merge(*streams))[skip:None if limit is None else skip + limit]
    return gather(parts, [(s, i) for _, s, i in picked], dim, include)


def gather(parts: Sequence[GetResult], picks: Sequence[tuple[int, int]], dim: int,
           include: tuple[str, ...]) -> GetResult:
    """A GetResult of the records ``(part, position)`` of ``parts``, in that order; ``include`` as for
    ``get`` (what is left out is None)."""
    ids = [parts[s].ids[i] for s, i in picks]
    metadata = [parts[s].metadata[i] for s, i in picks] if "metadata" in include else None
    vectors = None
    if "vector" in include:
        vectors = np.zeros((len(picks), dim), np.float32)
        where = np.asarray([s for s, _ in picks], np.int64)
        rows = np.asarray([i for _, i in picks], np.int64)
        for s, part in enumerate(parts):
            mine = np.flatnonzero(where == s)
            if mine.size:
                vectors[mine] = part.vectors[rows[mine]]
    return GetResult(ids, vectors, metadata)
