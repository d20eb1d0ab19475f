"""Numba k-means kernels: fused distance + argmin, cluster sums, k-means++ and balancing helpers.

``assign`` computes distances in registers (one point per thread, the centroid loop
vectorised over a transposed centroid matrix) instead of a BLAS GEMM followed by an
argmin pass: no ``n × k`` buffer, one parallel region per call. On the 2 shared cores of
the development machine it beat GEMM+argmin at every size measured (d=5/k=256: 35 vs
123 ms; d=50/k=1024: 0.35 vs 0.48 s for 50k points).
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, parallel=True, fastmath=True)
def _assign(x, ct, cnorm, labels, dists):
    n, d = x.shape
    k = ct.shape[1]
    for i in nb.prange(n):
        acc = cnorm.copy()
        xn = np.float32(0.0)
        for j in range(d):
            v = x[i, j]
            xn += v * v
            w = np.float32(-2.0) * v
            for c in range(k):
                acc[c] += w * ct[j, c]
        best = acc[0]
        arg = 0
        for c in range(1, k):
            if acc[c] < best:
                best = acc[c]
                arg = c
        labels[i] = arg
        dist = best + xn
        dists[i] = dist if dist > 0.0 else 0.0


def assign(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row and its squared L2 distance."""
    labels = np.empty(x.shape[0], np.int64)
    dists = np.empty(x.shape[0], np.float32)
    _assign(np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(c.T, dtype=np.float32),
            np.einsum("ij,ij->i", c, c, dtype=np.float32), labels, dists)
    return labels, dists


@nb.njit(cache=True)
def _update(x, labels, k):
    d = x.shape[1]
    sums = np.zeros((k, d), np.float64)
    counts = np.zeros(k, np.int64)
    for i in range(x.shape[0]):
        c = labels[i]
        counts[c] += 1
        for j in range(d):
            sums[c, j] += x[i, j]
    return sums, counts


def update(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster coordinate sums (float64) and sizes."""
    return _update(x, labels, k)


@nb.njit(cache=True, fastmath=True)
def _min_dist_update(x, c, mind):
    n, d = x.shape
    for i in range(n):
        acc = 0.0
        for j in range(d):
            t = x[i, j] - c[j]
            acc += t * t
        if acc < mind[i]:
            mind[i] = acc


def min_dist_update(x: np.ndarray, c: np.ndarray, mind: np.ndarray) -> None:
    """``mind = min(mind, |x - c|²)`` in place (k-means++ seeding)."""
    _min_dist_update(x, c, mind)


@nb.njit(cache=True)
def _place(order, cand, cand_d, counts, cap, labels, dists):
    for t in range(order.shape[0]):
        i = order[t]
        for j in range(cand.shape[1]):
            c = cand[i, j]
            if counts[c] < cap:
                counts[c] += 1
                labels[i] = c
                dists[i] = cand_d[i, j]
                break


def place(order: np.ndarray, cand: np.ndarray, cand_d: np.ndarray, counts: np.ndarray, cap: int,
          labels: np.ndarray, dists: np.ndarray) -> None:
    """Greedy balanced placement: point ``order[t]`` takes its nearest candidate cluster with room."""
    _place(order, cand, cand_d, counts, cap, labels, dists)
