"""Exact brute-force search: the ground truth every other index is measured against."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.backend import Backend, load_kernels
from .base import Index, LabelTable, RangeResult, pad_results
from .kernels.topk import sq_norms


class FlatIndex(Index):
    """Stores vectors as rows; search scans all of them with blocked GEMM + top-k.

    Removed rows are tombstoned and dropped from the arrays once they make up
    more than half of them, so memory tracks the live set.
    """

    KIND = "FLAT"
    EXACT = True

    def __init__(self, dim: int, metric: str = "l2", *, backend: str | Backend | None = None, **options: Any) -> None:
        super().__init__(dim, metric, backend=backend, **options)  # Flat has no options: any is an error
        self._kernels = load_kernels("shoal.index.kernels", "flat", self.backend)
        self._table = LabelTable()
        self._x = np.zeros((0, self.dim), dtype=np.float32)
        self._xnorm = np.zeros(0, dtype=np.float32)

    @property
    def ntotal(self) -> int:
        return self._table.live_count

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return self._table.contains(ids)

    def _add(self, x: np.ndarray, labels: np.ndarray) -> None:
        rows, _ = self._table.append(labels)
        need = int(rows[-1]) + 1
        if need > self._x.shape[0] or not self._x.flags.writeable:
            cap = max(need, 2 * self._x.shape[0], 64)
            grown = np.zeros((cap, self.dim), dtype=np.float32)
            grown_norm = np.zeros(cap, dtype=np.float32)
            used = self._table.size - rows.size
            grown[:used] = self._x[:used]
            grown_norm[:used] = self._xnorm[:used]
            self._x, self._xnorm = grown, grown_norm
        self._x[rows] = x
        self._xnorm[rows] = sq_norms(x)

    def _search(self, q: np.ndarray, k: int, params: dict[str, Any],
                allowed: np.ndarray | None, report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        n = self._table.size
        if n == 0:
            return pad_results(q.shape[0], k)
        mask = self._table.row_mask(allowed)
        use = None if mask.all() else mask
        return self._kernels.knn(q, self._x[:n], self._xnorm[:n], self._table.labels[:n], use, k, self.metric)

    def _range_search(self, q: np.ndarray, radius: float, params: dict[str, Any],
                      allowed: np.ndarray | None) -> RangeResult:
        n = self._table.size
        mask = self._table.row_mask(allowed)
        return self._kernels.range_search(q, self._x[:n], self._xnorm[:n], self._table.labels[:n],
                                          None if mask.all() else mask, radius, self.metric)

    def _remove(self, labels: np.ndarray) -> int:
        removed = self._table.remove(labels).size
        if self._table.size and self._table.deleted[: self._table.size].mean() > 0.5:
            self._compact()
        return removed

    def _compact(self) -> None:
        live = np.flatnonzero(~self._table.deleted[: self._table.size])
        self._table = LabelTable(self._table.labels[live].copy())
        self._x = np.ascontiguousarray(self._x[live])
        self._xnorm = self._xnorm[live].copy()

    def reconstruct(self, ids: Any) -> np.ndarray:
        """Stored vectors for ids (normalised for cosine)."""
        rows = [self._table.row_of[int(i)] for i in np.asarray(ids).ravel()]
        return np.asarray(self._x[rows])

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        n = self._table.size
        return {"vectors": self._x[:n], **self._table.state()}, {}

    @classmethod
    def _from_state(cls, meta, arrays, *, version, backend):
        index = cls(meta["dim"], meta["metric"], backend=backend)
        index._table = LabelTable(np.array(arrays["labels"]), np.array(arrays["deleted"]))
        index._x = arrays["vectors"]
        index._xnorm = sq_norms(np.asarray(index._x))
        return index
