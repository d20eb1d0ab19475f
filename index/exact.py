"""Exact search over rows held elsewhere: the planner's fallback and the Flat path.

Uses the backend's flat kernels. When few rows match, only the matching rows are
read (``knn_rows``), so the cost follows the selectivity, not the segment size.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..engine.backend import Backend, load_kernels
from ..engine.threads import threads_for_batch
from .base import pad_results
from .kernels.topk import sq_norms

#: Gather matching rows instead of masking when at most this fraction matches.
GATHER_FRACTION = 0.5


class ExactSearcher:
    """Exact top-k over ``(vectors, squared norms)`` restricted by a row mask."""

    def __init__(self, metric: str, backend: Backend) -> None:
        self.metric = metric
        self.kernels = load_kernels("shoal.index.kernels", "flat", backend)

    def search(self, x: np.ndarray, norms: np.ndarray, q: np.ndarray, k: int, mask: np.ndarray | None,
               n_match: int | None = None, rows_of: Callable[[], np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(distances, rows)`` of ``q`` among rows of ``x`` where ``mask`` holds.

        ``n_match`` (the mask's count) and ``rows_of`` (returns its true positions, which the
        caller may have cached), when given, save passes over the mask.
        """
        n = x.shape[0]
        if n_match is None:
            n_match = n if mask is None else int(np.count_nonzero(mask))
        if n_match == 0:
            return pad_results(q.shape[0], k)
        if n_match <= GATHER_FRACTION * n:  # a serial kernel below ROWS_IN_PLACE_BELOW queries: no pool to hold back
            rows = np.flatnonzero(mask) if rows_of is None else rows_of()
            return self.kernels.knn_rows(q, x, norms, rows, k, self.metric)
        with threads_for_batch(q.shape[0]):  # the masked scan's merge kernel would wake the whole pool for one query
            return self.kernels.knn(q, x, norms, np.arange(n, dtype=np.int64), None if n_match == n else mask, k,
                                    self.metric)


def knn_over(kernels: Any, q: np.ndarray, x: np.ndarray, labels: np.ndarray, k: int,
             metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of ``q`` over the vectors ``x`` (already gathered) that carry ids ``labels``.

    The fallback every approximate family uses when few rows are allowed.
    """
    x = np.ascontiguousarray(x)
    return kernels.knn(q, x, sq_norms(x), labels, None, k, metric)
