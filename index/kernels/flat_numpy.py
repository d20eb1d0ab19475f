"""Reference flat kernels in plain numpy (argpartition per block)."""
from __future__ import annotations

import numpy as np

from .topk import blocked_knn, distances_from_sims, gathered_knn, range_blocks


def _merge(sims, xnorm, qnorm, code, labels, mask, out_d, out_i) -> None:
    d = distances_from_sims(sims, qnorm, xnorm, code).astype(np.float32)
    if mask is not None:
        d[:, ~mask] = np.inf
    k = out_d.shape[1]
    all_d = np.concatenate([out_d, d], axis=1)
    all_i = np.concatenate([out_i, np.broadcast_to(labels, d.shape)], axis=1)
    all_i = np.where(np.isinf(all_d), np.iinfo(np.int64).max, all_i)
    for r in range(all_d.shape[0]):
        order = np.lexsort((all_i[r], all_d[r]))[:k]
        out_d[r] = all_d[r, order]
        out_i[r] = np.where(np.isinf(out_d[r]), -1, all_i[r, order])


def knn(q, x, xnorm, labels, rowmask, k, metric):
    """Exact k-NN; see :func:`shoal.index.kernels.topk.blocked_knn`."""
    return blocked_knn(_merge, q, x, xnorm, labels, rowmask, k, metric)


def knn_rows(q, x, xnorm, rows, k, metric):
    """Exact k-NN among the rows ``rows`` of ``x`` (ids are row numbers)."""
    return gathered_knn(knn, q, x, xnorm, rows, k, metric)


def range_search(q, x, xnorm, labels, rowmask, radius, metric):
    return range_blocks(q, x, xnorm, labels, rowmask, radius, metric)
