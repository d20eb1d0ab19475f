"""Numba k-d tree kernels: parallel build, exact / leaf-bounded k-NN, radius search, filter counts.

Layout (flat arrays, pre-order): node ``i`` covers points ``[start[i], end[i])`` of
the tree-ordered point array, its left child is ``i + 1`` and its right child
``right[i]`` (``-1`` for a leaf). Every node stores the tight bounding box of
its points (``bmin``/``bmax``); boxes bound distances better than split planes
and make the pruning test exact (see :func:`_box_bound`).

Splits are on the dimension of widest spread at the median position, so the
tree is balanced whatever the data (skewed, duplicate-heavy, identical
points) and the size of every subtree is a function of its point count:
:func:`count_nodes` gives the pre-order numbering without building, which is
what lets subtrees build in parallel.

Distances are accumulated in float64 and rounded once to float32. For l2 the
box bound is computed with the same operations in the same order as a point
distance, and float rounding is monotone, so ``bound <= distance`` holds
exactly for every point in the box: pruning on ``bound > k-th distance`` never
drops a point that ties, and ties break by lower label as in the flat index.
For cosine (``1 - q.x`` on normalised rows) the bound is ``|q - box|^2 / 2``
less a margin for rows that are unit length only to float32 precision (zero
rows, kept as zeros, are bounded too: they sit at distance 1).
"""
from __future__ import annotations

import numba as nb
import numpy as np

from .heap_numba import heap_push, heap_sort

#: Metric codes shared with :data:`shoal.index.kernels.topk.METRIC_CODES`.
L2, COSINE = 0, 1
#: Stack slots per query; depth of a median-split tree is < 64 for any n < 2**63.
_STACK = 160
#: float32-normalised rows have |x|^2 = 1 +- ~1e-6, so |q - x|^2 / 2 can exceed 1 - q.x by that much.
_COSINE_SLACK = 1e-5
#: Queries per parallel task (the search stack is allocated once per task).
_CHUNK = 64


@nb.njit(cache=True)
def count_nodes(n, leaf_size):
    """Nodes of the tree over ``n`` points (median splits: two distinct sizes per level)."""
    if n == 0:
        return 0
    total = 0
    a, ca, cb = n, 1, 0  # ca subtrees of size a, cb subtrees of size a + 1
    while ca + cb > 0:
        half = a // 2
        na, nb_ = 0, 0
        for v, c in ((a, ca), (a + 1, cb)):
            if c == 0:
                continue
            total += c
            if v > leaf_size:
                for child in (v // 2, v - v // 2):
                    if child == half:
                        na += c
                    else:
                        nb_ += c
        a, ca, cb = half, na, nb_
    return total


@nb.njit(cache=True, inline="always")
def _swap(keys, perm, i, j):
    keys[i], keys[j] = keys[j], keys[i]
    perm[i], perm[j] = perm[j], perm[i]


@nb.njit(cache=True)
def _select(keys, perm, lo, hi, nth):
    """Partially sort ``keys[lo:hi]`` (and ``perm`` alongside) so position ``nth`` holds its order statistic."""
    while hi - lo > 1:
        mid = (lo + hi - 1) // 2
        # median of three as pivot, Hoare partition (balanced on runs of equal keys); the pivot sits
        # left of hi - 1, which guarantees lo <= j < hi - 1, so both sides shrink
        if keys[mid] < keys[lo]:
            _swap(keys, perm, mid, lo)
        if keys[hi - 1] < keys[lo]:
            _swap(keys, perm, hi - 1, lo)
        if keys[hi - 1] < keys[mid]:
            _swap(keys, perm, hi - 1, mid)
        pivot = keys[mid]
        i, j = lo - 1, hi
        while True:
            i += 1
            while keys[i] < pivot:
                i += 1
            j -= 1
            while keys[j] > pivot:
                j -= 1
            if i >= j:
                break
            _swap(keys, perm, i, j)
        if nth <= j:
            hi = j + 1
        else:
            lo = j + 1


@nb.njit(cache=True)
def _build_from(x, perm, keys, leaf_size, node0, lo0, hi0, max_depth,
                bmin, bmax, start, end, right, frontier):
    """Build the subtree ``node0`` over ``perm[lo0:hi0]``; nodes at ``max_depth`` go to ``frontier``.

    Returns how many ``(node, lo, hi)`` rows were written to ``frontier``.
    """
    d = x.shape[1]
    stack = np.empty((_STACK, 4), np.int64)
    stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = node0, lo0, hi0, 0
    sp = 1
    nf = 0
    while sp > 0:
        sp -= 1
        node, lo, hi, depth = stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3]
        if depth == max_depth and hi - lo > leaf_size:
            frontier[nf, 0], frontier[nf, 1], frontier[nf, 2] = node, lo, hi
            nf += 1
            continue
        for c in range(d):
            bmin[node, c] = x[perm[lo], c]
            bmax[node, c] = x[perm[lo], c]
        for p in range(lo + 1, hi):
            row = perm[p]
            for c in range(d):
                v = x[row, c]
                if v < bmin[node, c]:
                    bmin[node, c] = v
                elif v > bmax[node, c]:
                    bmax[node, c] = v
        start[node], end[node] = lo, hi
        if hi - lo <= leaf_size:
            right[node] = -1
            continue
        dim, spread = 0, -1.0
        for c in range(d):
            s = np.float64(bmax[node, c]) - np.float64(bmin[node, c])
            if s > spread:
                dim, spread = c, s
        for p in range(lo, hi):
            keys[p] = x[perm[p], dim]
        mid = lo + (hi - lo) // 2
        _select(keys, perm, lo, hi, mid)
        rnode = node + 1 + count_nodes(mid - lo, leaf_size)
        right[node] = rnode
        stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3] = rnode, mid, hi, depth + 1
        stack[sp + 1, 0], stack[sp + 1, 1], stack[sp + 1, 2], stack[sp + 1, 3] = node + 1, lo, mid, depth + 1
        sp += 2
    return nf


@nb.njit(cache=True, parallel=True)
def build(x, leaf_size, top_depth):
    """Build over all rows of ``x``: ``(perm, bmin, bmax, start, end, right)``.

    The top ``top_depth`` levels build sequentially; the subtrees below them in parallel.
    """
    n, d = x.shape
    nn = count_nodes(n, leaf_size)
    perm = np.arange(n, dtype=np.int64)
    keys = np.empty(n, np.float32)
    bmin = np.empty((nn, d), np.float32)
    bmax = np.empty((nn, d), np.float32)
    start = np.empty(nn, np.int64)
    end = np.empty(nn, np.int64)
    right = np.empty(nn, np.int64)
    if n == 0:
        return perm, bmin, bmax, start, end, right
    frontier = np.empty((1 << top_depth, 3), np.int64)
    nf = _build_from(x, perm, keys, leaf_size, 0, 0, n, top_depth, bmin, bmax, start, end, right, frontier)
    unused = np.empty((0, 3), np.int64)
    for t in nb.prange(nf):
        _build_from(x, perm, keys, leaf_size, frontier[t, 0], frontier[t, 1], frontier[t, 2], -1,
                    bmin, bmax, start, end, right, unused)
    return perm, bmin, bmax, start, end, right


@nb.njit(cache=True)
def node_counts(mask, start, end, right):
    """Allowed points under each node (children have higher numbers than parents)."""
    nn = start.shape[0]
    counts = np.zeros(nn, np.int64)
    for i in range(nn - 1, -1, -1):
        if right[i] < 0:
            s = 0
            for p in range(start[i], end[i]):
                s += mask[p]
            counts[i] = s
        else:
            counts[i] = counts[i + 1] + counts[right[i]]
    return counts


@nb.njit(cache=True, inline="always")
def _point_dist(q, x, row, code):
    acc = 0.0
    if code == L2:
        for c in range(q.shape[0]):
            t = np.float64(q[c]) - np.float64(x[row, c])
            acc += t * t
        return np.float32(acc)
    for c in range(q.shape[0]):
        acc += np.float64(q[c]) * np.float64(x[row, c])
    return np.float32(1.0 - acc)


@nb.njit(cache=True, inline="always")
def _point_dist_within(q, x, row, code, worst):
    """Distance, or inf once an l2 partial sum already exceeds ``worst`` (exact: partial sums only grow)."""
    if code != L2:
        return _point_dist(q, x, row, code)
    acc = 0.0
    for c in range(q.shape[0]):
        t = np.float64(q[c]) - np.float64(x[row, c])
        acc += t * t
        if (c & 3) == 3 and np.float32(acc) > worst:
            return np.float32(np.inf)
    return np.float32(acc)


@nb.njit(cache=True, inline="always")
def _box_bound(q, bmin, bmax, node, code):
    """Lower bound on the distance from ``q`` to any point in the node's box (same float ops as l2)."""
    acc = 0.0
    for c in range(q.shape[0]):
        v = np.float64(q[c])
        lo = np.float64(bmin[node, c])
        hi = np.float64(bmax[node, c])
        t = 0.0
        if v < lo:
            t = lo - v
        elif v > hi:
            t = v - hi
        acc += t * t
    if code == L2:
        return np.float32(acc)
    return np.float32(acc * 0.5 - _COSINE_SLACK)


@nb.njit(cache=True, inline="always")
def _skip(node, counts, use_counts):
    return use_counts and counts[node] == 0


@nb.njit(cache=True)
def _knn_one(q, xs, labels, ntree, bmin, bmax, start, end, right, mask, use_mask, counts, use_counts,
             code, max_leaves, dr, ir, stack, sbound):
    """k nearest rows into the heap ``dr``/``ir`` (:mod:`.heap_numba`; the caller sorts it)."""
    for row in range(ntree, xs.shape[0]):  # unindexed buffer: exact scan seeds the bound
        if use_mask and not mask[row]:
            continue
        dist = _point_dist_within(q, xs, row, code, dr[0])
        if dist <= dr[0]:
            heap_push(dr, ir, dist, labels[row])
    if ntree == 0 or _skip(0, counts, use_counts):
        return
    stack[0] = 0
    sbound[0] = _box_bound(q, bmin, bmax, 0, code)
    sp = 1
    leaves = 0
    while sp > 0:
        sp -= 1
        node = stack[sp]
        if sbound[sp] > dr[0]:
            continue
        rnode = right[node]
        if rnode < 0:
            if max_leaves > 0 and leaves >= max_leaves:
                break
            leaves += 1
            for row in range(start[node], end[node]):
                if use_mask and not mask[row]:
                    continue
                dist = _point_dist_within(q, xs, row, code, dr[0])
                if dist <= dr[0]:
                    heap_push(dr, ir, dist, labels[row])
            continue
        lnode = node + 1
        bl = np.float32(np.inf) if _skip(lnode, counts, use_counts) else _box_bound(q, bmin, bmax, lnode, code)
        br = np.float32(np.inf) if _skip(rnode, counts, use_counts) else _box_bound(q, bmin, bmax, rnode, code)
        near, far, bnear, bfar = lnode, rnode, bl, br
        if br < bl:
            near, far, bnear, bfar = rnode, lnode, br, bl
        worst = dr[0]
        if bfar <= worst and bfar < np.inf:
            stack[sp] = far
            sbound[sp] = bfar
            sp += 1
        if bnear <= worst and bnear < np.inf:
            stack[sp] = near
            sbound[sp] = bnear
            sp += 1


@nb.njit(cache=True, parallel=True)
def knn(q, xs, labels, ntree, bmin, bmax, start, end, right, mask, use_mask, counts, use_counts,
        code, max_leaves, out_d, out_i):
    """k nearest rows per query into ``out_d``/``out_i`` (pre-filled with inf / -1).

    Rows ``[0, ntree)`` are in the tree, rows after it are scanned exactly.
    ``max_leaves > 0`` stops after that many leaves (approximate).
    """
    nq = q.shape[0]
    for c in nb.prange((nq + _CHUNK - 1) // _CHUNK):
        stack = np.empty(_STACK, np.int64)
        sbound = np.empty(_STACK, np.float32)
        for r in range(c * _CHUNK, min(nq, (c + 1) * _CHUNK)):
            _knn_one(q[r], xs, labels, ntree, bmin, bmax, start, end, right, mask, use_mask, counts,
                     use_counts, code, max_leaves, out_d[r], out_i[r], stack, sbound)
            heap_sort(out_d[r], out_i[r])


@nb.njit(cache=True, inline="always")
def _range_rows(q, xs, labels, lo, hi, mask, use_mask, code, radius, out_d, out_i, offset, found, write):
    """Scan rows ``[lo, hi)`` for distance < radius; returns ``found`` plus the hits, written from
    ``offset + found`` when ``write`` (the unindexed tail and each leaf of :func:`_range_one`)."""
    for row in range(lo, hi):
        if use_mask and not mask[row]:
            continue
        dist = _point_dist(q, xs, row, code)
        if dist < radius:
            if write:
                out_d[offset + found] = dist
                out_i[offset + found] = labels[row]
            found += 1
    return found


@nb.njit(cache=True)
def _range_one(q, xs, labels, ntree, bmin, bmax, start, end, right, mask, use_mask, counts, use_counts,
               code, radius, out_d, out_i, offset, write, stack):
    """Rows with distance < radius: count them, and write them from ``offset`` when ``write``."""
    found = _range_rows(q, xs, labels, ntree, xs.shape[0], mask, use_mask, code, radius, out_d, out_i,
                        offset, 0, write)
    if ntree == 0:
        return found
    stack[0] = 0
    sp = 1
    while sp > 0:
        sp -= 1
        node = stack[sp]
        if _skip(node, counts, use_counts) or _box_bound(q, bmin, bmax, node, code) >= radius:
            continue
        if right[node] >= 0:
            stack[sp] = node + 1
            stack[sp + 1] = right[node]
            sp += 2
            continue
        found = _range_rows(q, xs, labels, start[node], end[node], mask, use_mask, code, radius, out_d, out_i,
                            offset, found, write)
    return found


@nb.njit(cache=True, parallel=True)
def range_search(q, xs, labels, ntree, bmin, bmax, start, end, right, mask, use_mask, counts, use_counts,
                 code, radius):
    """``(lims, distances, ids)`` of rows with distance < radius, sorted by (distance, id) per query."""
    nq = q.shape[0]
    sizes = np.zeros(nq, np.int64)
    none_d = np.empty(0, np.float32)
    none_i = np.empty(0, np.int64)
    for r in nb.prange(nq):
        stack = np.empty(_STACK, np.int64)
        sizes[r] = _range_one(q[r], xs, labels, ntree, bmin, bmax, start, end, right, mask, use_mask, counts,
                              use_counts, code, radius, none_d, none_i, 0, False, stack)
    lims = np.zeros(nq + 1, np.int64)
    lims[1:] = np.cumsum(sizes)
    out_d = np.empty(lims[nq], np.float32)
    out_i = np.empty(lims[nq], np.int64)
    for r in nb.prange(nq):
        stack = np.empty(_STACK, np.int64)
        _range_one(q[r], xs, labels, ntree, bmin, bmax, start, end, right, mask, use_mask, counts, use_counts,
                   code, radius, out_d, out_i, lims[r], True, stack)
        s, e = lims[r], lims[r + 1]
        by_id = np.argsort(out_i[s:e], kind="mergesort")
        d_sorted = out_d[s:e][by_id]
        order = by_id[np.argsort(d_sorted, kind="mergesort")]
        out_d[s:e] = out_d[s:e][order]
        out_i[s:e] = out_i[s:e][order]
    return lims, out_d, out_i
