"""Numba kernels of the HNSW graph: beam search on SQ8 codes or floats, batched parallel insertion
(search and forward links, then reverse links grouped by row).

Graph layout (all flat arrays, see :mod:`shoal.index.hnsw`):

* ``links[row]`` (int32) is node ``row``'s level-0 block: ``links[row, 0]`` neighbours in
  ``links[row, 1:1 + links[row, 0]]``. With in-graph codes the same row also holds the node's
  SQ8 code: ``codes`` is a uint8 view of the same memory and the code is ``codes[row, c0:c0 + dim]``,
  so one walk step reads a node's code and, when it is expanded, its links from one block.
* a node with level L >= 1 owns rows ``up_off[node] + l - 1`` (l = 1..L) of ``up``, laid out like
  ``links`` without codes (column 0 is the count).

Distances are "reduced": squared L2 (code 0) or the negative dot product (code 1, for cosine and ip).
SQ8 decodes dimension j as ``lo[j] + scale[j] * c``; a query is transformed once
(:func:`_encode_query`) so a coded distance is one fused multiply-add per dimension. A walk on codes
re-scores its final beam at full precision, so results carry exact distances.

Every search kernel is ``nogil``: concurrent Python threads search one index at once. Scratch is
per call: the caller lends each call its own ``visited`` row(s) (the last element holds the row's
epoch tag, so a row is reused without clearing), and beams are allocated inside the kernel.
"""
from __future__ import annotations

import numba as nb
import numpy as np
from numba.core import types
from numba.extending import overload

# A walk step prefetches every neighbour's visited slot and every cache line of its code or vector
# before it evaluates the first (hnswlib prefetches one line per neighbour).
from .prefetch_numba import LINE_BYTES, prefetch as _prefetch

#: Visited marks are uint16 epochs, as in hnswlib: half the cache footprint of int32 for the one
#: random write per evaluated node; a row is cleared once every 65,535 searches (one pass over n).
VISITED_DTYPE = np.uint16
_TAG_LIMIT = 65_535


@nb.njit(cache=True, fastmath=True, inline="always")
def _exact(x, a, q, code):
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
def _exact_rows(x, a, b, code):
    s = np.float32(0.0)
    if code == 0:
        for j in range(x.shape[1]):
            t = x[a, j] - x[b, j]
            s += t * t
        return s
    for j in range(x.shape[1]):
        s += x[a, j] * x[b, j]
    return -s


@nb.njit(cache=True, fastmath=True, inline="always")
def _coded(codes, a, c0, qa, scale, base, code):
    """Reduced distance of the query (transformed into ``qa``) to node a's SQ8 code. The row is sliced
    first: indexing ``codes[a, c0 + j]`` made LLVM keep a negative-index check per element and the loop
    ran 4x slower, unvectorised."""
    row = codes[a, c0:c0 + qa.shape[0]]
    s = np.float32(0.0)
    if code == 0:
        for j in range(qa.shape[0]):
            t = qa[j] - scale[j] * np.float32(row[j])
            s += t * t
        return s
    for j in range(qa.shape[0]):
        s += qa[j] * np.float32(row[j])
    return base - s


def _on_codes(codes):
    """Whether a walk over ``codes`` is on SQ8 codes (a compile-time constant)."""


@overload(_on_codes, inline="always")
def _on_codes_impl(codes):
    coded = codes.dtype == types.uint8
    return lambda codes: coded


@nb.njit(cache=True, fastmath=True, inline="always")
def _dist(x, codes, c0, v, q, qa, scale, base, code):
    """Walk distance to node v: on its SQ8 code when ``codes`` is the uint8 graph, else exact (the
    float walk passes ``codes = x``). The branch is a compile-time constant: a run-time flag in this
    inner loop made the float walk 5x slower (measured on 5,000 50-d rows). Inlined: as a call (an
    overload on the type) it cost 12% of a one-query search (400k GloVe-50, ef 64: 71 -> 62 µs)."""
    if _on_codes(codes):
        return _coded(codes, v, c0, qa, scale, base, code)
    return _exact(x, v, q, code)


@nb.njit(cache=True, fastmath=True)
def _encode_query(q, lo, scale, code, qa):
    """``qa`` and the constant such that ``_coded`` equals the distance to the decoded vector:
    L2: ``qa = q - lo``; dot: ``qa = q * scale`` and ``base = -q . lo``."""
    base = np.float32(0.0)
    if code == 0:
        for j in range(q.shape[0]):
            qa[j] = q[j] - lo[j]
        return base
    for j in range(q.shape[0]):
        qa[j] = q[j] * scale[j]
        base -= q[j] * lo[j]
    return base


@nb.njit(cache=True, parallel=True, fastmath=True, nogil=True)
def encode_sq8(x, lo, scale, codes, c0):
    """SQ8 codes of every row of ``x`` into ``codes[:, c0:c0 + dim]`` (rounded, clipped to 0..255)."""
    for i in nb.prange(x.shape[0]):
        for j in range(x.shape[1]):
            c = np.float32((x[i, j] - lo[j]) / scale[j] + np.float32(0.5))
            c = min(max(c, np.float32(0.0)), np.float32(255.0))
            codes[i, c0 + j] = np.uint8(c)


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
def _next_tag(vis):
    """A fresh epoch for the visited row ``vis`` (its last element); cleared once every 65,535 uses."""
    last = vis.shape[0] - 1
    tag = vis[last] + 1
    if tag >= _TAG_LIMIT:
        vis[:] = 0
        tag = 1
    vis[last] = tag
    return tag


@nb.njit(cache=True, fastmath=True)
def _greedy(x, codes, c0, q, qa, scale, base, code, cur, curd, level, up, up_off):
    """Move to the closest neighbour until none is closer (upper-level routing, ef = 1)."""
    changed = True
    while changed:
        changed = False
        row = up_off[cur] + level - 1
        for e in range(up[row, 0]):
            v = up[row, 1 + e]
            d = _dist(x, codes, c0, v, q, qa, scale, base, code)
            if d < curd:
                curd = d
                cur = v
                changed = True
    return cur, curd


@nb.njit(cache=True, fastmath=True, inline="always")
def _expand(x, codes, c0, q, qa, scale, base, code, u, level, links, up, up_off, vis, tag,
            bd, bi, bexp, size, allowed, use_filter):
    """Insert u's unvisited neighbours; returns (size, lowest position written)."""
    first = bd.shape[0]
    if level == 0:
        nbr = links
        row = u
    else:
        nbr = up
        row = up_off[u] + level - 1
    cnt = nbr[row, 0]
    step = LINE_BYTES // codes.itemsize
    for e in range(cnt):  # every line of each payload: 50-d floats span 4; prefetching one cost 1.9x (400k GloVe)
        v = nbr[row, 1 + e]
        _prefetch(vis, v, 0)
        for j in range(c0, c0 + q.shape[0], step):
            _prefetch(codes, v, j)
    for e in range(cnt):
        v = nbr[row, 1 + e]
        if vis[v] == tag:
            continue
        vis[v] = tag
        if use_filter and not allowed[v]:
            for e2 in range(links[v, 0]):
                w = links[v, 1 + e2]
                if vis[w] == tag or not allowed[w]:
                    continue
                vis[w] = tag
                size, pos = _beam_insert(bd, bi, bexp, size, _dist(x, codes, c0, w, q, qa, scale, base, code), w)
                if 0 <= pos < first:
                    first = pos
            continue
        size, pos = _beam_insert(bd, bi, bexp, size, _dist(x, codes, c0, v, q, qa, scale, base, code), v)
        if 0 <= pos < first:
            first = pos
    return size, first


@nb.njit(cache=True, fastmath=True)
def _beam_search(x, codes, c0, q, qa, scale, base, code, entry, level, links, up, up_off,
                 vis, tag, bd, bi, bexp, allowed, use_filter):
    """Best-first beam search on one level; the beam keeps the ``len(bd)`` best (allowed) nodes.

    With a filter, only allowed nodes enter the beam; a neighbour that is not allowed is looked
    through (its own neighbours are considered: a two-hop expansion in the ACORN spirit) so the
    search does not strand in disallowed regions.
    """
    size = 0
    vis[entry] = tag
    if not use_filter or allowed[entry]:
        size, _ = _beam_insert(bd, bi, bexp, size, _dist(x, codes, c0, entry, q, qa, scale, base, code), entry)
    else:  # seed the beam from the entry's neighbourhood
        size, _ = _expand(x, codes, c0, q, qa, scale, base, code, entry, level, links, up, up_off, vis, tag,
                          bd, bi, bexp, size, allowed, use_filter)
    cursor = 0
    while cursor < size:
        u = bi[cursor]
        bexp[cursor] = True
        size, first = _expand(x, codes, c0, q, qa, scale, base, code, u, level, links, up, up_off, vis, tag,
                              bd, bi, bexp, size, allowed, use_filter)
        # everything before min(first insert, cursor) is still expanded: resume the scan there
        cursor = min(cursor, first)
        while cursor < size and bexp[cursor]:
            cursor += 1
    return size


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


@nb.njit(cache=True, fastmath=True, inline="always")
def _top_insert(rd, ri, size, d, i):
    """Keep the ``len(rd)`` best (distance, row) pairs sorted; ties by the lower row."""
    cap = rd.shape[0]
    if size == cap and (d > rd[cap - 1] or (d == rd[cap - 1] and i >= ri[cap - 1])):
        return size
    pos = size if size < cap else cap - 1
    while pos > 0 and (rd[pos - 1] > d or (rd[pos - 1] == d and ri[pos - 1] > i)):
        rd[pos] = rd[pos - 1]
        ri[pos] = ri[pos - 1]
        pos -= 1
    rd[pos] = d
    ri[pos] = i
    return size + 1 if size < cap else size


@nb.njit(cache=True, fastmath=True)
def _search_one(x, codes, c0, lo, scale, queries, qi, links, up, up_off, entry, max_level, k, code,
                normalize, labels, offset, vis, allowed, use_filter, qbuf, qa, bd, bi, bexp, rd, ri, out_d, out_ids):
    """Writes final results (labels, distances + ``offset``), padded with (inf, -1), so the caller needs
    no post-processing; a walk on codes re-scores its whole beam exactly first. Returns the count found."""
    q = _query(queries, qi, normalize, qbuf)
    base = _encode_query(q, lo, scale, code, qa) if _on_codes(codes) else np.float32(0.0)
    cur = entry
    curd = _dist(x, codes, c0, cur, q, qa, scale, base, code)
    for level in range(max_level, 0, -1):
        cur, curd = _greedy(x, codes, c0, q, qa, scale, base, code, cur, curd, level, up, up_off)
    tag = _next_tag(vis)
    size = _beam_search(x, codes, c0, q, qa, scale, base, code, cur, 0, links, up, up_off, vis, tag,
                        bd, bi, bexp, allowed, use_filter)
    if _on_codes(codes):
        found = 0
        for j in range(size):
            found = _top_insert(rd, ri, found, _exact(x, bi[j], q, code), bi[j])
    else:
        found = min(k, size)
        for j in range(found):
            rd[j] = bd[j]
            ri[j] = bi[j]
    for j in range(found):
        out_d[j] = rd[j] + offset
        out_ids[j] = labels[ri[j]]
    for j in range(found, k):
        out_d[j] = np.inf
        out_ids[j] = -1
    return found


@nb.njit(cache=True, parallel=True, fastmath=True, nogil=True)
def search_batch(x, codes, c0, lo, scale, queries, links, up, up_off, entry, max_level, ef, k, code,
                 normalize, labels, offset, visited, allowed, use_filter, out_d, out_ids):
    """k-NN of each query (prange over the rows of this call's ``visited``); returns how many queries
    found fewer than k rows."""
    nq = queries.shape[0]
    nthreads = visited.shape[0]
    short = np.zeros(nthreads, np.int64)
    for t in nb.prange(nthreads):
        bd = np.empty(ef, np.float32)
        bi = np.empty(ef, np.int64)
        bexp = np.empty(ef, np.bool_)
        rd = np.empty(k, np.float32)
        ri = np.empty(k, np.int64)
        qbuf = np.empty(queries.shape[1], np.float32)
        qa = np.empty(queries.shape[1], np.float32)
        for qi in range(t, nq, nthreads):
            found = _search_one(x, codes, c0, lo, scale, queries, qi, links, up, up_off, entry, max_level, k,
                                code, normalize, labels, offset, visited[t], allowed, use_filter, qbuf, qa, bd, bi,
                                bexp, rd, ri, out_d[qi], out_ids[qi])
            if found < k:
                short[t] += 1
    return short.sum()


@nb.njit(cache=True, fastmath=True, nogil=True)
def search_serial(x, codes, c0, lo, scale, queries, links, up, up_off, entry, max_level, ef, k, code,
                  normalize, labels, offset, visited, allowed, use_filter, out_d, out_ids):
    """The same search on the calling thread (no parallel launch for one or two queries), GIL released."""
    bd = np.empty(ef, np.float32)
    bi = np.empty(ef, np.int64)
    bexp = np.empty(ef, np.bool_)
    rd = np.empty(k, np.float32)
    ri = np.empty(k, np.int64)
    qbuf = np.empty(queries.shape[1], np.float32)
    qa = np.empty(queries.shape[1], np.float32)
    short = 0
    for qi in range(queries.shape[0]):
        found = _search_one(x, codes, c0, lo, scale, queries, qi, links, up, up_off, entry, max_level, k, code,
                            normalize, labels, offset, visited[0], allowed, use_filter, qbuf, qa, bd, bi, bexp, rd, ri,
                            out_d[qi], out_ids[qi])
        if found < k:
            short += 1
    return short


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
            if _exact_rows(x, cid, out[r], code) < dists[c]:
                good = False
                break
        if good:
            out[kept] = cid
            kept += 1
    return kept


@nb.njit(cache=True, fastmath=True)
def _add_reverse(x, e, node, d_en, nbr, row, mmax, code, tmp_ids, tmp_d, sel):
    """Link e -> node; when e is full, re-select its neighbours with the heuristic."""
    c = nbr[row, 0]
    for j in range(c):
        if nbr[row, 1 + j] == node:
            return
    if c < mmax:
        nbr[row, 1 + c] = node
        nbr[row, 0] = c + 1
        return
    # gather existing + new, sorted by distance to e
    n = 0
    for j in range(c):
        v = nbr[row, 1 + j]
        tmp_ids[n] = v
        tmp_d[n] = _exact_rows(x, e, v, code)
        n += 1
    tmp_ids[n] = node
    tmp_d[n] = d_en
    n += 1
    order = np.argsort(tmp_d[:n], kind="mergesort")
    sids = tmp_ids[:n][order].copy()
    sd = tmp_d[:n][order].copy()
    kept = _select_heuristic(x, sids, sd, n, mmax, code, sel)
    for j in range(kept):
        nbr[row, 1 + j] = sel[j]
    nbr[row, 0] = kept


@nb.njit(cache=True, fastmath=True)
def _rescore_beam(x, q, code, bd, bi, size):
    """Exact distances of the beam's nodes, re-sorted (ties by row): the heuristic needs them."""
    for j in range(size):
        bd[j] = _exact(x, bi[j], q, code)
    for j in range(1, size):  # insertion sort in place: a walk on codes leaves the beam nearly in order
        _top_insert(bd, bi, j, bd[j], bi[j])


@nb.njit(cache=True, parallel=True, fastmath=True, nogil=True)
def link_forward(x, codes, c0, lo, scale, nodes, levels, links, up, up_off, entry, max_level, m, code, visited, ef,
                 cand_off, sel_ids, sel_cnt):
    """Phase 1 of a batch insert, in parallel: each new node searches the graph, keeps up to ``m``
    neighbours per level with the heuristic and writes them into its own rows. No node of the batch is
    reachable yet (nothing links to it), so every thread reads the graph as it was before the batch and
    writes only rows nobody else reads. The search walks on ``codes`` as a query does (SQ8 when the index
    walks codes, else ``codes = x``); the beam is re-scored exactly before the heuristic, which compares
    exact distances only.

    Node b's choice at level l also goes to row ``cand_off[b] + l`` of ``sel_ids`` for :func:`link_reverse`.
    """
    nb_nodes = nodes.shape[0]
    nthreads = visited.shape[0]
    dummy = np.zeros(1, np.bool_)
    for t in nb.prange(nthreads):
        bd = np.empty(ef, np.float32)
        bi = np.empty(ef, np.int64)
        bexp = np.empty(ef, np.bool_)
        keep = np.empty(m, np.int64)
        qa = np.empty(x.shape[1], np.float32)
        vis = visited[t]
        for b in range(t, nb_nodes, nthreads):
            node = nodes[b]
            q = x[node]
            base = _encode_query(q, lo, scale, code, qa) if _on_codes(codes) else np.float32(0.0)
            cur = entry
            curd = _dist(x, codes, c0, cur, q, qa, scale, base, code)
            top = min(levels[b], max_level)
            for level in range(max_level, top, -1):
                cur, curd = _greedy(x, codes, c0, q, qa, scale, base, code, cur, curd, level, up, up_off)
            for level in range(top, -1, -1):
                tag = _next_tag(vis)
                size = _beam_search(x, codes, c0, q, qa, scale, base, code, cur, level, links,
                                    up, up_off, vis, tag, bd, bi, bexp, dummy, False)
                if _on_codes(codes):
                    _rescore_beam(x, q, code, bd, bi, size)
                kept = _select_heuristic(x, bi, bd, size, m, code, keep)
                nbr = links if level == 0 else up
                r = node if level == 0 else up_off[node] + level - 1
                row = cand_off[b] + level
                for j in range(kept):
                    nbr[r, 1 + j] = keep[j]
                    sel_ids[row, j] = keep[j]
                nbr[r, 0] = kept
                sel_cnt[row] = kept
                cur = bi[0]


@nb.njit(cache=True, parallel=True, fastmath=True, nogil=True)
def link_reverse(x, nodes, levels, links, up, up_off, max_level, m, code, cand_off, sel_ids, sel_cnt, chunks):
    """Phase 2 of a batch insert, in parallel: link every chosen neighbour back to its new node, pruning
    full lists with the heuristic. The reverse edges are grouped by the row they change and each group
    is applied in batch order by one thread, so every row sees the same sequence of changes as a serial
    pass would (rows are independent): the graph does not depend on the thread count. ``chunks`` ranges
    of groups balance the threads."""
    n = x.shape[0]
    total = 0
    for row in range(sel_cnt.shape[0]):
        total += sel_cnt[row]
    key = np.empty(total, np.int64)  # level * n + target row, in batch order
    src = np.empty(total, np.int64)
    i = 0
    for b in range(nodes.shape[0]):
        for level in range(min(levels[b], max_level), -1, -1):
            row = cand_off[b] + level
            for j in range(sel_cnt[row]):
                key[i] = level * n + sel_ids[row, j]
                src[i] = nodes[b]
                i += 1
    order = np.argsort(key, kind="mergesort")  # stable: batch order within a group
    starts = np.empty(total + 1, np.int64)
    groups = 0
    for p in range(total):
        if p == 0 or key[order[p]] != key[order[p - 1]]:
            starts[groups] = p
            groups += 1
    starts[groups] = total
    m0 = 2 * m
    chunks = min(groups, chunks)
    for c in nb.prange(chunks):
        tmp_ids = np.empty(m0 + 1, np.int64)
        tmp_d = np.empty(m0 + 1, np.float32)
        sel = np.empty(m0 + 1, np.int64)
        for g in range(c * groups // chunks, (c + 1) * groups // chunks):
            for p in range(starts[g], starts[g + 1]):
                i = order[p]
                level = key[i] // n
                e = key[i] - level * n
                node = src[i]
                d_en = _exact_rows(x, e, node, code)
                if level == 0:
                    _add_reverse(x, e, node, d_en, links, e, m0, code, tmp_ids, tmp_d, sel)
                else:
                    _add_reverse(x, e, node, d_en, up, up_off[e] + level - 1, m, code, tmp_ids, tmp_d, sel)


@nb.njit(cache=True, nogil=True)
def bfs_order(links, n, entry):
    """Rows [0, n) in breadth-first order over level-0 links from ``entry`` (rows it never reaches
    follow, each starting its own search), so a node's neighbours mostly sit a few rows away."""
    order = np.empty(n, np.int64)
    seen = np.zeros(n, np.bool_)
    tail = 0
    head = 0
    for start in range(-1, n):
        root = entry if start < 0 else start
        if seen[root]:
            continue
        seen[root] = True
        order[tail] = root
        tail += 1
        while head < tail:
            u = order[head]
            head += 1
            for e in range(links[u, 0]):
                v = links[u, 1 + e]
                if not seen[v]:
                    seen[v] = True
                    order[tail] = v
                    tail += 1
    return order


@nb.njit(cache=True, parallel=True, nogil=True)
def renumber_links(nbr, rows, inv):
    """Map the neighbour ids of ``nbr[:rows]`` (count in column 0) through ``inv``."""
    for r in nb.prange(rows):
        for e in range(nbr[r, 0]):
            nbr[r, 1 + e] = inv[nbr[r, 1 + e]]
