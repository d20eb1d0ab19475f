"""Numba re-ranking: exact distances from each query to its own candidate rows."""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, parallel=True, fastmath=True)
def _rescore(q, vec, rows, code, out):
    nq, dim = q.shape
    for i in nb.prange(nq):
        for c in range(rows.shape[1]):
            r = rows[i, c]
            if r < 0:
                out[i, c] = np.inf
                continue
            acc = np.float32(0.0)
            if code == 0:
                for j in range(dim):
                    t = q[i, j] - vec[r, j]
                    acc += t * t
            else:
                for j in range(dim):
                    acc += q[i, j] * vec[r, j]
                acc = (np.float32(1.0) - acc) if code == 1 else -acc
            out[i, c] = acc


def rescore(q: np.ndarray, vec: np.ndarray, rows: np.ndarray, code: int) -> np.ndarray:
    """``(nq, c)`` exact distances of query i to rows ``rows[i]`` of ``vec`` (inf where row is -1)."""
    out = np.empty(rows.shape, np.float32)
    _rescore(q, vec, rows, code, out)
    return out
