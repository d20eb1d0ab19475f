"""Record operations the framework stores need, on the public API an embedded ``Collection`` and a
``shoal.Client`` collection share (issue 19 gave that API what used to be worked around here).

* ``get_existing`` / ``delete_existing``: the frameworks ask for ids that may not exist (LangChain's
  ``get_by_ids`` and ``delete`` must ignore them): ``get(ids, missing="skip")`` and ``delete`` (which
  ignores missing ids) do it in one call.
* ``scan``: every record matching a filter, page by page through ``scroll`` (stable while writes go
  on; no bound on the number of records, unlike the k-limited search it replaces), in id order.
* ``local_scores``: Shoal's ``score`` (larger is better) of a few fetched vectors, for queries
  restricted to given ids (the filter language cannot name record ids).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..engine.results import GetResult

#: Records per scroll page of ``scan``.
SCAN_PAGE = 4096


def get_existing(collection: Any, ids: Sequence[Any], filter: Any = None) -> GetResult:
    """The records of those ``ids`` that exist (and match ``filter``), in request order, each once."""
    return collection.get(list(dict.fromkeys(ids)), filter=filter, missing="skip", include=("metadata", "vector"))


def delete_existing(collection: Any, ids: Sequence[Any], filter: Any = None) -> int:
    """Delete those ``ids`` that exist (and match ``filter``, when given); returns how many were deleted."""
    ids = list(dict.fromkeys(ids))
    return collection.delete(ids=ids, filter=filter) if ids else 0


def scan(collection: Any, filter: Any = None, include: Sequence[str] = ("metadata",)) -> GetResult:
    """Every record matching ``filter`` (all records when None), in id order."""
    include = tuple(f for f in include if f != "distance")
    ids: list[Any] = []
    metadata: list[dict[str, Any]] = []
    vectors: list[np.ndarray] = []
    cursor = None
    while True:
        page = collection.scroll(filter, SCAN_PAGE, cursor, include)
        ids += page.records.ids
        if page.records.metadata is not None:
            metadata += page.records.metadata
        if page.records.vectors is not None:
            vectors.append(page.records.vectors)
        cursor = page.next_cursor
        if cursor is None:
            break
    return GetResult(ids, (np.concatenate(vectors) if vectors else np.zeros((0, collection.dim), np.float32))
                     if "vector" in include else None, metadata if "metadata" in include else None)


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
