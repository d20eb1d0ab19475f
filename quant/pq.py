"""Product quantizer: ``m`` subspaces × 8-bit codes (``m`` bytes per vector).

A vector is cut into ``m`` sub-vectors of ``dim / m`` floats; each is replaced by the
index of its nearest of 256 sub-centroids learnt by k-means in that subspace. Distances
to a query are *asymmetric* (ADC): the query stays exact, a per-query lookup table holds
its distance to every sub-centroid, and a code's distance is the sum of ``m`` table
entries (summed by the index kernels). The OPQ rotation that can precede it is in :mod:`.opq`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.backend import Backend, get_backend, load_kernels
from ..engine.errors import InvalidArgumentError, NotTrainedError
from ..engine.validation import as_matrix
from .kmeans import KMeans

#: Bits per sub-code; codes are one byte each.
NBITS = 8


class ProductQuantizer:
    """``train`` / ``encode`` / ``decode`` and the ADC lookup tables."""

    def __init__(self, dim: int, m: int, *, niter: int = 15, seed: int = 0,
                 backend: str | Backend | None = None) -> None:
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m <= 0 or dim % m:
            raise InvalidArgumentError(f"PQ needs m to be a positive divisor of dim={dim}, got m={m!r}")
        self.dim = int(dim)
        self.m = int(m)
        self.dsub = self.dim // self.m
        self.ksub = 1 << NBITS
        self.niter = niter
        self.seed = seed
        self.backend = get_backend(backend)
        self._k = load_kernels("shoal.quant.kernels", "kmeans", self.backend)
        self._t = load_kernels("shoal.quant.kernels", "pq", self.backend)
        #: ``(m, ksub, dsub)`` sub-centroids.
        self.centroids: np.ndarray | None = None

    @property
    def is_trained(self) -> bool:
        return self.centroids is not None

    @property
    def code_size(self) -> int:
        return self.m

    @property
    def min_train_size(self) -> int:
        return self.ksub

    def train(self, x: Any) -> None:
        """One k-means per subspace (at most 256 training points per sub-centroid)."""
        x = as_matrix(x, self.dim)
        if x.shape[0] < self.ksub:
            raise InvalidArgumentError(
                f"PQ training needs at least {self.ksub} vectors (one per sub-centroid), got {x.shape[0]}")
        cents = np.empty((self.m, self.ksub, self.dsub), np.float32)
        for s in range(self.m):
            km = KMeans(self.ksub, niter=self.niter, seed=self.seed + s, init="random", backend=self.backend)
            cents[s] = km.fit(np.ascontiguousarray(x[:, s * self.dsub:(s + 1) * self.dsub])).centroids
        self.centroids = cents

    def _check(self) -> np.ndarray:
        if self.centroids is None:
            raise NotTrainedError("ProductQuantizer used before train()")
        return self.centroids

    def encode(self, x: np.ndarray) -> np.ndarray:
        """``(n, m)`` uint8 codes."""
        cents = self._check()
        codes = np.empty((x.shape[0], self.m), np.uint8)
        for s in range(self.m):
            sub = np.ascontiguousarray(x[:, s * self.dsub:(s + 1) * self.dsub])
            codes[:, s] = self._k.assign(sub, cents[s])[0]
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        cents = self._check()
        codes = np.asarray(codes)
        out = cents[np.arange(self.m)[None, :], codes.astype(np.intp)]  # (n, m, dsub)
        return out.reshape(codes.shape[0], self.dim)

    def l2_tables(self, q: np.ndarray) -> np.ndarray:
        """``(nq, m, ksub)`` squared L2 distances of each query sub-vector to each sub-centroid."""
        return self._t.tables(q, self._check(), True)

    def dot_tables(self, q: np.ndarray) -> np.ndarray:
        """``(nq, m, ksub)`` negative dot products ``-q_s · c`` (ip / cosine, and the l2 cross term)."""
        return self._t.tables(q, self._check(), False)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return ({} if self.centroids is None else {"pq_centroids": self.centroids}), {"pq_m": self.m}

    @classmethod
    def from_state(cls, dim: int, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                   backend: str | Backend | None = None) -> "ProductQuantizer":
        pq = cls(dim, meta["pq_m"], backend=backend)
        if "pq_centroids" in arrays:
            pq.centroids = np.array(arrays["pq_centroids"])
        return pq
