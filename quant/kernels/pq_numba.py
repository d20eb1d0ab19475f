"""Numba PQ lookup tables: per query, distance from each sub-vector to each sub-centroid."""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, parallel=True, fastmath=True)
def _tables(q, cents_t, l2, out):
    nq = q.shape[0]
    m, dsub, ksub = cents_t.shape
    for i in nb.prange(nq):
        for s in range(m):
            row = out[i, s]
            row[:] = 0.0
            for j in range(dsub):
                v = q[i, s * dsub + j]
                if l2:
                    for c in range(ksub):
                        t = v - cents_t[s, j, c]
                        row[c] += t * t
                else:
                    for c in range(ksub):
                        row[c] -= v * cents_t[s, j, c]


def tables(q: np.ndarray, cents: np.ndarray, l2: bool) -> np.ndarray:
    """``(nq, m, ksub)``: squared L2 distances (``l2``) or negative dot products ``-q_s·c``."""
    out = np.empty((q.shape[0],) + cents.shape[:2], np.float32)
    _tables(np.ascontiguousarray(q, dtype=np.float32), np.ascontiguousarray(cents.transpose(0, 2, 1)), l2, out)
    return out
