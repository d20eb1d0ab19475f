"""Reference PQ lookup tables in plain numpy (same contract as ``pq_numba``)."""
from __future__ import annotations

import numpy as np


def tables(q: np.ndarray, cents: np.ndarray, l2: bool) -> np.ndarray:
    """``(nq, m, ksub)``: squared L2 distances (``l2``) or negative dot products ``-q_s·c``."""
    m, _, dsub = cents.shape
    qs = q.reshape(q.shape[0], m, 1, dsub)
    if l2:
        return ((qs - cents[None]) ** 2).sum(-1, dtype=np.float32)
    return -(qs * cents[None]).sum(-1, dtype=np.float32)
