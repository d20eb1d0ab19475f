"""CuPy k-means kernels (same contracts as ``kmeans_numba``): GEMM + argmin assignment and
scatter-add centroid sums on the device.

The training sample handed to every iteration is the same host array, so it is uploaded
once and stays resident for the whole fit (:mod:`shoal.engine.device`); only centroids go
up and labels/distances come back per iteration. Greedy balanced placement is sequential
and stays on the host (``place`` from the Numba module).
"""
from __future__ import annotations

import cupy as cp
import cupyx
import numpy as np

from ...engine.device import device_memory
from .kmeans_numba import place

__all__ = ["assign", "update", "min_dist_update", "place"]


def _rows(mem, x: np.ndarray, per_row_bytes: int):
    """``(start, device rows)`` chunks of x: slices of its resident copy, or uploads when it does not fit."""
    xd = mem.resident(x, reserve=mem.budget // 8)
    step = mem.scratch_items(per_row_bytes + (0 if xd is not None else 4 * x.shape[1]),
                             min_items=1, max_items=max(1, x.shape[0]))
    for s in range(0, x.shape[0], step):
        e = min(x.shape[0], s + step)
        yield s, (xd[s:e] if xd is not None else mem.upload(np.ascontiguousarray(x[s:e], np.float32)))


def assign(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row and its squared L2 distance."""
    mem = device_memory()
    labels = np.empty(x.shape[0], np.int64)
    dists = np.empty(x.shape[0], np.float32)
    with mem.guard():
        cd = mem.upload(np.ascontiguousarray(c, np.float32))
        cn = (cd * cd).sum(axis=1)
        for s, xc in _rows(mem, x, 8 * c.shape[0]):
            d = xc @ cd.T
            d *= -2.0
            d += cn[None, :]
            lab = cp.argmin(d, axis=1)
            best = d[cp.arange(d.shape[0]), lab] + (xc * xc).sum(axis=1)
            labels[s:s + xc.shape[0]] = cp.asnumpy(lab)
            dists[s:s + xc.shape[0]] = cp.asnumpy(cp.maximum(best, 0.0))
    return labels, dists


def update(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster coordinate sums (float64) and sizes."""
    mem = device_memory()
    with mem.guard():
        sums = cp.zeros((k, x.shape[1]), cp.float64)
        counts = cp.zeros(k, cp.int64)
        for s, xc in _rows(mem, x, 16 * x.shape[1]):
            lab = mem.upload(labels[s:s + xc.shape[0]])
            cupyx.scatter_add(sums, lab, xc.astype(cp.float64))
            counts += cp.bincount(lab, minlength=k)
        return cp.asnumpy(sums), cp.asnumpy(counts)


def min_dist_update(x: np.ndarray, c: np.ndarray, mind: np.ndarray) -> None:
    """``mind = min(mind, |x - c|²)`` in place (k-means++ seeding)."""
    mem = device_memory()
    with mem.guard():
        cd = mem.upload(np.ascontiguousarray(c, np.float32))
        for s, xc in _rows(mem, x, 8 * x.shape[1]):
            d = ((xc - cd[None, :]) ** 2).sum(axis=1)
            e = s + xc.shape[0]
            mind[s:e] = np.minimum(mind[s:e], cp.asnumpy(d))
