"""Optimized product quantization (OPQ): a learnt rotation that makes PQ's subspaces fit the data.

PQ quantizes each block of ``dim / m`` coordinates on its own, so it wastes bits when
variance is spread unevenly across blocks or correlated between them. OPQ (Ge et al.,
CVPR 2013, the non-parametric variant FAISS's ``OPQMatrix`` uses) alternates two steps:
train PQ on the rotated data ``X R`` and reconstruct it as ``Y``; then set ``R`` to the
orthogonal matrix closest to mapping ``X`` onto ``Y`` (orthogonal Procrustes:
``R = U Vᵀ`` from the SVD of ``Xᵀ Y``). An orthogonal ``R`` keeps every L2 distance and
inner product, so an index searched in the rotated space gives the same exact distances.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.backend import Backend
from ..engine.errors import InvalidArgumentError
from ..engine.validation import as_matrix
from .pq import ProductQuantizer

#: Training vectors used at most (FAISS: 256 per sub-centroid x 256).
MAX_TRAIN = 65_536


def train_opq_rotation(x: Any, m: int, *, niter: int = 20, pq_niter: int = 4, seed: int = 0,
                       backend: str | Backend | None = None) -> np.ndarray:
    """A ``(dim, dim)`` orthogonal float32 rotation for PQ with ``m`` subspaces; rotate rows as ``x @ R``."""
    x = as_matrix(x, None)
    n, dim = x.shape
    if n < 256:
        raise InvalidArgumentError(f"OPQ training needs at least 256 vectors (one per sub-centroid), got {n}")
    ProductQuantizer(dim, m)  # validates m against dim
    rng = np.random.default_rng(seed)
    if n > MAX_TRAIN:
        x = x[np.sort(rng.choice(n, MAX_TRAIN, replace=False))]
    x64 = x.astype(np.float64)
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0]  # a random start spreads variance over blocks
    for it in range(niter):
        xr = (x64 @ rotation).astype(np.float32)
        pq = ProductQuantizer(dim, m, niter=pq_niter, seed=seed + it, backend=backend)
        pq.train(xr)
        y = pq.decode(pq.encode(xr)).astype(np.float64)
        u, _, vt = np.linalg.svd(x64.T @ y)
        rotation = u @ vt
    return np.ascontiguousarray(rotation, dtype=np.float32)
