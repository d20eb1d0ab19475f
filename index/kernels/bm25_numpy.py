"""Exhaustive reference for ``bm25_numba``: score every posting of the query's terms, then select.

Same signatures and results as the pruned kernels (ties to the lower id); the tests
check the two against each other, and ``backend="numpy"`` runs this path. ``topk``
ignores the bounds and dense maps, which only serve pruning.
"""
from __future__ import annotations

import numpy as np


def topk(offsets, rows, impacts, imp_max, imp_min, dense_slot, dense_pos, q_off, q_terms, q_weights, allowed, base,
         out_d, out_i):
    n = allowed.shape[0]
    k = out_d.shape[1]
    for q in range(q_off.shape[0] - 1):
        scores = np.zeros(n, np.float64)
        touched = np.zeros(n, bool)
        for j in range(q_off[q], q_off[q + 1]):
            t = q_terms[j]
            if t < 0:  # a term this segment lacks
                continue
            r = rows[offsets[t]:offsets[t + 1]]
            scores[r] += q_weights[j] * impacts[offsets[t]:offsets[t + 1]]  # rows are unique within a list
            touched[r] = True
        cand = np.flatnonzero(touched & allowed)
        d = np.concatenate([out_d[q], -scores[cand]])
        ids = np.concatenate([out_i[q], cand + base])
        order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), d))[:k]
        out_d[q], out_i[q] = d[order], ids[order]


def empty_results(nq, k):
    return np.full((nq, k), np.inf), np.full((nq, k), -1, np.int64)


def finish(out_d, out_i):
    """``topk`` keeps each query's slots sorted already: only the sign changes."""
    np.negative(out_d, out=out_d)
    return (out_i >= 0).sum(axis=1)


def idf_weights(df, docs, slots, counts):
    return counts * np.log1p((docs - df + 0.5) / (df + 0.5))[slots]


def _postings_of(offsets, terms):
    """Positions of the postings of ``terms``, list after list."""
    lengths = offsets[terms + 1] - offsets[terms]
    shift = np.repeat(offsets[terms] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(shift.size, dtype=np.int64) + shift


def bm25_impacts(offsets, rows, values, doclen, terms, k1, b, avgdl, impacts, imp_max, imp_min):
    pos = _postings_of(offsets, terms)
    v = values[pos].astype(np.float64)
    impacts[pos] = v / (v + k1 * (1.0 - b + b * doclen[rows[pos]].astype(np.float64) / avgdl))
    _bounds_of(offsets, impacts, terms, imp_max, imp_min)


def list_bounds(offsets, impacts, imp_max, imp_min):
    _bounds_of(offsets, impacts, np.arange(offsets.shape[0] - 1), imp_max, imp_min)


def _bounds_of(offsets, impacts, terms, imp_max, imp_min):
    """Largest and smallest impact of each list of ``terms`` (0 for an empty one)."""
    imp_max[terms] = imp_min[terms] = 0.0
    full = terms[offsets[terms + 1] > offsets[terms]]
    if full.size:
        pos = _postings_of(offsets, full)
        starts = np.concatenate([[0], np.cumsum(offsets[full + 1] - offsets[full])[:-1]])
        imp_max[full] = np.maximum.reduceat(impacts[pos], starts)
        imp_min[full] = np.minimum.reduceat(impacts[pos], starts)


def dense_positions(offsets, rows, terms, slots, out):
    for t, slot in zip(terms.tolist(), slots.tolist()):
        out[slot] = -1
        out[slot, rows[offsets[t]:offsets[t + 1]]] = np.arange(offsets[t + 1] - offsets[t])


def live_df(offsets, rows, live):
    hits = np.concatenate([[0], np.cumsum(live[rows], dtype=np.int64)])
    return hits[offsets[1:]] - hits[offsets[:-1]]
