"""CuPy flat kernels: cuBLAS GEMM distances, per-row selection on the device, resident data.

The data (vectors, norms, labels) stays on the device between calls (see
:mod:`shoal.engine.device`); only the query batch and the row mask travel per call. A
data chunk is multiplied with a query block (one GEMM), turned into distances in place,
and each row's k best are selected with ``cupy.partition`` (a k-th value threshold; its
``argpartition`` is a full sort) and merged into the running top-k by a small stable
sort on (distance, id). Chunk sizes follow the memory budget; data too large to be
resident is streamed chunk by chunk instead. Same contracts as ``flat_numba``.
"""
from __future__ import annotations

from contextlib import contextmanager

import cupy as cp
import numpy as np

from ...engine.device import DeviceMemory, device_memory
from ...engine.errors import ResourceExhaustedError
from .topk import METRIC_CODES, gathered_knn, pad_to

QUERY_BLOCK = 4096
#: Widest data chunk per GEMM (bounds one distance block to QUERY_BLOCK × DATA_CHUNK floats, 2 GiB).
DATA_CHUNK = 1 << 17
#: Device bytes per (query, data row) pair: distances, the partition copy, the selection mask.
PAIR_BYTES = 16
#: Rows tied at the k-th distance kept per block beyond k (more ties are resolved arbitrarily).
TIE_SLACK = 32


def select_topk(d: cp.ndarray, labels: cp.ndarray, k: int) -> tuple[cp.ndarray, cp.ndarray]:
    """Per row, the (at most) k smallest finite ``d`` and their ``labels`` (1-D per column or 2-D),
    sorted by (distance, label); padded with inf / -1. ``d`` may be overwritten."""
    rows, width = d.shape
    lab2 = labels if labels.ndim == 2 else cp.broadcast_to(labels[None, :], d.shape)
    if width > k + TIE_SLACK:
        thr = cp.partition(d, k - 1, axis=1)[:, k - 1:k]
        sel = (d <= thr) & cp.isfinite(d)
        counts = sel.sum(axis=1)
        keep_w = min(int(counts.max()), k + TIE_SLACK)
        r, c = cp.nonzero(sel)
        pos = cp.arange(r.size) - (cp.cumsum(counts) - counts)[r]
        ok = pos < keep_w
        r, c, pos = r[ok], c[ok], pos[ok]
        cand_d = cp.full((rows, keep_w), cp.inf, cp.float32)
        cand_i = cp.full((rows, keep_w), -1, cp.int64)
        cand_d[r, pos] = d[r, c]
        cand_i[r, pos] = lab2[r, c]
    else:
        cand_d = d.astype(cp.float32, copy=False)
        cand_i = cp.where(cp.isfinite(d), lab2, -1).astype(cp.int64)
    return sort_pairs(cand_d, cand_i, k)


def sort_pairs(d: cp.ndarray, ids: cp.ndarray, k: int) -> tuple[cp.ndarray, cp.ndarray]:
    """First k of each row by (distance, id): stable sort by id, then stable sort by distance."""
    by_id = cp.argsort(cp.where(ids < 0, cp.iinfo(cp.int64).max, ids), axis=1)
    d = cp.take_along_axis(d, by_id, 1)
    ids = cp.take_along_axis(ids, by_id, 1)
    order = cp.argsort(d, axis=1)[:, :k]
    d = cp.take_along_axis(d, order, 1)
    ids = cp.take_along_axis(ids, order, 1)
    if d.shape[1] < k:
        pad = k - d.shape[1]
        d = cp.concatenate([d, cp.full((d.shape[0], pad), cp.inf, cp.float32)], axis=1)
        ids = cp.concatenate([ids, cp.full((d.shape[0], pad), -1, cp.int64)], axis=1)
    return d, ids


def distances_inplace(sims: cp.ndarray, qn: cp.ndarray, xn: cp.ndarray, code: int) -> cp.ndarray:
    """Dot products -> Shoal distances (l2 = |q|²+|x|²-2q·x clipped at 0, cosine 1-s, ip -s), in place."""
    if code == 0:
        sims *= -2.0
        sims += qn[:, None]
        sims += xn[None, :]
        cp.maximum(sims, 0.0, out=sims)
    elif code == 1:
        cp.subtract(1.0, sims, out=sims)
    else:
        cp.negative(sims, out=sims)
    return sims


def plan_blocks(mem: DeviceMemory, nq: int, n: int, per_row_bytes: int) -> tuple[int, int]:
    """(query block, data chunk) sizes whose scratch fits the budget; shrinks the query block first."""
    qb = max(1, min(nq, QUERY_BLOCK))
    while True:
        try:
            w = mem.scratch_items(qb * PAIR_BYTES + per_row_bytes, min_items=min(n, 256),
                                  max_items=max(1, min(n, DATA_CHUNK)))
            return qb, w
        except ResourceExhaustedError:
            if qb == 1:
                raise
            qb = max(1, qb // 2)


def resident_data(mem: DeviceMemory, x) -> cp.ndarray | None:
    """Resident copy of the data rows, or None to stream them (too large, or decoded on access)."""
    return mem.resident(x, reserve=mem.budget // 8) if isinstance(x, np.ndarray) else None


def _chunks(x, xd: cp.ndarray | None, xn: cp.ndarray, n: int, w: int):
    """``(start, device rows, device norms)`` per data chunk: slices of the resident copy, or uploads."""
    for s in range(0, n, w):
        e = min(n, s + w)
        if xd is not None:
            yield s, xd[s:e], xn[s:e]
        else:
            yield s, cp.asarray(np.ascontiguousarray(np.asarray(x[s:e]), dtype=np.float32)), xn[s:e]


@contextmanager
def _on_device(q, x, xnorm, labels, rowmask):
    """Shared set-up of ``knn`` / ``range_search``, under the device memory guard: yields resident data
    (or None), device norms and labels, ``(query block, data chunk)`` sizes, device row mask (or None),
    device queries and their squared norms, as ``(xd, xn, lab, qb, w, mask, qd, qn)``."""
    mem = device_memory()
    with mem.guard():
        xd = resident_data(mem, x)
        xn = mem.on_device(xnorm)
        lab = mem.on_device(labels)
        qb, w = plan_blocks(mem, q.shape[0], x.shape[0], 0 if xd is not None else 4 * x.shape[1])
        mask = None if rowmask is None else mem.upload(rowmask)
        qd = mem.upload(np.ascontiguousarray(q, dtype=np.float32))
        qn = (qd * qd).sum(axis=1)
        yield xd, xn, lab, qb, w, mask, qd, qn


def knn(q, x, xnorm, labels, rowmask, k, metric):
    """Exact k-NN of ``q`` among rows of ``x`` where ``rowmask`` holds: host ``(distances, labels)``."""
    nq, n = q.shape[0], x.shape[0]
    if 0 < n < k:  # at most n results exist: a huge k costs what n costs
        return pad_to(*knn(q, x, xnorm, labels, rowmask, n, metric), k)
    code = METRIC_CODES[metric]
    with _on_device(q, x, xnorm, labels, rowmask) as (xd, xn, lab, qb, w, mask, qd, qn):
        out_d = cp.full((nq, k), cp.inf, cp.float32)
        out_i = cp.full((nq, k), -1, cp.int64)
        for s, xc, xnc in _chunks(x, xd, xn, n, w):
            e = s + xc.shape[0]
            if rowmask is not None and not rowmask[s:e].any():
                continue
            penalty = None if mask is None else cp.where(mask[s:e], 0.0, cp.inf).astype(cp.float32)
            for a in range(0, nq, qb):
                b = min(nq, a + qb)
                d = distances_inplace(qd[a:b] @ xc.T, qn[a:b], xnc, code)
                if penalty is not None:
                    d += penalty[None, :]
                cd, ci = select_topk(d, lab[s:e], k)
                out_d[a:b], out_i[a:b] = sort_pairs(cp.concatenate([out_d[a:b], cd], 1),
                                                    cp.concatenate([out_i[a:b], ci], 1), k)
        return cp.asnumpy(out_d), cp.asnumpy(out_i)


def knn_rows(q, x, xnorm, rows, k, metric):
    """Exact k-NN among the rows ``rows`` of ``x`` (ids are row numbers)."""
    return gathered_knn(knn, q, x, xnorm, rows, k, metric)


def range_search(q, x, xnorm, labels, rowmask, radius, metric):
    """All rows with distance < radius per query: ``(lims, distances, ids)``, sorted by (distance, id)."""
    nq, n = q.shape[0], x.shape[0]
    code = METRIC_CODES[metric]
    with _on_device(q, x, xnorm, labels, rowmask) as (xd, xn, lab, qb, w, mask, qd, qn):
        parts_q, parts_d, parts_i = [np.zeros(0, np.int64)], [np.zeros(0, np.float32)], [np.zeros(0, np.int64)]
        for s, xc, xnc in _chunks(x, xd, xn, n, w):
            e = s + xc.shape[0]
            for a in range(0, nq, qb):
                b = min(nq, a + qb)
                d = distances_inplace(qd[a:b] @ xc.T, qn[a:b], xnc, code)
                hit = d < radius
                if mask is not None:
                    hit &= mask[s:e][None, :]
                r, c = cp.nonzero(hit)
                parts_q.append(cp.asnumpy(r + a))
                parts_d.append(cp.asnumpy(d[r, c]))
                parts_i.append(cp.asnumpy(lab[s:e][c]))
    qi, dist, ids = (np.concatenate(p) for p in (parts_q, parts_d, parts_i))
    order = np.lexsort((ids, dist, qi))
    lims = np.zeros(nq + 1, np.int64)
    np.cumsum(np.bincount(qi, minlength=nq), out=lims[1:])
    return lims, dist[order].astype(np.float32), ids[order]
