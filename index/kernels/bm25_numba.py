"""Top-k over posting lists, term at a time, with MaxScore pruning (BM25 and sparse dot products).

A posting's contribution to a document's score is ``w * impact``: ``w`` is the query
term's weight (BM25: idf times the term's count in the query; sparse: the query's
value) and ``impact`` is per posting, cached by ``index.impacts`` (BM25: Lucene's tf
part ``tf / (tf + k1 (1 - b + b dl / avgdl))`` under the live collection's avgdl;
sparse: the stored value). Precomputing it is what lets a query touch a posting for
~1 ns, as bm25s does with its precomputed scores, while the scores stay those of the
live collection (bm25s fixes idf and avgdl at index time).

Per query the terms are taken in decreasing order of their upper bound ``w * max
impact`` and each list is added into a dense accumulator (phase 1), until the k-th
best partial score ``theta`` passes the sum of the remaining terms' bounds (MaxScore,
Turtle & Flood 1995, in its term-at-a-time form): no row outside the accumulator can
then enter the top k, nor one whose partial score plus that sum stays below ``theta``.
``theta`` costs nothing extra: while a list is added, a k-slot min-heap keeps the k best
partial scores among its (distinct) allowed rows, a lower bound of the final k-th score.
The surviving candidates are taken in row order from a bitmap; the remaining terms
(the common, low-idf ones with the long lists) are only looked up for them (phase 2):
in O(1) through a dense row -> posting map for lists in at least 1/8 of the rows
(``index.impacts``), by a galloping merge otherwise; before each term ``theta`` is
raised to the candidates' k-th partial score and those that can no longer reach it
are dropped. Pruning is exact (comparisons are strict, with a relative slack of 1e-9
for float64 rounding of the sums), so results equal exhaustive scoring (``bm25_numpy``),
ties to the lower row. It needs every contribution >= 0 (so scores only grow and
``theta`` is a lower bound): always true of BM25; a sparse query with a contribution of
either sign scores every list (exhaustive). The hot loops avoid data-dependent branches
and loop-carried dependencies (measured: a branchy candidate test and an appended
touched list cost 2x; a per-row ``seen`` byte, set in phase 1 and scanned when every list
was added, cost ~7 % of a query against building those candidates by the same bitmap).

A collection's segments are scored one call each into the same result heaps (``topk``,
then ``finish``): BM25's statistics are collection-wide, so the k-th score kept from the
segments before is a valid ``theta`` to start the next one with, and a later segment only
scores what can still enter (no merge step either).

Measured on 41k docstring paragraphs with 2,000 docstring summaries as queries (~37k
postings per query; issue 22): phase 1 adds ~4.1k postings, ~1.9k candidates, ~2.1k
lookups; ~50 us of CPU per query, like bm25s's numba backend summing all 37k
precomputed scores; the document-at-a-time block-max kernel this replaced took ~340.
"""
from __future__ import annotations

import threading

import numba as nb
import numpy as np

from ...engine.threads import SERIAL_BATCH
from .heap_numba import heap_push, heap_sort

#: Relative slack of the pruning tests: far above float64 rounding of a sum of a few terms.
_SLACK = 1.0 + 1e-9


@nb.njit(cache=True, inline="always")
def _kth_value(vals, nv, heap):
    """The k-th largest of ``vals[:nv]`` (k = len(heap)), -inf if fewer: a min-heap of the k largest."""
    k = heap.shape[0]
    if nv < k:
        return -np.inf
    heap[:] = vals[:k]
    for start in range(k // 2 - 1, -1, -1):
        _sift_min(heap, start, heap[start])
    for c in range(k, nv):
        v = vals[c]
        if v > heap[0]:
            _sift_min(heap, 0, v)
    return heap[0]


@nb.njit(cache=True, inline="always")
def _sift_min(heap, pos, v):
    """Place ``v`` at ``pos`` of the min-heap ``heap``, moving smaller children up."""
    size = heap.shape[0]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and heap[child + 1] < heap[child]:
            child += 1
        if heap[child] >= v:
            break
        heap[pos] = heap[child]
        pos = child
    heap[pos] = v


_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_BIT_OF = np.array([0, 1, 48, 2, 57, 49, 28, 3, 61, 58, 50, 42, 38, 29, 17, 4, 62, 55, 59, 36, 53, 51, 43, 22, 45, 39,
                    33, 30, 24, 18, 12, 5, 63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11, 46, 26, 40,
                    15, 34, 20, 31, 10, 25, 14, 19, 9, 13, 8, 7, 6], np.int64)


@nb.njit(cache=True, inline="always")
def _drain_bits(bits, out):
    """The set bits of ``bits`` (bit r of word r // 64 is row r) into ``out``, ascending; clears ``bits``."""
    n = 0
    for i in range(bits.shape[0]):
        word = bits[i]
        while word != 0:
            low = word & (~word + np.uint64(1))
            out[n] = i * 64 + _BIT_OF[(low * _DEBRUIJN) >> np.uint64(58)]
            n += 1
            word ^= low
        bits[i] = 0
    return n


@nb.njit(cache=True, inline="always")
def _gallop(rows, p, e, d):
    """First position in ``rows[p:e]`` (ascending) holding a row >= ``d``."""
    if p >= e or rows[p] >= d:
        return p
    step = 1
    lo = p
    hi = p + 1
    while hi < e and rows[hi] < d:
        lo = hi
        step *= 2
        hi = lo + step
    if hi > e:
        hi = e
    while lo + 1 < hi:  # rows[lo] < d, and rows[hi] >= d or hi == e
        mid = (lo + hi) >> 1
        if rows[mid] < d:
            lo = mid
        else:
            hi = mid
    return hi


@nb.njit(cache=True, inline="always")
def _add_term(offsets, rows, impacts, dense_slot, dense_pos, t, w, cand, score, nc):
    """Add term ``t``'s contribution to ``score[c]`` of the candidates ``cand[:nc]`` (ascending rows)."""
    first = offsets[t]
    slot = dense_slot[t]
    if slot >= 0:
        line = dense_pos[slot]
        for c in range(nc):  # branch-free: absent rows add 0 (position 0 read, weighted by 0)
            r = line[cand[c]]
            score[c] += (w * (r >= 0)) * impacts[first + max(r, 0)]
    else:
        p = first
        e = offsets[t + 1]
        for c in range(nc):
            d = cand[c]
            p = _gallop(rows, p, e, d)
            if p == e:
                break
            if rows[p] == d:
                score[c] += w * impacts[p]


@nb.njit(cache=True, nogil=True)
def _query_topk(offsets, rows, impacts, imp_max, imp_min, dense_slot, dense_pos, q_terms, q_weights, allowed, base,
                out_d, out_i, acc, bits, cand, score, heap):
    """One query into its result heap ``out_d, out_i`` (``base + row`` ids); ``acc`` and
    ``bits`` are the caller's zeroed scratch, zeroed again on return."""
    terms = np.empty(q_terms.shape[0], np.int64)  # the terms this segment has (-1: absent here), non-empty lists
    weights = np.empty(q_terms.shape[0])
    m = 0
    for j in range(q_terms.shape[0]):
        t = q_terms[j]
        if t >= 0 and offsets[t + 1] > offsets[t]:
            terms[m] = t
            weights[m] = q_weights[j]
            m += 1
    if m == 0:
        return
    k = out_d.shape[0]
    ub = np.zeros(m)
    prunable = True
    for j in range(m):
        t = terms[j]
        hi = weights[j] * imp_max[t]
        lo = weights[j] * imp_min[t]
        if lo > hi:
            hi, lo = lo, hi
        if lo < 0.0:
            prunable = False
        ub[j] = hi
    order = np.argsort(-ub)
    rest = np.zeros(m + 1)  # rest[j]: the bounds of terms order[j:] summed
    for j in range(m - 1, -1, -1):
        rest[j] = rest[j + 1] + ub[order[j]]
    # the k-th best score so far (earlier segments of the collection, same statistics), -inf until k are kept
    theta = -out_d[0] if out_i[0] >= 0 else -np.inf
    j = 0
    while j < m and not (prunable and rest[j] * _SLACK < theta):  # phase 1: whole lists into the accumulator
        o = order[j]
        t = terms[o]
        w = weights[o]
        # theta: the k-th best partial score among the allowed rows of one list (distinct rows, so a
        # lower bound of the final k-th score), the best over the lists so far; kept in a min-heap
        heap[:] = -np.inf
        for p in range(offsets[t], offsets[t + 1]):
            d = rows[p]
            a = acc[d] + w * impacts[p]
            acc[d] = a
            if a > heap[0] and allowed[d]:
                _sift_min(heap, 0, a)
        theta = max(theta, heap[0])
        j += 1
    # the rows that can still reach theta, in row order, from a bitmap of phase 1's postings (once every
    # list is in: those reaching theta, a lower bound of the k-th score only when no contribution is
    # negative); then the accumulator is reset, the candidates' partial scores being in ``score``
    scanned = j
    floor = rest[j]
    lowest = theta if prunable else -np.inf
    for jj in range(scanned):
        t = terms[order[jj]]
        for p in range(offsets[t], offsets[t + 1]):
            d = rows[p]  # branch-free: the test is a coin flip
            keep = allowed[d] & ((acc[d] + floor) * _SLACK >= lowest)
            bits[d >> 6] |= np.uint64(keep) << np.uint64(d & 63)
    nc = _drain_bits(bits, cand)
    for c in range(nc):
        score[c] = acc[cand[c]]
    for jj in range(scanned):
        t = terms[order[jj]]
        for p in range(offsets[t], offsets[t + 1]):
            acc[rows[p]] = 0.0
    while j < m:  # phase 2: the remaining terms, for the candidates only
        if nc > k:  # theta from the candidates' partial scores, then drop those that cannot reach it
            theta = max(theta, _kth_value(score, nc, heap))
            keep = 0
            for c in range(nc):
                cand[keep] = cand[c]
                score[keep] = score[c]
                keep += (score[c] + rest[j]) * _SLACK >= theta
            nc = keep
        # (at most k left: they are the top k, and only their scores are still needed)
        o = order[j]
        _add_term(offsets, rows, impacts, dense_slot, dense_pos, terms[o], weights[o], cand, score, nc)
        j += 1
    theta = _kth_value(score, nc, heap)  # the ordered heap (ties to the lower id) only sees the k best
    for c in range(nc):
        if score[c] >= theta:
            heap_push(out_d, out_i, -score[c], base + cand[c])


def topk(offsets, rows, impacts, imp_max, imp_min, dense_slot, dense_pos, q_off, q_terms, q_weights, allowed, base,
         out_d, out_i):
    """Add one segment's best ``(-score, base + row)`` to each query's k slots ``out_d[q], out_i[q]``
    (a max-heap per query, ``(inf, -1)`` where empty; :func:`finish` sorts them once every segment
    is in); query ``q`` has terms ``q_terms[q_off[q]:q_off[q+1]]`` (local term numbers, -1 where
    the segment lacks one) with weights ``q_weights``; score = sum of ``weight * impacts[posting]``.

    The slots carry the k-th best score of the earlier segments, which starts this one's pruning
    threshold: statistics are collection-wide, so a later segment only scores what can still enter.
    ``allowed``: rows that may be returned (live and passing the filter), one per row.
    ``dense_slot[t]`` is term t's row of ``dense_pos`` (row -> position in its list, -1 if absent)
    or -1. Batches under ``SERIAL_BATCH`` run on the calling thread without waking Numba's pool
    (``engine.threads``).
    """
    nq = q_off.shape[0] - 1
    args = (offsets, rows, impacts, imp_max, imp_min, dense_slot, dense_pos, q_off, q_terms, q_weights, allowed, base,
            out_d, out_i)
    if nq < SERIAL_BATCH:
        _run_queries(*args, 0, 1, *_thread_scratch(allowed.shape[0]), np.empty(out_d.shape[1]))
    else:  # the thread count is read here: inside a kernel it defeats caching
        _run_parallel(*args, min(nq, nb.get_num_threads()))


@nb.njit(cache=True, nogil=True)
def empty_results(nq, k):
    """``(out_d, out_i)`` for ``topk``: every slot ``(inf, -1)``."""
    return np.full((nq, k), np.inf), np.full((nq, k), -1, np.int64)


@nb.njit(cache=True, nogil=True)
def finish(out_d, out_i):
    """Each query's heap (``topk``) -> its hits best first, in place: ``out_d`` becomes the scores
    (-inf in empty slots, which come last), ties to the lower id. Returns the hits per query."""
    counts = np.zeros(out_d.shape[0], np.int64)
    for q in range(out_d.shape[0]):
        heap_sort(out_d[q], out_i[q])
        for j in range(out_d.shape[1]):
            out_d[q, j] = -out_d[q, j]
            counts[q] += out_i[q, j] >= 0
    return counts


@nb.njit(cache=True, nogil=True)
def idf_weights(df, docs, slots, counts):
    """Per query term: its count times BM25's idf ``log(1 + (N - df + 0.5) / (df + 0.5))`` of its key."""
    out = np.empty(slots.shape[0])
    for j in range(slots.shape[0]):
        d = df[slots[j]]
        out[j] = counts[j] * np.log1p((docs - d + 0.5) / (d + 0.5))
    return out


_LOCAL = threading.local()


def _thread_scratch(n: int) -> tuple[np.ndarray, ...]:
    """This thread's scratch for ``n`` rows, kept between calls: a fresh 300 KB accumulator per query
    costs its page faults (~40 us of a ~100 us query). The kernel leaves it zeroed. ~20 bytes a row."""
    scratch = getattr(_LOCAL, "scratch", None)
    if scratch is None or scratch[0].shape[0] < n:  # acc: exactly n rows (bits are rounded up to 64)
        scratch = _LOCAL.scratch = _scratch(n)
    return scratch


@nb.njit(cache=True, nogil=True)
def _scratch(n):
    """``(acc, bits, cand, score)`` for up to ``n`` rows, the first two zeroed."""
    return np.zeros(n), np.zeros(-(-n // 64), np.uint64), np.empty(n, np.int32), np.empty(n)


@nb.njit(cache=True, nogil=True)
def _run_queries(offsets, rows, impacts, imp_max, imp_min, dense_slot, dense_pos, q_off, q_terms, q_weights, allowed,
                 base, out_d, out_i, first, step, acc, bits, cand, score, heap):
    """Queries ``first, first + step, ...`` with one set of scratch arrays (of at least as many rows)."""
    n = allowed.shape[0]
    bits = bits[: -(-n // 64)]
    for q in range(first, q_off.shape[0] - 1, step):
        s, e = q_off[q], q_off[q + 1]
        _query_topk(offsets, rows, impacts, imp_max, imp_min, dense_slot, dense_pos, q_terms[s:e], q_weights[s:e],
                    allowed, base, out_d[q], out_i[q], acc, bits, cand, score, heap)


@nb.njit(cache=True, nogil=True, parallel=True)
def _run_parallel(offsets, rows, impacts, imp_max, imp_min, dense_slot, dense_pos, q_off, q_terms, q_weights, allowed,
                  base, out_d, out_i, workers):
    for w in nb.prange(workers):  # one set of scratch per worker, reused by its queries
        acc, bits, cand, score = _scratch(allowed.shape[0])
        _run_queries(offsets, rows, impacts, imp_max, imp_min, dense_slot, dense_pos, q_off, q_terms, q_weights,
                     allowed, base, out_d, out_i, w, workers, acc, bits, cand, score, np.empty(out_d.shape[1]))


@nb.njit(cache=True, inline="always")
def _bounds(offsets, impacts, t, imp_max, imp_min):
    hi = -np.inf
    lo = np.inf
    for p in range(offsets[t], offsets[t + 1]):
        x = impacts[p]
        hi = max(hi, x)
        lo = min(lo, x)
    imp_max[t] = hi if offsets[t + 1] > offsets[t] else 0.0
    imp_min[t] = lo if offsets[t + 1] > offsets[t] else 0.0


@nb.njit(cache=True, nogil=True)
def bm25_impacts(offsets, rows, values, doclen, terms, k1, b, avgdl, impacts, imp_max, imp_min):
    """Fill ``impacts`` (tf / (tf + k1 (1 - b + b dl / avgdl)), float64) and the per-list max/min
    for the lists of ``terms`` (distinct). Serial: it runs once per list and write, on the calling
    thread (a parallel region here would cost more to compile and wake than the pass itself)."""
    for j in range(terms.shape[0]):
        t = terms[j]
        for p in range(offsets[t], offsets[t + 1]):
            v = np.float64(values[p])
            impacts[p] = v / (v + k1 * (1.0 - b + b * np.float64(doclen[rows[p]]) / avgdl))
        _bounds(offsets, impacts, t, imp_max, imp_min)


@nb.njit(cache=True, nogil=True)
def list_bounds(offsets, impacts, imp_max, imp_min):
    """Per list the largest and smallest impact (0 for an empty list)."""
    for t in range(offsets.shape[0] - 1):
        _bounds(offsets, impacts, t, imp_max, imp_min)


@nb.njit(cache=True, nogil=True)
def dense_positions(offsets, rows, terms, slots, out):
    """``out[slots[j], row]`` = position of ``row`` in term ``terms[j]``'s list, -1 where absent."""
    for j in range(terms.shape[0]):
        t = terms[j]
        line = out[slots[j]]
        line[:] = -1
        first = offsets[t]
        for p in range(first, offsets[t + 1]):
            line[rows[p]] = p - first


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
