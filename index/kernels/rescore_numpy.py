"""Reference re-ranking in plain numpy (same contract as ``rescore_numba``)."""
from __future__ import annotations

import numpy as np


def rescore(q: np.ndarray, vec: np.ndarray, rows: np.ndarray, code: int) -> np.ndarray:
    """``(nq, c)`` exact distances of query i to rows ``rows[i]`` of ``vec`` (inf where row is -1)."""
    x = np.asarray(vec)[np.where(rows >= 0, rows, 0)]
    dots = np.einsum("qd,qcd->qc", q, x)
    if code == 0:
        d = np.maximum(np.einsum("qd,qd->q", q, q)[:, None] + np.einsum("qcd,qcd->qc", x, x) - 2.0 * dots, 0.0)
    else:
        d = (1.0 - dots) if code == 1 else -dots
    return np.where(rows >= 0, d, np.inf).astype(np.float32)
