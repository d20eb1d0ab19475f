"""Semantic answer cache: a question close enough (cosine) to a cached one gets the cached answer.

The cached questions live in an in-memory Shoal collection (flat, cosine), so
lookup is one filtered k=1 search: the filter restricts hits to entries asked
with the same retrieval settings (``scope``), and each entry stores the sources
its answer was built from, so ``invalidate_sources`` deletes exactly the
entries a re-ingest or delete made stale (``{"sources": s}`` matches any
element of the list field). Entries whose answer found no sources are dropped on
any change, since new text may now answer them. Least recently used entries
are evicted beyond ``max_entries``.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Any, Generic, Iterable, TypeVar

import numpy as np

from ..engine.collection import Collection
from ..engine.errors import InvalidArgumentError

__all__ = ["SemanticCache"]

T = TypeVar("T")


class SemanticCache(Generic[T]):
    """Maps question embeddings to answers; hit when cosine similarity >= ``threshold``."""

    def __init__(self, dim: int, threshold: float = 0.95, max_entries: int = 1024) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0:
            raise InvalidArgumentError(f"cache threshold is a cosine similarity in [-1, 1], got {threshold!r}")
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise InvalidArgumentError(f"max_entries must be an integer >= 1, got {max_entries!r}")
        self.threshold = float(threshold)
        self.max_entries = max_entries
        self._entries = Collection("semantic_cache", dim, metric="cosine", index="flat")
        self._answers: OrderedDict[int, T] = OrderedDict()
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._answers)

    def lookup(self, embedding: np.ndarray, scope: str = "") -> tuple[T, float] | None:
        """The cached answer and its similarity, or None on a miss."""
        with self._lock:
            if self._answers:
                res = self._entries.search(embedding, k=1, filter={"scope": scope}, include=())
                if len(res) and res.scores[0] >= self.threshold:
                    key = int(res.ids[0])
                    self._answers.move_to_end(key)
                    self.hits += 1
                    return self._answers[key], float(res.scores[0])
            self.misses += 1
            return None

    def put(self, embedding: np.ndarray, answer: T, sources: Iterable[str], scope: str = "") -> None:
        """Cache ``answer`` for a question embedding; ``sources`` are what invalidates it."""
        sources = sorted(set(sources))
        with self._lock:
            key = next(self._ids)
            self._entries.upsert([key], np.asarray(embedding, np.float32)[None, :],
                                 [{"scope": scope, "sources": sources, "unanswered": not sources}])
            self._answers[key] = answer
            while len(self._answers) > self.max_entries:
                old, _ = self._answers.popitem(last=False)
                self._entries.delete([old])

    def invalidate_sources(self, sources: Iterable[str]) -> int:
        """Drop entries built from any of ``sources`` and all unanswered entries; returns how many."""
        sources = sorted(set(sources))
        flt: dict[str, Any] = {"$or": [{"sources": {"$in": sources}}, {"unanswered": True}]} if sources else {"unanswered": True}
        with self._lock:
            if not self._answers:
                return 0
            stale = self._entries.search(np.ones(self._entries.dim, np.float32), k=len(self._answers),
                                         filter=flt, include=()).ids
            if stale:
                self._entries.delete(stale)
            for key in stale:
                del self._answers[int(key)]
            return len(stale)

    def clear(self) -> None:
        with self._lock:
            if self._answers:
                self._entries.delete(list(self._answers))
            self._answers.clear()
