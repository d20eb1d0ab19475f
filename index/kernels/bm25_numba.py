"""Top-k over posting lists with block-max MaxScore pruning (BM25 and sparse dot products).

One kernel serves both scorers of ``index.inverted``: ``mode`` 0 is Okapi BM25 in
Lucene's form (a posting's value is the term frequency ``tf`` and its contribution
``w * tf / (tf + k1 * (1 - b + b * dl / avgdl))`` with ``w`` the query term's idf
times its count in the query); mode 1 is a dot product (the value is the stored
weight, the contribution ``w * value``).

MaxScore (Turtle & Flood 1995) with block-max bounds (Ding & Suel 2011): query
terms are ordered by their upper bound; once the k-th best score ``theta`` passes
the sum of the smallest bounds, those terms are *non-essential*: only documents in
an essential list are candidates, and a candidate's remaining terms are looked up
only while its score plus the remaining bounds (of the 128-posting block holding
it, then of whole lists) can still pass ``theta``. Every bound is a true upper
bound (BM25's contribution rises with tf and falls with dl, so a block's max tf
and min dl bound it for any avgdl; bounds are clamped at 0), so the result equals
exhaustive scoring (``bm25_numpy``): documents are visited in row order, and a
later document loses a tie, so "bound <= theta" prunes nothing that could enter.
Scores accumulate in float64.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from .heap_numba import heap_push, heap_sort

BLOCK = 128
_END = np.iinfo(np.int64).max


@nb.njit(cache=True, inline="always")
def _contrib(mode, w, value, dl, k1, b, avgdl):
    if mode == 0:
        return w * value / (value + k1 * (1.0 - b + b * dl / avgdl))
    return w * value


@nb.njit(cache=True, inline="always")
def _block_bound(mode, w, bmax, bmin, bmindl, k1, b, avgdl):
    if mode == 0:
        v = w * bmax / (bmax + k1 * (1.0 - b + b * bmindl / avgdl))
    elif w >= 0:
        v = w * bmax
    else:
        v = w * bmin
    return v if v > 0.0 else 0.0


@nb.njit(cache=True, nogil=True)
def _query_topk(offsets, rows, values, blk_off, blk_last, blk_max, blk_min, blk_mindl, doclen,
                terms, weights, allowed, mode, k1, b, avgdl, out_d, out_i):
    m = terms.shape[0]
    k = out_d.shape[0]
    ub = np.zeros(m)
    for j in range(m):
        t = terms[j]
        for bi in range(blk_off[t], blk_off[t + 1]):
            v = _block_bound(mode, weights[j], blk_max[bi], blk_min[bi], blk_mindl[bi], k1, b, avgdl)
            if v > ub[j]:
                ub[j] = v
    order = np.argsort(ub)
    cum = np.zeros(m)
    term = np.empty(m, np.int64)
    w = np.empty(m)
    pos = np.empty(m, np.int64)
    end = np.empty(m, np.int64)
    bp = np.empty(m, np.int64)
    acc = 0.0
    for j in range(m):
        o = order[j]
        t = terms[o]
        acc += ub[o]
        cum[j] = acc
        term[j] = t
        w[j] = weights[o]
        pos[j] = offsets[t]
        end[j] = offsets[t + 1]
        bp[j] = blk_off[t]
    count = 0
    theta = -np.inf
    fe = 0  # terms [0, fe) are non-essential
    while True:
        d = _END
        for j in range(fe, m):
            if pos[j] < end[j] and rows[pos[j]] < d:
                d = rows[pos[j]]
        if d == _END:
            break
        score = 0.0
        for j in range(fe, m):
            if pos[j] < end[j] and rows[pos[j]] == d:
                score += _contrib(mode, w[j], values[pos[j]], doclen[d], k1, b, avgdl)
                pos[j] += 1
        if not allowed[d]:
            continue
        full = count >= k
        keep = True
        for j in range(fe - 1, -1, -1):
            rest = cum[j - 1] if j > 0 else 0.0
            if full and score + cum[j] <= theta:
                keep = False
                break
            t = term[j]
            while bp[j] < blk_off[t + 1] and blk_last[bp[j]] < d:
                bp[j] += 1
            if bp[j] == blk_off[t + 1]:
                pos[j] = end[j]
                continue
            if full and score + rest + _block_bound(mode, w[j], blk_max[bp[j]], blk_min[bp[j]], blk_mindl[bp[j]],
                                                    k1, b, avgdl) <= theta:
                keep = False
                break
            p = offsets[t] + (bp[j] - blk_off[t]) * BLOCK
            if p < pos[j]:
                p = pos[j]
            while p < end[j] and rows[p] < d:
                p += 1
            pos[j] = p
            if p < end[j] and rows[p] == d:
                score += _contrib(mode, w[j], values[p], doclen[d], k1, b, avgdl)
        if not keep or (full and score <= theta):
            continue
        heap_push(out_d, out_i, -score, d)
        count += 1
        if count >= k:
            theta = -out_d[0]
            while fe < m and cum[fe] <= theta:
                fe += 1
    heap_sort(out_d, out_i)


@nb.njit(cache=True, nogil=True, parallel=True)
def topk(offsets, rows, values, blk_off, blk_last, blk_max, blk_min, blk_mindl, doclen,
         q_off, q_terms, q_weights, allowed, mode, k1, b, avgdl, k):
    """Per query ``q`` (terms ``q_terms[q_off[q]:q_off[q+1]]``): the k best ``(-score, row)``, ascending.

    ``allowed``: rows that may be returned (live and passing the filter). Slots past
    the matching documents are ``(inf, -1)``.
    """
    nq = q_off.shape[0] - 1
    out_d = np.full((nq, k), np.inf, np.float64)
    out_i = np.full((nq, k), -1, np.int64)
    for q in nb.prange(nq):
        s, e = q_off[q], q_off[q + 1]
        _query_topk(offsets, rows, values, blk_off, blk_last, blk_max, blk_min, blk_mindl, doclen,
                    q_terms[s:e], q_weights[s:e], allowed, mode, k1, b, avgdl, out_d[q], out_i[q])
    return out_d, out_i


@nb.njit(cache=True, nogil=True)
def live_df(offsets, rows, live):
    """Documents per term among ``live`` rows (BM25's df after deletes)."""
    t = offsets.shape[0] - 1
    out = np.zeros(t, np.int64)
    for i in range(t):
        c = 0
        for p in range(offsets[i], offsets[i + 1]):
            if live[rows[p]]:
                c += 1
        out[i] = c
    return out
