"""CuPy PQ lookup tables: one batched GEMM over the subspaces (same contract as ``pq_numba``)."""
from __future__ import annotations

import cupy as cp
import numpy as np

from ...engine.device import device_memory


def tables(q: np.ndarray, cents: np.ndarray, l2: bool) -> np.ndarray:
    """``(nq, m, ksub)``: squared L2 distances (``l2``) or negative dot products ``-q_s·c``."""
    mem = device_memory()
    m, ksub, dsub = cents.shape
    with mem.guard():
        cd = mem.on_device(cents)
        qs = mem.upload(np.ascontiguousarray(q, np.float32)).reshape(q.shape[0], m, dsub).transpose(1, 0, 2)
        dots = cp.matmul(qs, cd.transpose(0, 2, 1))  # (m, nq, ksub)
        if l2:
            out = (qs * qs).sum(axis=2)[:, :, None] + (cd * cd).sum(axis=2)[:, None, :] - 2.0 * dots
            out = cp.maximum(out, 0.0)
        else:
            out = -dots
        return cp.asnumpy(out.transpose(1, 0, 2).astype(cp.float32))
