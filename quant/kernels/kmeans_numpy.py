"""Reference k-means kernels in plain numpy (same contracts as ``kmeans_numba``)."""
from __future__ import annotations

import numpy as np

ASSIGN_BUFFER = 1 << 22


def assign(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row and its squared L2 distance."""
    n = x.shape[0]
    labels = np.empty(n, np.int64)
    dists = np.empty(n, np.float32)
    cnorm = np.einsum("ij,ij->i", c, c, dtype=np.float32)
    block = max(256, ASSIGN_BUFFER // c.shape[0])
    for s in range(0, n, block):
        xb = x[s:s + block]
        d = cnorm[None, :] - 2.0 * (xb @ c.T)
        lab = np.argmin(d, axis=1)
        labels[s:s + block] = lab
        dists[s:s + block] = np.maximum(d[np.arange(xb.shape[0]), lab]
                                               + np.einsum("ij,ij->i", xb, xb, dtype=np.float32), 0.0)
    return labels, dists


def update(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster coordinate sums (float64) and sizes."""
    sums = np.zeros((k, x.shape[1]), np.float64)
    np.add.at(sums, labels, x.astype(np.float64))
    return sums, np.bincount(labels, minlength=k).astype(np.int64)


def min_dist_update(x: np.ndarray, c: np.ndarray, mind: np.ndarray) -> None:
    """``mind = min(mind, |x - c|²)`` in place (k-means++ seeding)."""
    np.minimum(mind, ((x - c[None, :]) ** 2).sum(1), out=mind)


def place(order: np.ndarray, cand: np.ndarray, cand_d: np.ndarray, counts: np.ndarray, cap: int,
          labels: np.ndarray, dists: np.ndarray) -> None:
    """Greedy balanced placement: point ``order[t]`` takes its nearest candidate cluster with room."""
    for i in order.tolist():
        for c, d in zip(cand[i].tolist(), cand_d[i].tolist()):
            if counts[c] < cap:
                counts[c] += 1
                labels[i] = c
                dists[i] = d
                break
