"""CuPy re-ranking: exact distances from each query to its own candidate rows (resident vectors)."""
from __future__ import annotations

import cupy as cp
import numpy as np

from ...engine.device import device_memory


def rescore(q: np.ndarray, vec: np.ndarray, rows: np.ndarray, code: int) -> np.ndarray:
    """``(nq, c)`` exact distances of query i to rows ``rows[i]`` of ``vec`` (inf where row is -1)."""
    mem = device_memory()
    nq, c = rows.shape
    out = np.empty(rows.shape, np.float32)
    if nq == 0 or c == 0:
        return out
    with mem.guard():
        vd = mem.on_device(vec)
        qd = mem.upload(np.ascontiguousarray(q, np.float32))
        rd = mem.upload(rows)
        block = mem.scratch_items(c * vec.shape[1] * 8, min_items=1, max_items=nq)
        for a in range(0, nq, block):
            b = min(nq, a + block)
            r = rd[a:b]
            x = vd[cp.where(r >= 0, r, 0)]  # (block, c, dim)
            qq = qd[a:b, None, :]
            if code == 0:
                d = ((x - qq) ** 2).sum(axis=2)
            else:
                dots = (x * qq).sum(axis=2)
                d = 1.0 - dots if code == 1 else -dots
            out[a:b] = cp.asnumpy(cp.where(r >= 0, d, cp.inf).astype(cp.float32))
    return out
