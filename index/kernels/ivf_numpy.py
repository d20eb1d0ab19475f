"""Reference inverted-list search in plain numpy (same contracts as ``ivf_numba``)."""
from __future__ import annotations

import numpy as np


def probe(q, centroids, code, nprobe):
    """``(probes (nq, nprobe), coarse distances (nq, nlist))`` in the metric's convention."""
    sims = q @ centroids.T
    qn = np.einsum("ij,ij->i", q, q)[:, None]
    l2 = np.maximum(qn + np.einsum("ij,ij->i", centroids, centroids)[None, :] - 2.0 * sims, 0.0)
    coarse = (l2 if code == 0 else (1.0 - sims if code == 1 else -sims)).astype(np.float32)
    order = coarse if code == 2 else l2
    lists = np.broadcast_to(np.arange(centroids.shape[0]), order.shape)
    probes = np.lexsort((lists, order), axis=1)[:, :nprobe]
    return np.ascontiguousarray(probes, dtype=np.int64), coarse


def _scan(q, centroids, code, nprobe, starts, sizes, entry_rows, rowmask, kk, dist_fn):
    """Per query: probe, gather the allowed entries of each list, score them, keep the kk best."""
    probes, coarse = probe(q, centroids, code, nprobe)
    out_d = np.full((q.shape[0], kk), np.inf, np.float32)
    out_r = np.full((q.shape[0], kk), -1, np.int64)
    for qi in range(q.shape[0]):
        ds, rs = [np.zeros(0, np.float32)], [np.zeros(0, np.int64)]
        for lst in probes[qi]:
            ent = np.arange(starts[lst], starts[lst] + sizes[lst])
            rows = entry_rows[ent]
            ok = rows >= 0
            ok[ok] = rowmask[rows[ok]]
            ds.append(dist_fn(qi, lst, coarse[qi, lst], ent[ok]))
            rs.append(rows[ok])
        d, r = np.concatenate(ds).astype(np.float32), np.concatenate(rs)
        order = np.lexsort((r, d))[:kk]
        out_d[qi, : order.size] = d[order]
        out_r[qi, : order.size] = r[order]
    return out_d, out_r


def _from_dots(dots, code):
    return 1.0 - dots if code == 1 else -dots


def scan_flat(q, centroids, code, nprobe, starts, sizes, entry_rows, vecs, rowmask, kk):
    """Exact distances to raw vectors in the probed lists (IVF-Flat): ``(distances, rows)``."""
    def dist(qi, lst, coarse, ent):
        x = vecs[ent]
        return ((x - q[qi]) ** 2).sum(1) if code == 0 else _from_dots(x @ q[qi], code)
    return _scan(q, centroids, code, nprobe, starts, sizes, entry_rows, rowmask, kk, dist)


def scan_sq8(q, centroids, code, nprobe, starts, sizes, entry_rows, codes, vmin, scale, rowmask, kk):
    """Distances to SQ8-coded residuals ``x - centroid`` in the probed lists (IVF-SQ8)."""
    def dist(qi, lst, coarse, ent):
        r = codes[ent].astype(np.float32) * scale + vmin
        return ((q[qi] - centroids[lst] - r) ** 2).sum(1) if code == 0 else coarse - r @ q[qi]
    return _scan(q, centroids, code, nprobe, starts, sizes, entry_rows, rowmask, kk, dist)


def scan_pq(q, centroids, code, nprobe, starts, sizes, entry_rows, codes, pq_cents, ltab, use_ltab, rowmask, kk):
    """ADC over the probed lists (see ``ivf_numba.scan_pq``)."""
    m, _, dsub = pq_cents.shape
    qlut = -(2.0 if use_ltab else 1.0) * np.einsum("qsd,skd->qsk", q.reshape(q.shape[0], m, dsub), pq_cents)

    def dist(qi, lst, coarse, ent):
        lut = qlut[qi] + (ltab[lst] if use_ltab else 0.0)
        return coarse + lut[np.arange(m)[None, :], codes[ent].astype(np.intp)].sum(1)
    return _scan(q, centroids, code, nprobe, starts, sizes, entry_rows, rowmask, kk, dist)
