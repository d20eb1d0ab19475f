"""Data and recall helpers shared by the quantizer and quantized-index tests."""
from __future__ import annotations

import numpy as np

from tests.conftest import brute_force


def clustered(n: int, dim: int, seed: int = 0, centers: int = 32) -> np.ndarray:
    """Gaussian blobs: structured like real embeddings, so quantizers have something to learn."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, dim)).astype(np.float32) * 3
    return (c[rng.integers(0, centers, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each query's true neighbours (ids >= 0) that were found."""
    hits = total = 0
    for f, t in zip(found, truth):
        t = set(t[t >= 0].tolist())
        hits += len(t & set(f.tolist()))
        total += len(t)
    return hits / max(total, 1)


def true_ids(q: np.ndarray, x: np.ndarray, k: int, metric: str, mask: np.ndarray | None = None) -> np.ndarray:
    """Exact top-k ids, optionally among rows where ``mask`` holds (padded with -1)."""
    rows = np.arange(x.shape[0]) if mask is None else np.flatnonzero(mask)
    _, ids = brute_force(q, x[rows], min(k, rows.size), metric, labels=rows)
    return np.pad(ids, ((0, 0), (0, k - ids.shape[1])), constant_values=-1)
