"""Blocked exact k-NN shared by the CPU flat kernels.

Distances come from one BLAS GEMM per (query block × data block), so memory
stays bounded (``QUERY_BLOCK × DATA_BLOCK`` floats) however large nq × n is;
a backend-specific ``merge`` folds each block into the running top-k, and an
optional ``finish`` puts it in order at the end (a heap-based merge needs one).
At most n results exist, so the running top-k holds ``min(k, n)`` and the rest
is padding: a huge k costs what n costs.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...engine.threads import single_threaded_blas

QUERY_BLOCK = 1024
DATA_BLOCK = 16384
METRIC_CODES = {"l2": 0, "cosine": 1, "ip": 2}

FinishFn = Callable[[np.ndarray, np.ndarray], None]
MergeFn = Callable[[np.ndarray, np.ndarray, float | np.ndarray, int, np.ndarray, np.ndarray | None,
                    np.ndarray, np.ndarray], None]


def sq_norms(x: np.ndarray) -> np.ndarray:
    """Row squared norms in float32 (used by the l2 expansion |q|²+|x|²-2q·x)."""
    return np.einsum("ij,ij->i", x, x, dtype=np.float32)


def blocked_knn(merge: MergeFn, q: np.ndarray, x: np.ndarray, xnorm: np.ndarray, labels: np.ndarray,
                rowmask: np.ndarray | None, k: int, metric: str,
                finish: FinishFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of ``q`` against rows of ``x`` whose ``rowmask`` is true; ids are ``labels``."""
    nq = q.shape[0]
    n = x.shape[0]
    if 0 < n < k:
        return pad_to(*blocked_knn(merge, q, x, xnorm, labels, rowmask, n, metric, finish), k)
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    code = METRIC_CODES[metric]
    qnorm = sq_norms(q)
    with single_threaded_blas():
        for qs in range(0, nq, QUERY_BLOCK):
            qe = min(nq, qs + QUERY_BLOCK)
            for s in range(0, n, DATA_BLOCK):
                e = min(n, s + DATA_BLOCK)
                m = None if rowmask is None else rowmask[s:e]
                if m is not None and not m.any():
                    continue
                sims = q[qs:qe] @ np.asarray(x[s:e]).T
                merge(sims, xnorm[s:e], qnorm[qs:qe], code, labels[s:e], m, out_d[qs:qe], out_i[qs:qe])
    if finish is not None:
        finish(out_d, out_i)
    return out_d, out_i


def gathered_knn(knn: Callable[..., tuple[np.ndarray, np.ndarray]], q: np.ndarray, x: np.ndarray,
                 xnorm: np.ndarray, rows: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over the rows ``rows`` of ``x`` (ids are the row numbers), by gathering them for ``knn``."""
    return knn(q, np.ascontiguousarray(x[rows]), xnorm[rows], rows, None, k, metric)


def pad_to(d: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(nq, k)`` results from fewer columns: distances inf, ids -1 after them."""
    nq, have = d.shape
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_d[:, :have] = d
    out_i[:, :have] = ids
    return out_d, out_i


def range_blocks(q: np.ndarray, x: np.ndarray, xnorm: np.ndarray, labels: np.ndarray,
                 rowmask: np.ndarray | None, radius: float, metric: str
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All rows with distance < radius per query: ``(lims, distances, ids)``, sorted by (distance, id)."""
    code = METRIC_CODES[metric]
    qnorm = sq_norms(q)
    per_q_d: list[list[np.ndarray]] = [[] for _ in range(q.shape[0])]
    per_q_i: list[list[np.ndarray]] = [[] for _ in range(q.shape[0])]
    for s in range(0, x.shape[0], DATA_BLOCK):
        e = min(x.shape[0], s + DATA_BLOCK)
        with single_threaded_blas():
            sims = q @ np.asarray(x[s:e]).T
        d = distances_from_sims(sims, qnorm, xnorm[s:e], code)
        hit = d < radius
        if rowmask is not None:
            hit &= rowmask[s:e][None, :]
        qi, cj = np.nonzero(hit)
        for i in np.unique(qi):
            sel = cj[qi == i]
            per_q_d[i].append(d[i, sel])
            per_q_i[i].append(labels[s:e][sel])
    lims = np.zeros(q.shape[0] + 1, dtype=np.int64)
    dists, ids = [], []
    for i in range(q.shape[0]):
        di = np.concatenate(per_q_d[i]) if per_q_d[i] else np.zeros(0, np.float32)
        ii = np.concatenate(per_q_i[i]) if per_q_i[i] else np.zeros(0, np.int64)
        order = np.lexsort((ii, di))
        dists.append(di[order].astype(np.float32))
        ids.append(ii[order])
        lims[i + 1] = lims[i] + di.size
    return lims, np.concatenate(dists), np.concatenate(ids)


def distances_from_sims(sims: np.ndarray, qnorm: np.ndarray, xnorm: np.ndarray, code: int) -> np.ndarray:
    """Turn a block of dot products into Shoal distances (vectorised numpy)."""
    if code == 0:
        return np.maximum(qnorm[:, None] + xnorm[None, :] - 2.0 * sims, 0.0)
    if code == 1:
        return 1.0 - sims
    return -sims
