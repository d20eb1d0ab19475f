"""MaxSim (ColBERT late interaction) in Numba: one thread per (query set, record) pair.

Same contract as ``maxsim_numpy`` (the reference): pair ``c`` scores query set ``pair_set[c]``
(rows ``q_off[s]:q_off[s + 1]`` of ``q``) against rows ``starts[c]:ends[c]`` of ``vectors`` (a
record's vectors are one run of rows, so a pair is two integers, nothing is gathered), summing over
the query rows the best similarity over the record's rows: the dot product, or with ``l2`` minus
the squared distance. Accumulates in float64 so the result matches the reference to float32
rounding whatever the dimension.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True, fastmath=True)
def _pair(q, lo, hi, vectors, start, end, l2):
    dim = q.shape[1]
    total = 0.0
    for i in range(lo, hi):
        best = -1.0e308  # finite: fastmath assumes no infinities
        for j in range(start, end):
            acc = 0.0
            if l2:
                for t in range(dim):
                    diff = np.float64(q[i, t]) - np.float64(vectors[j, t])
                    acc -= diff * diff
            else:
                for t in range(dim):
                    acc += np.float64(q[i, t]) * np.float64(vectors[j, t])
            if acc > best:
                best = acc
        total += best
    return total


@njit(cache=True, nogil=True, parallel=True)
def maxsim(q, q_off, pair_set, vectors, starts, ends, l2):
    n = pair_set.shape[0]
    out = np.empty(n, np.float32)
    for c in prange(n):
        s = pair_set[c]
        out[c] = _pair(q, q_off[s], q_off[s + 1], vectors, starts[c], ends[c], l2)
    return out
