"""Record operations the framework stores need and Shoal's collection API does not offer directly,
built from the public calls an embedded ``Collection`` and a ``shoal.Client`` collection share.

* ``get_existing`` / ``delete_existing``: the frameworks ask for ids that may not exist (LangChain's
  ``get_by_ids`` and ``delete`` must ignore them), while ``Collection.get`` and ``delete`` reject the
  whole call with ``IdNotFoundError`` when one id is missing and change nothing. We bisect: one call
  when every id exists; with ``m`` of ``n`` ids missing, at most about ``2·m·log2(n/m) + 1`` calls.
* ``scan``: every record matching a filter. There is no scroll call, so this is a search with
  ``k`` >= ``count(filter)``; the search planner answers exactly when no more rows match than ``k``
  (``Segment.search``: exact scan when ``n_match <= k``), so nothing is missed. The query is the
  zero vector, whose distance to every row is the same, so the order is insertion order.
* ``local_scores``: Shoal's ``score`` (larger is better) of a few fetched vectors, for queries
  restricted to given ids (the filter language cannot name record ids).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..engine.errors import IdNotFoundError
from ..engine.results import GetResult, QueryResult

#: Extra rows asked of a scan beyond ``count(filter)``, so rows written between the count and the
#: search are still returned; when the search fills ``k`` anyway it is repeated with ``k`` doubled.
SCAN_SLACK = 64


def _bisect(call: Callable[[list[Any]], Any], ids: list[Any]) -> list[Any]:
    """``call`` on ``ids``; where it raises IdNotFoundError, on each half, down to single missing ids (skipped).

    Correct because the collection validates all ids before it changes or returns anything.
    """
    if not ids:
        return []
    try:
        return [call(ids)]
    except IdNotFoundError:
        if len(ids) == 1:
            return []
        mid = len(ids) // 2
        return _bisect(call, ids[:mid]) + _bisect(call, ids[mid:])


def get_existing(collection: Any, ids: Sequence[Any]) -> GetResult:
    """The records of those ``ids`` that exist, in request order, each once."""
    parts: list[GetResult] = _bisect(collection.get, list(dict.fromkeys(ids)))
    if not parts:
        return GetResult([], np.zeros((0, collection.dim), np.float32), [])
    return GetResult([i for p in parts for i in p.ids], np.concatenate([p.vectors for p in parts]),
                     [m for p in parts for m in p.metadata])


def delete_existing(collection: Any, ids: Sequence[Any], filter: Any = None) -> int:
    """Delete those ``ids`` that exist (and match ``filter``, when given); returns how many were deleted."""
    return sum(_bisect(lambda chunk: collection.delete(ids=chunk, filter=filter), list(dict.fromkeys(ids))))


def scan(collection: Any, filter: Any = None, include: Sequence[str] = ("metadata",)) -> QueryResult:
    """Every record matching ``filter`` (all records when None), in insertion order."""
    include = tuple(include)
    n = collection.count(filter)
    if n == 0:
        return QueryResult([], np.zeros(0, np.float32), np.zeros(0, np.float32),
                           [] if "metadata" in include else None,
                           np.zeros((0, collection.dim), np.float32) if "vector" in include else None)
    query = np.zeros(collection.dim, np.float32)
    k = n + SCAN_SLACK
    while True:
        result = collection.search(query, k=k, filter=filter, include=include)
        if len(result) < k:
            return result
        k *= 2


def local_scores(metric: str, query: Any, vectors: np.ndarray) -> np.ndarray:
    """Shoal's scores of ``vectors`` for ``query``: cosine similarity, inner product, or minus squared L2."""
    q = np.asarray(query, np.float32)
    x = np.asarray(vectors, np.float32).reshape(-1, q.shape[0])
    if metric == "cosine":
        qn, xn = float(np.linalg.norm(q)), np.linalg.norm(x, axis=1)
        return (x @ q) / np.where(xn > 0, xn, np.float32(1)) / (qn if qn > 0 else 1.0)
    if metric == "ip":
        return x @ q
    diff = x - q
    return -np.einsum("ij,ij->i", diff, diff)
