"""Numba flat kernels: BLAS computes dot products, a parallel kernel keeps the top-k."""
from __future__ import annotations

import numba as nb
import numpy as np

from .topk import blocked_knn, range_blocks


@nb.njit(cache=True, inline="always")
def _before(d1, i1, d2, i2):
    """Strict order on (distance, id): ties go to the lower id."""
    return d1 < d2 or (d1 == d2 and i1 < i2)


@nb.njit(cache=True, inline="always")
def insert_sorted(dist, ids, d, i):
    """Insert (d, i) into ascending arrays of fixed length if it beats the worst entry."""
    k = dist.shape[0]
    if not _before(d, i, dist[k - 1], ids[k - 1] if ids[k - 1] >= 0 else 1 << 62):
        return
    pos = k - 1
    while pos > 0 and _before(d, i, dist[pos - 1], ids[pos - 1] if ids[pos - 1] >= 0 else 1 << 62):
        dist[pos] = dist[pos - 1]
        ids[pos] = ids[pos - 1]
        pos -= 1
    dist[pos] = d
    ids[pos] = i


@nb.njit(cache=True, parallel=True)
def _merge_kernel(sims, xnorm, qnorm, code, labels, mask, use_mask, out_d, out_i):
    nq, nb_rows = sims.shape
    for r in nb.prange(nq):
        dr = out_d[r]
        ir = out_i[r]
        k = dr.shape[0]
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
            if d <= dr[k - 1]:
                insert_sorted(dr, ir, np.float32(d), labels[j])


_EMPTY_MASK = np.zeros(1, dtype=np.bool_)


def _merge(sims, xnorm, qnorm, code, labels, mask, out_d, out_i) -> None:
    _merge_kernel(sims, xnorm, qnorm, code, labels, _EMPTY_MASK if mask is None else mask,
                  mask is not None, out_d, out_i)


def knn(q, x, xnorm, labels, rowmask, k, metric):
    """Exact k-NN; see :func:`shoal.index.kernels.topk.blocked_knn`."""
    return blocked_knn(_merge, q, x, xnorm, labels, rowmask, k, metric)


def range_search(q, x, xnorm, labels, rowmask, radius, metric):
    return range_blocks(q, x, xnorm, labels, rowmask, radius, metric)
