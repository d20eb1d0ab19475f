"""Numba inverted-list search for IVF (and flat PQ, which is IVF-PQ with one zero centroid).

One parallel region per search: each thread takes a query, ranks the coarse centroids,
builds what the codec needs (residual query, lookup table) and walks the ``nprobe``
nearest lists, keeping the ``kk`` best ``(distance, row)`` pairs among rows where
``rowmask`` holds (live and allowed). Fusing the stages matters on small shared machines,
where every extra parallel region costs milliseconds of thread wake-up.
Metric codes follow :data:`shoal.index.kernels.topk.METRIC_CODES` (0 l2, 1 cosine, 2 ip).
"""
from __future__ import annotations

import numba as nb
import numpy as np

from .heap_numba import heap_push, heap_sort
from .rescore_numba import exact_dist


@nb.njit(cache=True, fastmath=True, inline="always")
def _probe_one(q, i, ct, cnorm, code, coarse, probes):
    """Coarse distances of query i to every centroid (metric convention) and its nearest lists."""
    dim = q.shape[1]
    nlist = ct.shape[1]
    nprobe = probes.shape[0]
    dots = np.zeros(nlist, np.float32)
    qn = np.float32(0.0)
    for j in range(dim):
        v = q[i, j]
        qn += v * v
        for c in range(nlist):
            dots[c] += v * ct[j, c]
    best = np.full(nprobe, np.inf, np.float32)
    probes[:] = -1
    for c in range(nlist):
        l2 = qn + cnorm[c] - np.float32(2.0) * dots[c]
        if l2 < 0.0:
            l2 = np.float32(0.0)
        if code == 0:
            coarse[c] = l2
        elif code == 1:
            coarse[c] = np.float32(1.0) - dots[c]
        else:
            coarse[c] = -dots[c]
        order = coarse[c] if code == 2 else l2  # lists hold nearest-by-l2 vectors; ip probes by ip
        if order <= best[0]:
            heap_push(best, probes, order, c)
    heap_sort(best, probes)


@nb.njit(cache=True, parallel=True, fastmath=True)
def _probe(q, ct, cnorm, code, out_p, out_c):
    for i in nb.prange(q.shape[0]):
        _probe_one(q, i, ct, cnorm, code, out_c[i], out_p[i])


@nb.njit(cache=True, fastmath=True, inline="always")
def _start_query(q, qi, ct, cnorm, code, nprobe, out_d, out_r):
    """Per-query start of a list scan: ``(coarse distances, probed lists, out_d[qi], out_r[qi])``.

    The scan keeps ``out_d[qi]`` / ``out_r[qi]`` as a heap (:mod:`.heap_numba`) and sorts it when done.
    """
    coarse = np.empty(ct.shape[1], np.float32)
    probes = np.empty(nprobe, np.int64)
    _probe_one(q, qi, ct, cnorm, code, coarse, probes)
    return coarse, probes, out_d[qi], out_r[qi]


def _coarse_args(centroids):
    return np.ascontiguousarray(centroids.T), np.einsum("ij,ij->i", centroids, centroids, dtype=np.float32)


def _out(nq, kk):
    return np.full((nq, kk), np.inf, np.float32), np.full((nq, kk), -1, np.int64)


def probe(q, centroids, code, nprobe):
    """``(probes (nq, nprobe), coarse distances (nq, nlist))`` in the metric's convention."""
    out_p = np.empty((q.shape[0], nprobe), np.int64)
    out_c = np.empty((q.shape[0], centroids.shape[0]), np.float32)
    _probe(q, *_coarse_args(centroids), code, out_p, out_c)
    return out_p, out_c


@nb.njit(cache=True, parallel=True, fastmath=True)
def _scan_flat(q, ct, cnorm, code, nprobe, starts, sizes, entry_rows, vecs, rowmask, out_d, out_r):
    nq = q.shape[0]
    for qi in nb.prange(nq):
        coarse, probes, dr, rr = _start_query(q, qi, ct, cnorm, code, nprobe, out_d, out_r)
        for p in range(nprobe):
            lst = probes[p]
            for e in range(starts[lst], starts[lst] + sizes[lst]):
                r = entry_rows[e]
                if r < 0 or not rowmask[r]:
                    continue
                acc = exact_dist(q, qi, vecs, e, code)
                if acc <= dr[0]:
                    heap_push(dr, rr, acc, r)
        heap_sort(dr, rr)


def scan_flat(q, centroids, code, nprobe, starts, sizes, entry_rows, vecs, rowmask, kk):
    """Exact distances to raw vectors in the probed lists (IVF-Flat): ``(distances, rows)``."""
    out_d, out_r = _out(q.shape[0], kk)
    _scan_flat(q, *_coarse_args(centroids), code, nprobe, starts, sizes, entry_rows, vecs, rowmask, out_d, out_r)
    return out_d, out_r


@nb.njit(cache=True, parallel=True, fastmath=True)
def _scan_sq8(q, centroids, ct, cnorm, code, nprobe, starts, sizes, entry_rows, codes, vmin, scale, rowmask,
              out_d, out_r):
    nq, dim = q.shape
    for qi in nb.prange(nq):
        coarse, probes, dr, rr = _start_query(q, qi, ct, cnorm, code, nprobe, out_d, out_r)
        a = np.empty(dim, np.float32)
        base = np.float32(0.0)
        for p in range(nprobe):
            lst = probes[p]
            if code == 0:  # |(q - c) - (vmin + code*scale)|²
                for j in range(dim):
                    a[j] = q[qi, j] - centroids[lst, j] - vmin[j]
            else:  # coarse - q·vmin - Σ q_j scale_j code_j
                base = coarse[lst]
                for j in range(dim):
                    base -= q[qi, j] * vmin[j]
                    a[j] = q[qi, j] * scale[j]
            for e in range(starts[lst], starts[lst] + sizes[lst]):
                r = entry_rows[e]
                if r < 0 or not rowmask[r]:
                    continue
                acc = np.float32(0.0)
                if code == 0:
                    for j in range(dim):
                        t = a[j] - np.float32(codes[e, j]) * scale[j]
                        acc += t * t
                else:
                    for j in range(dim):
                        acc += a[j] * np.float32(codes[e, j])
                    acc = base - acc
                if acc <= dr[0]:
                    heap_push(dr, rr, acc, r)
        heap_sort(dr, rr)


def scan_sq8(q, centroids, code, nprobe, starts, sizes, entry_rows, codes, vmin, scale, rowmask, kk):
    """Distances to SQ8-coded residuals ``x - centroid`` in the probed lists (IVF-SQ8)."""
    out_d, out_r = _out(q.shape[0], kk)
    _scan_sq8(q, centroids, *_coarse_args(centroids), code, nprobe, starts, sizes, entry_rows, codes, vmin, scale,
              rowmask, out_d, out_r)
    return out_d, out_r


@nb.njit(cache=True, parallel=True, fastmath=True)
def _scan_pq(q, ct, cnorm, code, nprobe, starts, sizes, entry_rows, codes, pq_ct, ltab, use_ltab, rowmask,
             out_d, out_r):
    nq = q.shape[0]
    m, dsub, ksub = pq_ct.shape
    # l2 uses |q-c|² + (|r|² + 2c·r) - 2q·r: the table holds -2 q·r; ip/cosine: coarse - q·r
    factor = np.float32(2.0) if use_ltab else np.float32(1.0)
    for qi in nb.prange(nq):
        coarse, probes, dr, rr = _start_query(q, qi, ct, cnorm, code, nprobe, out_d, out_r)
        qlut = np.zeros((m, ksub), np.float32)
        for s in range(m):
            for j in range(dsub):
                w = -factor * q[qi, s * dsub + j]
                for c in range(ksub):
                    qlut[s, c] += w * pq_ct[s, j, c]
        lut = np.empty((m, ksub), np.float32)
        tab = lut if use_ltab else qlut
        for p in range(nprobe):
            lst = probes[p]
            if use_ltab:
                for s in range(m):
                    for c in range(ksub):
                        lut[s, c] = qlut[s, c] + ltab[lst, s, c]
            base = coarse[lst]
            start = starts[lst]
            end = start + sizes[lst]
            e = start
            while e < end:  # four codes at a time: independent sums keep the gathers in flight
                cnt = min(4, end - e)
                a0 = base
                a1 = base
                a2 = base
                a3 = base
                if cnt == 4:
                    for s in range(m):
                        a0 += tab[s, codes[e, s]]
                        a1 += tab[s, codes[e + 1, s]]
                        a2 += tab[s, codes[e + 2, s]]
                        a3 += tab[s, codes[e + 3, s]]
                for t in range(cnt):
                    r = entry_rows[e + t]
                    if r < 0 or not rowmask[r]:
                        continue
                    if cnt == 4:
                        acc = a0 if t == 0 else (a1 if t == 1 else (a2 if t == 2 else a3))
                    else:
                        acc = base
                        for s in range(m):
                            acc += tab[s, codes[e + t, s]]
                    if acc <= dr[0]:
                        heap_push(dr, rr, acc, r)
                e += 4
        heap_sort(dr, rr)


def scan_pq(q, centroids, code, nprobe, starts, sizes, entry_rows, codes, pq_cents, ltab, use_ltab, rowmask, kk):
    """ADC over the probed lists: coarse distance plus the PQ-coded residual's table sum.

    ``pq_cents``: ``(m, ksub, dsub)``; ``ltab[list]``: ``|r|² + 2 c·r`` per sub-centroid (l2 only).
    """
    out_d, out_r = _out(q.shape[0], kk)
    _scan_pq(q, *_coarse_args(centroids), code, nprobe, starts, sizes, entry_rows, codes,
             np.ascontiguousarray(pq_cents.transpose(0, 2, 1)), ltab, use_ltab, rowmask, out_d, out_r)
    return out_d, out_r
