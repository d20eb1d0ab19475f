"""k-means for coarse quantizers and PQ codebooks (Lloyd iterations on a sample).

* Init: greedy k-means++ (default) or a random sample of k distinct points (FAISS's choice).
* Training uses at most ``max_points_per_centroid * k`` rows (default 256 per centroid,
  as FAISS does): beyond that, more points barely move the centroids but cost linearly.
* Empty clusters are repaired by moving their centroid onto the points farthest from
  their current centroid (scikit-learn's strategy), so every centroid stays useful.
* ``balanced=True`` caps every cluster at ``ceil(balance_factor * n / k)`` points; points
  beyond the cap are reassigned to their nearest cluster with room (not dropped), which
  bounds inverted-list lengths and so the worst-case probe cost.
* Stops after ``niter`` iterations or when inertia improves by less than ``tol`` (relative).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..engine.backend import Backend, get_backend, load_kernels
from ..engine.errors import InvalidArgumentError, NotTrainedError
from ..engine.validation import as_matrix

#: Default cap on training rows per centroid (the rest of the data is not needed to fit k centroids).
MAX_POINTS_PER_CENTROID = 256


class KMeans:
    """Squared-L2 k-means; ``fit`` sets ``centroids``, ``inertia`` and ``n_iter``."""

    def __init__(self, k: int, *, niter: int = 20, tol: float = 1e-4, init: str = "k-means++",
                 max_points_per_centroid: int | None = MAX_POINTS_PER_CENTROID, seed: int = 0,
                 balanced: bool = False, balance_factor: float = 1.2,
                 backend: str | Backend | None = None) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
        if init not in ("k-means++", "random"):
            raise InvalidArgumentError(f"unknown init {init!r}; choose 'k-means++' or 'random'")
        if niter < 1:
            raise InvalidArgumentError(f"niter must be >= 1, got {niter!r}")
        if balanced and balance_factor < 1.0:
            raise InvalidArgumentError(f"balance_factor must be >= 1.0, got {balance_factor!r}")
        self.k = int(k)
        self.niter = int(niter)
        self.tol = float(tol)
        self.init = init
        self.max_points_per_centroid = max_points_per_centroid
        self.seed = seed
        self.balanced = balanced
        self.balance_factor = float(balance_factor)
        self.backend = get_backend(backend)
        self._k = load_kernels("shoal.quant.kernels", "kmeans", self.backend)
        self.centroids: np.ndarray | None = None
        self.inertia: float = math.inf
        self.n_iter = 0

    # ------------------------------------------------------------------ public
    def fit(self, x: Any) -> "KMeans":
        """Learn k centroids from ``x`` (a sample of it when large, see module docstring)."""
        x = as_matrix(x, None)
        if x.shape[0] < self.k:
            raise InvalidArgumentError(
                f"k-means with k={self.k} needs at least {self.k} training vectors, got {x.shape[0]}")
        rng = np.random.default_rng(self.seed)
        if self.max_points_per_centroid and x.shape[0] > self.max_points_per_centroid * self.k:
            pick = np.sort(rng.choice(x.shape[0], self.max_points_per_centroid * self.k, replace=False))
            x = np.ascontiguousarray(x[pick])
        c = self._seed(x, rng)
        prev = math.inf
        for it in range(self.niter):
            labels, dists = self._assign(x, c)
            inertia = float(dists.sum(dtype=np.float64))
            c = self._update(x, labels, dists, c)
            self.n_iter = it + 1
            if prev - inertia <= self.tol * max(prev, 1e-30) and it > 0:
                break
            prev = inertia
        labels, dists = self._assign(x, c)
        self.inertia = float(dists.sum(dtype=np.float64))
        self.centroids = c
        return self

    def assign(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid of each row (capacity-balanced only during ``fit``) and its squared distance."""
        if self.centroids is None:
            raise NotTrainedError("KMeans.assign() before fit()")
        return self._k.assign(as_matrix(x, self.centroids.shape[1]), self.centroids)

    def predict(self, x: Any) -> np.ndarray:
        return self.assign(x)[0]

    # ----------------------------------------------------------------- helpers
    def _seed(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = x.shape[0]
        if self.init == "random":
            return x[np.sort(rng.choice(n, self.k, replace=False))].copy()
        # greedy k-means++ (as scikit-learn): of 2 + ln(k) D²-sampled candidates keep the best
        trials = 2 + int(math.log(self.k))
        chosen = np.empty(self.k, np.int64)
        chosen[0] = rng.integers(n)
        mind = np.full(n, np.inf, np.float32)
        self._k.min_dist_update(x, x[chosen[0]], mind)
        for j in range(1, self.k):
            cum = np.cumsum(mind, dtype=np.float64)
            if cum[-1] <= 0.0:  # fewer distinct points than k: any point will do
                chosen[j] = rng.integers(n)
                continue
            cands = np.minimum(np.searchsorted(cum, rng.random(trials) * cum[-1], side="right"), n - 1)
            best, best_pot = None, math.inf
            for cand in cands.tolist():
                trial = mind.copy()
                self._k.min_dist_update(x, x[cand], trial)
                pot = float(trial.sum(dtype=np.float64))
                if pot < best_pot:
                    best, best_pot = (cand, trial), pot
            chosen[j], mind = best
        return x[chosen].copy()

    def _assign(self, x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.balanced:
            return balanced_assign(self._k, x, c, self.balance_factor)
        return self._k.assign(x, c)

    def _update(self, x: np.ndarray, labels: np.ndarray, dists: np.ndarray, c: np.ndarray) -> np.ndarray:
        sums, counts = self._k.update(x, labels, self.k)
        new = c.astype(np.float64).copy()
        full = counts > 0
        new[full] = sums[full] / counts[full, None]
        empty = np.flatnonzero(~full)
        if empty.size:
            # relocate empty centroids onto the worst-served points, one point each
            far = np.argsort(-dists, kind="stable")[: empty.size]
            new[empty] = x[far]
        return new.astype(np.float32)


def balanced_assign(kernels: Any, x: np.ndarray, c: np.ndarray, factor: float,
                    base_counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-centroid assignment with every cluster capped at ``ceil(factor · total / k)``.

    ``base_counts`` are points already in each cluster (an IVF adding a new batch). Points
    beyond a cap, farthest first, are evicted and re-placed greedily (those that lose least
    by moving go first) in their nearest cluster with room, so no point is dropped.
    """
    k = c.shape[0]
    labels, dists = kernels.assign(x, c)
    base = np.zeros(k, np.int64) if base_counts is None else np.asarray(base_counts, np.int64)
    cap = max(1, math.ceil(factor * (x.shape[0] + int(base.sum())) / k))
    counts = np.bincount(labels, minlength=k)
    if (base + counts).max() <= cap:
        return labels, dists
    order = np.lexsort((dists, labels))  # by cluster, nearest first
    starts = np.cumsum(counts) - counts
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size) - np.repeat(starts, counts)
    room = np.maximum(cap - base, 0)
    evicted = np.flatnonzero(rank >= room[labels])
    filled = base + np.minimum(counts, room)
    xe = x[evicted]
    cand_d = np.maximum(np.einsum("ij,ij->i", xe, xe)[:, None] + np.einsum("ij,ij->i", c, c)[None, :]
                        - 2.0 * (xe @ c.T), 0.0).astype(np.float32)
    cand = np.argsort(cand_d, axis=1)
    cand_d = np.take_along_axis(cand_d, cand, 1)
    regret = cand_d[:, 1] - cand_d[:, 0] if k > 1 else np.zeros(evicted.size, np.float32)
    sub_labels = labels[evicted].copy()
    sub_dists = dists[evicted].copy()
    kernels.place(np.argsort(regret, kind="stable"), cand, cand_d, filled, cap, sub_labels, sub_dists)
    labels[evicted] = sub_labels
    dists[evicted] = sub_dists
    return labels, dists
