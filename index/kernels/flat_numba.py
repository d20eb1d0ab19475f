"""Numba flat kernels: BLAS computes dot products, a parallel kernel keeps the top-k.

Between blocks each query's running top-k is a heap (:mod:`.heap_numba`); it is sorted
once, after the last block.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from .heap_numba import heap_push, heap_sort, heap_sort_rows
from .prefetch_numba import LINE_BYTES, prefetch
from .topk import METRIC_CODES, blocked_knn, gathered_knn, range_blocks


@nb.njit(cache=True, parallel=True)
def _merge_kernel(sims, xnorm, qnorm, code, labels, mask, use_mask, out_d, out_i):
    nq, nb_rows = sims.shape
    for r in nb.prange(nq):
        dr = out_d[r]
        ir = out_i[r]
        for j in range(nb_rows):
            if use_mask and not mask[j]:
                continue
            s = sims[r, j]
            if code == 0:
                d = qnorm[r] + xnorm[j] - 2.0 * s
                if d < 0.0:
                    d = 0.0
            elif code == 1:
                d = 1.0 - s
            else:
                d = -s
            if d <= dr[0]:
                heap_push(dr, ir, np.float32(d), labels[j])


_EMPTY_MASK = np.zeros(1, dtype=np.bool_)


def _merge(sims, xnorm, qnorm, code, labels, mask, out_d, out_i) -> None:
    _merge_kernel(sims, xnorm, qnorm, code, labels, _EMPTY_MASK if mask is None else mask,
                  mask is not None, out_d, out_i)


def knn(q, x, xnorm, labels, rowmask, k, metric):
    """Exact k-NN; see :func:`shoal.index.kernels.topk.blocked_knn`."""
    return blocked_knn(_merge, q, x, xnorm, labels, rowmask, k, metric, finish=heap_sort_rows)


#: Up to this many queries, ``knn_rows`` reads the rows in place; larger batches gather them for BLAS.
ROWS_IN_PLACE_BELOW = 8


#: ``knn_rows`` asks the cache for the row this many bytes of rows ahead of the one it scores: a
#: filter's rows are scattered, so the hardware prefetcher cannot guess them, and without the hint
#: each row waits for memory (1 % and 10 % of 400k 50-d rows, cold cache: 1.8x and 3.3x faster).
PREFETCH_AHEAD_BYTES = 12_288


@nb.njit(cache=True, fastmath=True, nogil=True)
def _knn_rows_kernel(q, x, xnorm, rows, code, k, ahead):
    """Serial (a few queries: no pool to wake); allocates, scores and sorts in one call."""
    nq, n = q.shape[0], rows.shape[0]
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    for r in range(nq):
        dr = out_d[r]
        ir = out_i[r]
        qnorm = np.float32(0.0)
        if code == 0:
            for c in range(q.shape[1]):
                qnorm += q[r, c] * q[r, c]
        for t in range(n):
            if t + ahead < n:
                for c in range(0, x.shape[1], LINE_BYTES // x.itemsize):  # one hint per cache line
                    prefetch(x, rows[t + ahead], c)
            j = rows[t]
            s = np.float32(0.0)
            for c in range(x.shape[1]):
                s += q[r, c] * x[j, c]
            if code == 0:
                d = qnorm + xnorm[j] - np.float32(2.0) * s
                if d < 0.0:
                    d = np.float32(0.0)
            elif code == 1:
                d = np.float32(1.0) - s
            else:
                d = -s
            if d <= dr[0]:
                heap_push(dr, ir, np.float32(d), j)
        heap_sort(dr, ir)
    return out_d, out_i


def knn_rows(q, x, xnorm, rows, k, metric):
    """Exact k-NN among the rows ``rows`` of ``x`` (ids are row numbers).

    A few queries read the rows where they are: gathering them first (for a BLAS product)
    copies as many bytes as the scan reads, so for one query it doubles the work."""
    if q.shape[0] >= ROWS_IN_PLACE_BELOW:
        return gathered_knn(knn, q, x, xnorm, rows, k, metric)
    ahead = max(4, PREFETCH_AHEAD_BYTES // max(1, x.shape[1] * x.dtype.itemsize))
    return _knn_rows_kernel(q, np.asarray(x), np.asarray(xnorm), rows, METRIC_CODES[metric], k, ahead)


def range_search(q, x, xnorm, labels, rowmask, radius, metric):
    return range_blocks(q, x, xnorm, labels, rowmask, radius, metric)
