"""Numba kernels of the HNSW graph: beam search, batched parallel insertion search, serial linking.

Graph layout (all flat arrays, see :mod:`shoal.index.hnsw`):
``nbr0[row, :cnt0[row]]`` level-0 neighbours; a node with level L >= 1 owns
rows ``up_off[node] + l - 1`` (l = 1..L) of ``nbr_up`` / ``cnt_up``.

Distances inside the kernels are "reduced": squared L2 (code 0) or the
negative dot product (code 1, used for cosine and ip). The search kernels
return final results (labels, cosine offset, cosine queries normalised inside)
so a one-query call pays no numpy post-processing.
Each worker thread owns one row of ``visited`` and tags it with an epoch
counter, so no per-query allocation or clearing is needed.
"""
from __future__ import annotations

import numba as nb
import numpy as np

_TAG_LIMIT = 2_000_000_000


@nb.njit(cache=True, fastmath=True, inline="always")
def _dist(x, a, q, code):
    s = np.float32(0.0)
    if code == 0:
        for j in range(q.shape[0]):
            t = x[a, j] - q[j]
            s += t * t
        return s
    for j in range(q.shape[0]):
        s += x[a, j] * q[j]
    return -s


@nb.njit(cache=True, fastmath=True, inline="always")
def _dist_rows(x, a, b, code):
    s = np.float32(0.0)
    if code == 0:
        for j in range(x.shape[1]):
            t = x[a, j] - x[b, j]
            s += t * t
        return s
    for j in range(x.shape[1]):
        s += x[a, j] * x[b, j]
    return -s


@nb.njit(cache=True, inline="always")
def _beam_insert(bd, bi, bexp, size, d, i):
    """Insert (d, i) into the sorted beam; returns (new size, position or -1)."""
    cap = bd.shape[0]
    if size == cap and (d > bd[cap - 1] or (d == bd[cap - 1] and i >= bi[cap - 1])):
        return size, -1
    pos = size if size < cap else cap - 1
    while pos > 0 and (bd[pos - 1] > d or (bd[pos - 1] == d and bi[pos - 1] > i)):
        bd[pos] = bd[pos - 1]
        bi[pos] = bi[pos - 1]
        bexp[pos] = bexp[pos - 1]
        pos -= 1
    bd[pos] = d
    bi[pos] = i
    bexp[pos] = False
    return (size + 1 if size < cap else size), pos


@nb.njit(cache=True, inline="always")
def _next_tag(visited, tags, t):
    tags[t] += 1
    if tags[t] >= _TAG_LIMIT:
        visited[t, :] = 0
        tags[t] = 1
    return tags[t]


@nb.njit(cache=True, fastmath=True)
def _greedy(x, q, cur, curd, level, nbr_up, cnt_up, up_off, code):
    """Move to the closest neighbour until none is closer (upper-level routing, ef = 1)."""
    changed = True
    while changed:
        changed = False
        row = up_off[cur] + level - 1
        for e in range(cnt_up[row]):
            v = nbr_up[row, e]
            d = _dist(x, v, q, code)
            if d < curd:
                curd = d
                cur = v
                changed = True
    return cur, curd


@nb.njit(cache=True, fastmath=True)
def _beam_search(x, q, entry, level, nbr0, cnt0, nbr_up, cnt_up, up_off, code,
                 visited, t, tag, bd, bi, bexp, allowed, use_filter):
    """Best-first beam search on one level; the beam keeps the ``len(bd)`` best (allowed) nodes.

    With a filter, only allowed nodes enter the beam; a neighbour that is not
    allowed is looked through (its own neighbours are considered: a two-hop
    expansion in the ACORN spirit) so the search does not strand in
    disallowed regions.
    """
    size = 0
    visited[t, entry] = tag
    d0 = _dist(x, entry, q, code)
    if not use_filter or allowed[entry]:
        size, _ = _beam_insert(bd, bi, bexp, size, d0, entry)
    else:
        # seed the beam from the entry's neighbourhood
        size, _ = _expand(x, q, entry, level, nbr0, cnt0, nbr_up, cnt_up, up_off, code, visited, t, tag,
                          bd, bi, bexp, size, allowed, use_filter)
    cursor = 0
    while cursor < size:
        u = bi[cursor]
        bexp[cursor] = True
        size, first = _expand(x, q, u, level, nbr0, cnt0, nbr_up, cnt_up, up_off, code, visited, t, tag,
                              bd, bi, bexp, size, allowed, use_filter)
        # everything before min(first insert, cursor) is still expanded: resume the scan there
        cursor = min(cursor, first)
        while cursor < size and bexp[cursor]:
            cursor += 1
    return size


@nb.njit(cache=True, fastmath=True, inline="always")
def _expand(x, q, u, level, nbr0, cnt0, nbr_up, cnt_up, up_off, code, visited, t, tag,
            bd, bi, bexp, size, allowed, use_filter):
    """Insert u's unvisited neighbours; returns (size, lowest position written)."""
    first = bd.shape[0]
    if level == 0:
        nbr = nbr0
        row = u
        cnt = cnt0[u]
    else:
        nbr = nbr_up
        row = up_off[u] + level - 1
        cnt = cnt_up[row]
    for e in range(cnt):
        v = nbr[row, e]
        if visited[t, v] == tag:
            continue
        visited[t, v] = tag
        if use_filter and not allowed[v]:
            for e2 in range(cnt0[v]):
                w = nbr0[v, e2]
                if visited[t, w] == tag or not allowed[w]:
                    continue
                visited[t, w] = tag
                size, pos = _beam_insert(bd, bi, bexp, size, _dist(x, w, q, code), w)
                if 0 <= pos < first:
                    first = pos
            continue
        size, pos = _beam_insert(bd, bi, bexp, size, _dist(x, v, q, code), v)
        if 0 <= pos < first:
            first = pos
    return size, first


@nb.njit(cache=True)
def _query(queries, qi, normalize, qbuf):
    """Query qi, L2-normalised into qbuf for cosine as ``normalize_rows`` does (zero rows stay
    zero); no fastmath, so the division matches numpy's."""
    q = queries[qi]
    if not normalize:
        return q
    s = np.float32(0.0)
    for j in range(q.shape[0]):
        s += q[j] * q[j]
    norm = np.sqrt(s)
    if norm == 0:
        norm = np.float32(1.0)
    for j in range(q.shape[0]):
        qbuf[j] = q[j] / norm
    return qbuf


@nb.njit(cache=True, fastmath=True)
def _search_one(x, queries, qi, nbr0, cnt0, nbr_up, cnt_up, up_off, entry, max_level, k, code, normalize,
                labels, offset, visited, tags, t, allowed, use_filter, qbuf, bd, bi, bexp, out_d, out_ids):
    """Writes final results (labels, distances + ``offset``), padded with (inf, -1), so the
    caller needs no post-processing."""
    q = _query(queries, qi, normalize, qbuf)
    cur = entry
    curd = _dist(x, cur, q, code)
    for level in range(max_level, 0, -1):
        cur, curd = _greedy(x, q, cur, curd, level, nbr_up, cnt_up, up_off, code)
    tag = _next_tag(visited, tags, t)
    size = _beam_search(x, q, cur, 0, nbr0, cnt0, nbr_up, cnt_up, up_off, code, visited, t, tag,
                        bd, bi, bexp, allowed, use_filter)
    found = min(k, size)
    for j in range(found):
        out_d[j] = bd[j] + offset
        out_ids[j] = labels[bi[j]]
    for j in range(found, k):
        out_d[j] = np.inf
        out_ids[j] = -1


@nb.njit(cache=True, parallel=True, fastmath=True)
def search_batch(x, queries, nbr0, cnt0, nbr_up, cnt_up, up_off, entry, max_level, ef, k, code, normalize,
                 labels, offset, visited, tags, allowed, use_filter, out_d, out_ids):
    """k-NN of each query (prange over worker threads, each with its own visited row)."""
    nq = queries.shape[0]
    nthreads = visited.shape[0]
    for t in nb.prange(nthreads):
        bd = np.empty(ef, np.float32)
        bi = np.empty(ef, np.int64)
        bexp = np.empty(ef, np.bool_)
        qbuf = np.empty(queries.shape[1], np.float32)
        for qi in range(t, nq, nthreads):
            _search_one(x, queries, qi, nbr0, cnt0, nbr_up, cnt_up, up_off, entry, max_level, k, code, normalize,
                        labels, offset, visited, tags, t, allowed, use_filter, qbuf, bd, bi, bexp,
                        out_d[qi], out_ids[qi])


@nb.njit(cache=True, fastmath=True)
def search_serial(x, queries, nbr0, cnt0, nbr_up, cnt_up, up_off, entry, max_level, ef, k, code, normalize,
                  labels, offset, visited, tags, allowed, use_filter, out_d, out_ids):
    """The same search on the calling thread: no parallel launch for one or two queries."""
    bd = np.empty(ef, np.float32)
    bi = np.empty(ef, np.int64)
    bexp = np.empty(ef, np.bool_)
    qbuf = np.empty(queries.shape[1], np.float32)
    for qi in range(queries.shape[0]):
        _search_one(x, queries, qi, nbr0, cnt0, nbr_up, cnt_up, up_off, entry, max_level, k, code, normalize,
                    labels, offset, visited, tags, 0, allowed, use_filter, qbuf, bd, bi, bexp, out_d[qi], out_ids[qi])


@nb.njit(cache=True, parallel=True, fastmath=True)
def insertion_candidates(x, nodes, levels, nbr0, cnt0, nbr_up, cnt_up, up_off, entry, max_level, code,
                         visited, tags, cand_off, cand_ids, cand_d, cand_cnt):
    """Phase 1 of a batch insert: each new node searches the (read-only) graph in parallel.

    Candidates for node b at level l go to row ``cand_off[b] + l``.
    """
    nb_nodes = nodes.shape[0]
    nthreads = visited.shape[0]
    ef = cand_ids.shape[1]
    dummy = np.zeros(1, np.bool_)
    for t in nb.prange(nthreads):
        bd = np.empty(ef, np.float32)
        bi = np.empty(ef, np.int64)
        bexp = np.empty(ef, np.bool_)
        for b in range(t, nb_nodes, nthreads):
            node = nodes[b]
            q = x[node]
            cur = entry
            curd = _dist(x, cur, q, code)
            top = min(levels[b], max_level)
            for level in range(max_level, top, -1):
                cur, curd = _greedy(x, q, cur, curd, level, nbr_up, cnt_up, up_off, code)
            for level in range(top, -1, -1):
                tag = _next_tag(visited, tags, t)
                size = _beam_search(x, q, cur, level, nbr0, cnt0, nbr_up, cnt_up, up_off, code, visited, t, tag,
                                    bd, bi, bexp, dummy, False)
                row = cand_off[b] + level
                cand_cnt[row] = size
                for j in range(size):
                    cand_ids[row, j] = bi[j]
                    cand_d[row, j] = bd[j]
                cur = bi[0]


@nb.njit(cache=True, fastmath=True)
def _select_heuristic(x, ids, dists, n, m, code, out):
    """Malkov's heuristic: keep a candidate only if it is closer to the base than to every kept one."""
    kept = 0
    for c in range(n):
        if kept >= m:
            break
        cid = ids[c]
        good = True
        for r in range(kept):
            if _dist_rows(x, cid, out[r], code) < dists[c]:
                good = False
                break
        if good:
            out[kept] = cid
            kept += 1
    return kept


@nb.njit(cache=True, fastmath=True)
def _add_reverse(x, e, node, d_en, nbr, cnt, row, mmax, code, tmp_ids, tmp_d, sel):
    """Link e -> node; when e is full, re-select its neighbours with the heuristic."""
    c = cnt[row]
    for j in range(c):
        if nbr[row, j] == node:
            return
    if c < mmax:
        nbr[row, c] = node
        cnt[row] = c + 1
        return
    # gather existing + new, sorted by distance to e
    n = 0
    for j in range(c):
        v = nbr[row, j]
        tmp_ids[n] = v
        tmp_d[n] = _dist_rows(x, e, v, code)
        n += 1
    tmp_ids[n] = node
    tmp_d[n] = d_en
    n += 1
    order = np.argsort(tmp_d[:n], kind="mergesort")
    sids = tmp_ids[:n][order].copy()
    sd = tmp_d[:n][order].copy()
    kept = _select_heuristic(x, sids, sd, n, mmax, code, sel)
    for j in range(kept):
        nbr[row, j] = sel[j]
    cnt[row] = kept


@nb.njit(cache=True, fastmath=True)
def link_batch(x, nodes, levels, nbr0, cnt0, nbr_up, cnt_up, up_off, max_level, m, code,
               cand_off, cand_ids, cand_d, cand_cnt):
    """Phase 2 of a batch insert: connect each node to its selected neighbours, serially."""
    m0 = nbr0.shape[1]
    width = max(m0, cand_ids.shape[1]) + 1
    tmp_ids = np.empty(width, np.int64)
    tmp_d = np.empty(width, np.float32)
    sel = np.empty(width, np.int64)
    for b in range(nodes.shape[0]):
        node = nodes[b]
        top = min(levels[b], max_level)
        for level in range(top, -1, -1):
            row_c = cand_off[b] + level
            n = cand_cnt[row_c]
            kept = _select_heuristic(x, cand_ids[row_c], cand_d[row_c], n, m, code, sel)
            if level == 0:
                for j in range(kept):
                    nbr0[node, j] = sel[j]
                cnt0[node] = kept
            else:
                r = up_off[node] + level - 1
                for j in range(kept):
                    nbr_up[r, j] = sel[j]
                cnt_up[r] = kept
            chosen = sel[:kept].copy()
            for j in range(kept):
                e = chosen[j]
                d_en = _dist_rows(x, e, node, code)
                if level == 0:
                    _add_reverse(x, e, node, d_en, nbr0, cnt0, e, m0, code, tmp_ids, tmp_d, sel)
                else:
                    _add_reverse(x, e, node, d_en, nbr_up, cnt_up, up_off[e] + level - 1, m, code,
                                 tmp_ids, tmp_d, sel)
