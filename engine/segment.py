"""A segment: a contiguous run of a collection's rows with their vectors, payloads and index.

Rows are append-only and addressed by row number; internal ids of a segment
are ``start + row``. Deletes clear the ``live`` bit. The in-memory database has
one growing segment; the storage layer seals segments to disk and opens them
memory-mapped, through the same class.

Vectors are stored as the index sees them (normalised for cosine), so the
exact path and the index agree on every distance.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..index.base import Index
from ..index.exact import ExactSearcher
from ..index.kernels.topk import sq_norms
from .errors import FailedPreconditionError
from .filters import Node
from .metadata import MetadataStore

#: An approximate index hands over to exact search when at most this many rows match.
EXACT_SEARCH_THRESHOLD = 20_000


class Segment:
    """Rows ``[start, start + n)`` of a collection."""

    def __init__(self, start: int, dim: int, metric: str, exact: ExactSearcher,
                 index_factory: Callable[[], Index | None]) -> None:
        self.start = start
        self.dim = dim
        self.metric = metric
        self.exact = exact
        self._index_factory = index_factory
        self.index: Index | None = index_factory()
        self.vectors = np.zeros((0, dim), np.float32)
        self.norms = np.zeros(0, np.float32)
        self.live = np.zeros(0, bool)
        self.meta = MetadataStore()
        self.n = 0
        #: Sealed segments are immutable on disk (memory-mapped) and accept only deletes.
        self.sealed = False
        #: The storage layer's record of this segment's files (None while in memory only).
        self.disk: dict[str, Any] | None = None

    @classmethod
    def restore(cls, start: int, dim: int, metric: str, exact: ExactSearcher,
                index_factory: Callable[[], Index | None], vectors: np.ndarray, norms: np.ndarray,
                live: np.ndarray, payloads: list[dict[str, Any]], index: Index | None) -> "Segment":
        """A sealed segment from stored arrays; ``index`` None rebuilds it from the live rows."""
        seg = cls(start, dim, metric, exact, index_factory)
        seg.vectors, seg.norms, seg.n = vectors, norms, vectors.shape[0]
        seg.live = np.ones(seg.n, bool)
        seg.meta.append([p if ok else {} for p, ok in zip(payloads, live.tolist())])
        if index is not None:
            seg.index = index
        seg.delete(np.flatnonzero(~live))
        if index is None:
            seg._sync_index(np.flatnonzero(live))
        seg.sealed = True
        return seg

    def seal(self, vectors: np.ndarray, norms: np.ndarray) -> None:
        """Swap in the stored (memory-mapped) copies of the arrays once they are on disk."""
        self.vectors, self.norms = vectors, norms
        self.live = self.live[: self.n].copy()
        self.sealed = True

    # ----------------------------------------------------------------- writes
    def append(self, x: np.ndarray, payloads: list[dict[str, Any]]) -> np.ndarray:
        """Append prepared vectors; returns their row numbers."""
        if self.sealed:
            raise FailedPreconditionError("a sealed segment accepts only deletes")
        rows = np.arange(self.n, self.n + x.shape[0], dtype=np.int64)
        self._reserve(self.n + x.shape[0])
        self.vectors[rows] = x
        self.norms[rows] = sq_norms(x)
        self.live[rows] = True
        self.meta.append(payloads)
        self.n += x.shape[0]
        self._sync_index(rows)
        return rows

    def delete(self, rows: np.ndarray) -> None:
        rows = rows[self.live[rows]]
        if not rows.size:
            return
        self.live[rows] = False
        self.meta.clear_rows(rows)
        if self.index is not None and self.index.is_trained:
            present = rows[self.index.contains(rows)]
            if present.size:
                self.index.remove(present)

    def _reserve(self, n: int) -> None:
        cap = self.vectors.shape[0]
        if n <= cap and self.vectors.flags.writeable:
            return
        cap = max(n, 2 * cap, 256)
        vectors = np.zeros((cap, self.dim), np.float32)
        norms = np.zeros(cap, np.float32)
        live = np.zeros(cap, bool)
        vectors[: self.n] = self.vectors[: self.n]
        norms[: self.n] = self.norms[: self.n]
        live[: self.n] = self.live[: self.n]
        self.vectors, self.norms, self.live = vectors, norms, live

    def _sync_index(self, new_rows: np.ndarray) -> None:
        """Add rows to the index, training it first once enough rows exist."""
        index = self.index
        if index is None:
            return
        if index.is_trained:
            index.add(self.vectors[new_rows], new_rows)
            return
        live_rows = np.flatnonzero(self.live[: self.n])
        if live_rows.size >= getattr(index, "min_train_size", 1):
            index.train(self.vectors[live_rows])
            index.add(self.vectors[live_rows], live_rows)

    # ------------------------------------------------------------------ reads
    @property
    def live_count(self) -> int:
        return int(self.live[: self.n].sum())

    def match_mask(self, node: Node | None) -> np.ndarray:
        """Rows that are live and pass the filter."""
        live = self.live[: self.n]
        return live.copy() if node is None else (live & node.mask(self.meta))

    def search(self, q: np.ndarray, k: int, node: Node | None,
               params: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(distances, internal ids)`` among live rows matching ``node``.

        Planner: exact search when the segment has no (trained) index or few
        rows match; otherwise the index, with the filter mask pushed into it.
        """
        mask = self.match_mask(node)
        n_match = int(mask.sum())
        index = self.index
        if index is None or not index.is_trained or n_match <= max(k, EXACT_SEARCH_THRESHOLD):
            d, rows = self.exact.search(self.vectors[: self.n], self.norms[: self.n], q, k,
                                        None if n_match == self.n else mask)
        else:
            allowed = None if n_match == self.live_count and node is None else mask
            d, rows = index.search(q, k, params=params, allowed=allowed)
        return d, np.where(rows >= 0, rows + self.start, -1)
