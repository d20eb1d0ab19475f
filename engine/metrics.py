"""Distance metrics and their conventions.

Every index returns *distances* where smaller is better:

* ``l2``     squared Euclidean distance
* ``cosine`` ``1 - cos(q, x)``; vectors are L2-normalised once on the way in.
  A zero vector cannot be normalised: it is kept as zeros, so its cosine
  similarity with anything is 0 (distance 1.0). Ties then break by id.
* ``ip``     negative inner product

``scores`` are the similarity view users expect (higher is better):
``-d`` for l2, ``1 - d`` for cosine, ``-d`` for ip (the inner product).
"""
from __future__ import annotations

import numpy as np

from .echo import shorten
from .errors import InvalidArgumentError
from .kernels.rows_numba import checked_rows
from .validation import non_finite

METRICS = ("l2", "cosine", "ip")
_ALIASES = {"euclidean": "l2", "l2sq": "l2", "angular": "cosine", "cos": "cosine",
            "dot": "ip", "inner_product": "ip"}


def check_metric(metric: str) -> str:
    """Return the canonical metric name or raise a clear error."""
    name = _ALIASES.get(str(metric).lower(), str(metric).lower())
    if name not in METRICS:
        raise InvalidArgumentError(f"unknown metric {shorten(metric)}; choose one of {', '.join(METRICS)}")
    return name


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows of finite float32 vectors; zero rows stay zero (see module docstring).

    The arithmetic (float32 sum of squares, one division) is the query kernels', so stored rows
    and queries normalised anywhere in Shoal agree to the bit.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.shape, np.float32)
    bad = checked_rows(x, True, out)
    if bad >= 0:
        raise non_finite(bad, "vectors")
    return out


def prepare(x: np.ndarray, metric: str) -> np.ndarray:
    """Bring vectors into the space where the kernels work (normalised for cosine)."""
    return normalize_rows(x) if metric == "cosine" else x


def scores_from_distances(d: np.ndarray, metric: str) -> np.ndarray:
    """Similarity view of distances (higher is better); padding stays -inf."""
    return (1.0 - d) if metric == "cosine" else -d


def reference_distances(queries: np.ndarray, data: np.ndarray, metric: str) -> np.ndarray:
    """Plain float64 numpy distances in Shoal's convention; for tests and re-ranking checks."""
    q = prepare(queries, metric).astype(np.float64)
    x = prepare(data, metric).astype(np.float64)
    if metric == "l2":
        return ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    dots = q @ x.T
    return 1.0 - dots if metric == "cosine" else -dots
