"""Numba flat kernels: BLAS computes dot products, a parallel kernel keeps the top-k.

Between blocks each query's running top-k is a heap (:mod:`.heap_numba`); it is sorted
once, after the last block.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from .heap_numba import heap_push, heap_sort_rows
from .topk import blocked_knn, range_blocks


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


def range_search(q, x, xnorm, labels, rowmask, radius, metric):
    return range_blocks(q, x, xnorm, labels, rowmask, radius, metric)
