"""Result types returned by searches and gets: small, printable, numpy-friendly."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Hit:
    """One search result."""

    id: Any
    distance: float
    score: float
    metadata: dict[str, Any] | None = None
    vector: np.ndarray | None = None
    #: Hybrid searches: the retrievers that found this hit, with their scores (``engine.hybrid``).
    retrievers: dict[str, float] | None = None


@dataclass
class QueryResult:
    """The hits of one query, best first. ``len()`` may be < k when fewer rows match."""

    ids: list[Any]
    distances: np.ndarray
    scores: np.ndarray
    metadata: list[dict[str, Any]] | None = None
    vectors: np.ndarray | None = None
    #: With ``search(..., explain=True)``: how each segment answered (see ``engine.planner``).
    plan: list[dict[str, Any]] | None = None
    #: Searches with ``text``/``sparse``: per hit, the retrievers that found it and their scores.
    retrievers: list[dict[str, float]] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self):
        for i, ext in enumerate(self.ids):
            yield Hit(ext, float(self.distances[i]), float(self.scores[i]),
                      None if self.metadata is None else self.metadata[i],
                      None if self.vectors is None else self.vectors[i],
                      None if self.retrievers is None else self.retrievers[i])

    def __getitem__(self, i: int) -> Hit:
        return list(self)[i]

    def to_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, distances)`` as arrays (ids as an object array when they are strings)."""
        return np.asarray(self.ids), np.asarray(self.distances)

    def __repr__(self) -> str:
        lines = [f"QueryResult({len(self)} hits)"]
        for rank, hit in enumerate(self):
            meta = "" if hit.metadata is None else f"  {hit.metadata}"
            lines.append(f"  {rank + 1:>3}. id={hit.id!r:<12} distance={hit.distance:.6g}{meta}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Record:
    """One stored record (an item of ``GetResult``); ``vector``/``metadata`` are None when not included."""

    id: Any
    metadata: dict[str, Any] | None = None
    vector: np.ndarray | None = None


@dataclass
class GetResult:
    """Stored records: for ``get(ids)`` in request order, otherwise in id order (see ``Collection.scroll``).

    Iterable and indexable like QueryResult (items are ``Record``); ``vectors`` is None and
    ``metadata`` is None when they were not included.
    """

    ids: list[Any]
    vectors: np.ndarray | None
    metadata: list[dict[str, Any]] | None = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self):
        for i, ext in enumerate(self.ids):
            yield self._record(i, ext)

    def __getitem__(self, i: int) -> Record:
        n = len(self.ids)
        if not -n <= i < n:
            raise IndexError(f"record index {i} out of range for {n} records")
        i %= n
        return self._record(i, self.ids[i])

    def _record(self, i: int, ext: Any) -> Record:
        return Record(ext, None if self.metadata is None else self.metadata[i],
                      None if self.vectors is None else self.vectors[i])

    def __repr__(self) -> str:
        dim = self.vectors.shape[1] if getattr(self.vectors, "ndim", 0) == 2 else None  # multivector: a list
        return f"GetResult({len(self)} records{'' if dim is None else f', dim={dim}'})"


@dataclass
class ScrollPage:
    """One page of ``Collection.scroll``: the records and the cursor of the next page (None: the last page)."""

    records: GetResult
    next_cursor: Any = None

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)


@dataclass
class Group:
    """The best hits of one distinct value of the ``group_by`` field (``search(..., group_by=...)``)."""

    value: Any
    hits: QueryResult
