"""Exhaustive reference for ``bm25_numba``: score every posting of the query's terms, then select.

Same signature and results as the pruned kernel (ties to the lower row); the tests
check the two against each other, and ``backend="numpy"`` runs this path.
"""
from __future__ import annotations

import numpy as np


def topk(offsets, rows, values, blk_off, blk_last, blk_max, blk_min, blk_mindl, doclen,
         q_off, q_terms, q_weights, allowed, mode, k1, b, avgdl, k):
    nq = q_off.shape[0] - 1
    out_d = np.full((nq, k), np.inf, np.float64)
    out_i = np.full((nq, k), -1, np.int64)
    n = doclen.shape[0]
    for q in range(nq):
        scores = np.zeros(n, np.float64)
        touched = np.zeros(n, bool)
        for j in range(q_off[q], q_off[q + 1]):
            t = q_terms[j]
            r = rows[offsets[t]:offsets[t + 1]]
            v = values[offsets[t]:offsets[t + 1]].astype(np.float64)
            if mode == 0:
                contrib = q_weights[j] * v / (v + k1 * (1.0 - b + b * doclen[r].astype(np.float64) / avgdl))
            else:
                contrib = q_weights[j] * v
            scores[r] += contrib  # rows are unique within one posting list
            touched[r] = True
        cand = np.flatnonzero(touched & allowed[:n])
        order = np.lexsort((cand, -scores[cand]))[:k]
        out_d[q, :order.size] = -scores[cand[order]]
        out_i[q, :order.size] = cand[order]
    return out_d, out_i


def live_df(offsets, rows, live):
    hits = np.concatenate([[0], np.cumsum(live[rows], dtype=np.int64)])
    return hits[offsets[1:]] - hits[offsets[:-1]]
