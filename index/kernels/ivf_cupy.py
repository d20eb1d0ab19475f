"""CuPy inverted-list search for IVF-Flat / IVF-SQ8 / IVF-PQ (same contracts as ``ivf_numba``).

Per query block, all on the device: one GEMM ranks the coarse centroids, the probed lists
are flattened into one candidate array (position -> (query, list, entry) by a
``searchsorted`` over the lists' running lengths), candidate distances are computed in
chunks sized by the memory budget (raw vectors for Flat; SQ8 codes decoded on the fly;
PQ by gathering from per-query lookup tables built with one batched GEMM, plus the
per-list residual tables for l2), and each query's best ``kk`` come from the same
selection as the flat kernels. Lists, codes, centroids and tables are resident on the
device (:mod:`shoal.engine.device`); list arrays change in place when vectors are added,
so their copies are keyed by the list sizes and refreshed when those change.
"""
from __future__ import annotations

from collections.abc import Callable

import cupy as cp
import numpy as np

from ...engine.device import DeviceMemory, device_memory
from .flat_cupy import plan_blocks, select_topk

#: Device bytes per flattened candidate besides the distance payload: indices, distance, padding.
CANDIDATE_BYTES = 96
#: Most candidates scored at once (bounds the temporaries of one chunk).
MAX_CHUNK = 1 << 22


def _coarse(qd: cp.ndarray, cents: cp.ndarray, code: int) -> tuple[cp.ndarray, cp.ndarray]:
    """``(coarse distances in the metric's convention, probe order key)`` of queries × centroids."""
    sims = qd @ cents.T
    qn = (qd * qd).sum(axis=1)
    cn = (cents * cents).sum(axis=1)
    l2 = cp.maximum(qn[:, None] + cn[None, :] - 2.0 * sims, 0.0).astype(cp.float32)
    if code == 0:
        return l2, l2
    coarse = (1.0 - sims if code == 1 else -sims).astype(cp.float32)
    return coarse, (coarse if code == 2 else l2)  # lists hold nearest-by-l2 vectors; ip probes by ip


def _probes(order: cp.ndarray, nprobe: int) -> cp.ndarray:
    lists = cp.arange(order.shape[1], dtype=cp.int64)
    return select_topk(order.copy(), lists, nprobe)[1]


def probe(q, centroids, code, nprobe):
    """``(probes (nq, nprobe), coarse distances (nq, nlist))`` in the metric's convention."""
    mem = device_memory()
    with mem.guard():
        cents = mem.on_device(centroids)
        coarse, order = _coarse(mem.upload(np.ascontiguousarray(q, np.float32)), cents, code)
        return cp.asnumpy(_probes(order, nprobe)), cp.asnumpy(coarse)


def _scan(q, centroids, code, nprobe, starts, sizes, entry_rows, rowmask, kk,
          payload_bytes: int, setup: Callable[[DeviceMemory, bytes], Callable[..., cp.ndarray]]
          ) -> tuple[np.ndarray, np.ndarray]:
    """Shared driver: probe, flatten the probed lists per query block, score in chunks, keep kk best.

    ``setup(mem, version)`` puts the codec's arrays on the device and returns
    ``dist(qd, qi, lst, entries, coarse_vals)``, which scores one chunk of candidates.
    """
    mem = device_memory()
    nq = q.shape[0]
    version = sizes.tobytes()  # lists are appended to in place: refresh when any size changes
    with mem.guard():
        dist = setup(mem, version)
        cents = mem.on_device(centroids)
        starts_d = mem.on_device(starts, version=version)
        sizes_d = mem.on_device(sizes, version=version)
        rows_d = mem.on_device(entry_rows, version=version)
        mask = mem.upload(rowmask)
        bound = max(1, int(np.sort(sizes)[-nprobe:].sum()))  # most candidates one query can have
        qb, _ = plan_blocks(mem, nq, 1, bound * CANDIDATE_BYTES)
        out_d = np.full((nq, kk), np.inf, np.float32)
        out_r = np.full((nq, kk), -1, np.int64)
        for a in range(0, nq, qb):
            b = min(nq, a + qb)
            qd = mem.upload(np.ascontiguousarray(q[a:b], np.float32))
            coarse, order = _coarse(qd, cents, code)
            probes = _probes(order, nprobe).ravel()
            seg_len = sizes_d[probes]
            seg_end = cp.cumsum(seg_len)
            total = int(seg_end[-1])
            if total == 0:
                continue
            per_q = seg_len.reshape(b - a, nprobe).sum(axis=1)
            q_start = cp.cumsum(per_q) - per_q
            width = int(per_q.max())
            pad_d = cp.full((b - a, width), cp.inf, cp.float32)
            pad_r = cp.full((b - a, width), -1, cp.int64)
            chunk = mem.scratch_items(payload_bytes + CANDIDATE_BYTES, min_items=1, max_items=min(total, MAX_CHUNK))
            for s in range(0, total, chunk):
                pos = cp.arange(s, min(total, s + chunk), dtype=cp.int64)
                seg = cp.searchsorted(seg_end, pos, side="right")
                lst = probes[seg]
                entries = starts_d[lst] + pos - (seg_end[seg] - seg_len[seg])
                qi = seg // nprobe
                rows = rows_d[entries]
                ok = rows >= 0
                ok &= mask[cp.where(ok, rows, 0)]
                d = dist(qd, qi, lst, entries, coarse[qi, lst]).astype(cp.float32)
                col = pos - q_start[qi]
                pad_d[qi, col] = cp.where(ok, d, cp.inf)
                pad_r[qi, col] = cp.where(ok, rows, -1)
            best_d, best_r = select_topk(pad_d, pad_r, kk)
            out_d[a:b], out_r[a:b] = cp.asnumpy(best_d), cp.asnumpy(best_r)
        return out_d, out_r


def _from_dots(dots: cp.ndarray, code: int) -> cp.ndarray:
    return 1.0 - dots if code == 1 else -dots


def scan_flat(q, centroids, code, nprobe, starts, sizes, entry_rows, vecs, rowmask, kk):
    """Exact distances to raw vectors in the probed lists (IVF-Flat): ``(distances, rows)``."""
    def setup(mem, version):
        vd = mem.on_device(vecs, version=version)

        def dist(qd, qi, lst, entries, coarse):
            x, qq = vd[entries], qd[qi]
            return ((x - qq) ** 2).sum(axis=1) if code == 0 else _from_dots((x * qq).sum(axis=1), code)
        return dist
    return _scan(q, centroids, code, nprobe, starts, sizes, entry_rows, rowmask, kk, 12 * vecs.shape[1], setup)


def scan_sq8(q, centroids, code, nprobe, starts, sizes, entry_rows, codes, vmin, scale, rowmask, kk):
    """Distances to SQ8-coded residuals ``x - centroid`` in the probed lists (IVF-SQ8)."""
    def setup(mem, version):
        cd = mem.on_device(codes, version=version)
        cents, lo, step = mem.on_device(centroids), mem.upload(vmin), mem.upload(scale)

        def dist(qd, qi, lst, entries, coarse):
            r = cd[entries].astype(cp.float32) * step + lo
            if code == 0:
                return ((qd[qi] - cents[lst] - r) ** 2).sum(axis=1)
            return coarse - (r * qd[qi]).sum(axis=1)
        return dist
    return _scan(q, centroids, code, nprobe, starts, sizes, entry_rows, rowmask, kk, 16 * codes.shape[1], setup)


def scan_pq(q, centroids, code, nprobe, starts, sizes, entry_rows, codes, pq_cents, ltab, use_ltab, rowmask, kk):
    """ADC over the probed lists: coarse distance plus the PQ-coded residual's table sum.

    ``pq_cents``: ``(m, ksub, dsub)``; ``ltab[list]``: ``|r|² + 2 c·r`` per sub-centroid (l2 only).
    """
    m, ksub, dsub = pq_cents.shape
    factor = 2.0 if use_ltab else 1.0

    def setup(mem, version):
        cd = mem.on_device(codes, version=version)
        pc = mem.on_device(pq_cents)
        lt = mem.on_device(ltab).reshape(-1) if use_ltab else None
        block: list = [None, None]  # (query block, its tables): built once per block, reused by its chunks

        def dist(qd, qi, lst, entries, coarse):
            if block[0] is not qd:  # (nq_block, m, ksub) tables -factor q_s·c, one batched GEMM
                qs = qd.reshape(qd.shape[0], m, dsub).transpose(1, 0, 2)
                block[:] = qd, (-factor * cp.matmul(qs, pc.transpose(0, 2, 1))).transpose(1, 0, 2).reshape(-1)
            # table offsets in int32 when they fit: half the index traffic of int64
            itype = cp.int32 if max(qd.shape[0], ltab.shape[0]) * m * ksub < 2**31 else cp.int64
            c = cd[entries].astype(itype) + cp.arange(0, m * ksub, ksub, dtype=itype)[None, :]
            acc = block[1][qi.astype(itype)[:, None] * (m * ksub) + c].sum(axis=1)
            if lt is not None:
                acc += lt[lst.astype(itype)[:, None] * (m * ksub) + c].sum(axis=1)
            return coarse + acc
        return dist
    return _scan(q, centroids, code, nprobe, starts, sizes, entry_rows, rowmask, kk, 40 * m, setup)
